"""pcloud.nn.heads: energy skip connection, head shapes, multi-task loss values; pcloud.nn.registry."""
import math

import pytest
import torch
from torch import nn

from pcloud.nn import DGCNN, GlobalHead, PointNet, SegHead, build_model, list_models, register_model
from pcloud.nn.losses import MultiTaskLoss
from pcloud.nn import registry


def _batch(B=6, N=10, F=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, N, generator=g) < 0.8
    mask[:, :2] = True
    e_ecal = torch.rand(B, generator=g) * 150.0
    e_hcal = torch.rand(B, generator=g) * 60.0
    eta = torch.randn(B, generator=g)
    return {"x": torch.randn(B, N, F, generator=g), "pos": torch.randn(B, N, 3, generator=g), "mask": mask,
            "g": torch.stack([eta, e_ecal, e_hcal], 1)}


@pytest.mark.parametrize("cls", [PointNet, DGCNN])
@pytest.mark.parametrize("train", [False, True])
def test_energy_skip_is_linear_baseline_at_init(cls, train):
    """Untrained: energy = E_ECAL + E_HCAL exactly (Triforce, arXiv:1912.06794 App. G, weights init to 1)."""
    b = _batch()
    extra = {"k": 3, "edge_channels": (8,), "emb_dim": 8} if cls is DGCNN else {"channels": (8,)}
    model = cls(3, n_classes=2, n_global=3, energy_columns=(1, 2), g_scale=(1.0, 100.0, 100.0), head_hidden=(16,),
                **extra).train(train)
    out = model(b)
    assert torch.equal(out["energy"], b["g"][:, 1] + b["g"][:, 2])
    # after reset_parameters as well (the zero-initialised correction must survive re-initialisation)
    model.reset_parameters()
    assert torch.equal(model(b)["energy"], b["g"][:, 1] + b["g"][:, 2])
    # and the correction is trainable: one step on a biased target moves the prediction
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss, _ = MultiTaskLoss()(model(b), {"energy_gev": 1.5 * (b["g"][:, 1] + b["g"][:, 2])})
    loss.backward()
    opt.step()
    assert not torch.allclose(model(b)["energy"], b["g"][:, 1] + b["g"][:, 2])


def test_global_head_shapes_and_inputs_enter_last_layer():
    head = GlobalHead(10, n_classes=3, n_targets=4, n_global=2, energy_columns=(0, 1), hidden=(8, 6), norm=None)
    pooled, g = torch.randn(5, 10), torch.rand(5, 2) * 100
    out = head(pooled, g)
    assert out["logits"].shape == (5, 3) and out["regression"].shape == (5, 4) and out["energy"].shape == (5,)
    assert head.cls.in_features == 6 + 2  # trunk output + global features again (seed 001 Sec. 5.1)
    assert head.energy_weight.tolist() == [1.0, 1.0]
    no_e = GlobalHead(10, n_classes=2, hidden=())
    assert set(no_e(pooled)) == {"logits"}
    with pytest.raises(ValueError, match="energy column"):
        GlobalHead(10, n_global=2, energy_columns=(2,))
    with pytest.raises(ValueError, match="g_scale"):
        GlobalHead(10, n_global=2, g_scale=(1.0, -1.0))


def test_seg_head_shapes():
    head = SegHead(local_dim=5, global_dim=7, n_seg_classes=4, hidden=(8,), soft=True)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = head(torch.randn(2, 3, 5), torch.randn(2, 7), mask)
    assert out["seg_logits"].shape == (2, 3, 4) and out["seg_fractions"].shape == (2, 3, 4)
    assert (out["seg_fractions"][~mask] == 0).all()
    torch.testing.assert_close(out["seg_fractions"][mask].sum(-1), torch.ones(3))


def test_regression_of_angles_and_position_shapes():
    """Seed 004 Sec. 4: regress (phi, theta, x0, y0); the loss is MAE on targets scaled per column."""
    model = PointNet(3, n_targets=4, channels=(8,), head_hidden=(8,))
    out = model(_batch())
    assert out["regression"].shape == (6, 4) and set(out) == {"global", "regression"}
    true = torch.zeros(6, 4)
    scales = torch.tensor([math.pi, 0.1, 50.0, 50.0])
    loss, parts = MultiTaskLoss(regression_scales=scales)(out, {"regression": true})
    torch.testing.assert_close(parts["regression"], (out["regression"] / scales).abs().mean().detach())


def test_multitask_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    energy = torch.tensor([110.0, 40.0])
    outputs = {"logits": logits, "energy": energy}
    targets = {"label": torch.tensor([0, 0]), "energy_gev": torch.tensor([100.0, 50.0])}
    ce = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.e))) / 2
    mse = ((0.1 ** 2) + (0.1 ** 2)) / 2  # (10 GeV / 100 GeV)^2
    total, parts = MultiTaskLoss(w_id=1.0, w_energy=200.0, energy_scale_gev=100.0)(outputs, targets)
    assert parts["id"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["energy"].item() == pytest.approx(mse, rel=1e-5)
    assert total.item() == pytest.approx(ce + 200.0 * mse, rel=1e-5)
    rel = MultiTaskLoss(energy_loss="relative_mse")(outputs, targets)[1]["energy"]
    assert rel.item() == pytest.approx((0.1 ** 2 + 0.2 ** 2) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="no task"):
        MultiTaskLoss()({"logits": logits}, {"energy_gev": energy})
    with pytest.raises(ValueError, match="energy_loss"):
        MultiTaskLoss(energy_loss="l3")


def test_seg_loss_hard_soft_and_ignore():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    labels = torch.tensor([[0, 2, -1, 1], [1, 1, 0, 0]])  # -1: ignored; padded labels are ignored too
    loss_fn = MultiTaskLoss()
    _, parts = loss_fn({"seg_logits": logits}, {"seg_label": labels, "mask": mask})
    lp = torch.log_softmax(logits, -1)
    ref = -(lp[0, 0, 0] + lp[0, 1, 2] + lp[1, 0, 1] + lp[1, 1, 1]) / 4
    torch.testing.assert_close(parts["seg"], ref)
    # soft targets equal to one-hot labels give the same loss; energy weights re-weight points
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), 3).float()
    onehot[0, 2] = 0.0  # a cell without positive truth contributes 0
    _, soft = loss_fn({"seg_logits": logits}, {"seg_fraction": onehot, "mask": mask})
    torch.testing.assert_close(soft["seg"] * 5 / 4, ref)  # 5 real points in the denominator, 4 with truth
    w = torch.tensor([[3.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    _, wp = loss_fn({"seg_logits": logits}, {"seg_label": labels, "mask": mask, "seg_weight": w})
    torch.testing.assert_close(wp["seg"], -(3 * lp[0, 0, 0] + lp[0, 1, 2]) / 4)


def test_tnet_regulariser():
    a = torch.eye(3).expand(2, 3, 3).clone()
    a[1, 0, 0] = 2.0
    _, parts = MultiTaskLoss()({"transform": a}, {})
    assert parts["tnet"].item() == pytest.approx(9.0 / 2)  # (2^2 - 1)^2 for one event, averaged over 2


def test_registry_builtins_and_plugins():
    assert {"pointnet", "dgcnn"} <= set(list_models())
    assert isinstance(build_model("pointnet", in_channels=2, channels=(4,)), PointNet)

    def builder(width=3):
        return nn.Linear(width, 1)

    register_model("test_linear_model", builder)
    try:
        assert build_model("test_linear_model", width=5).in_features == 5
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_linear_model", lambda: None)
    finally:
        registry.MODEL_REGISTRY.pop("test_linear_model")
    with pytest.raises(KeyError, match="registered models"):
        build_model("no_such_model")


def test_two_class_soft_fraction_shorthand():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 2)
    f = torch.tensor([[0.2, 1.0, 0.5], [0.0, 0.7, 0.3]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss_fn = MultiTaskLoss()
    _, short = loss_fn({"seg_logits": logits}, {"seg_fraction": f, "mask": mask})
    _, full = loss_fn({"seg_logits": logits}, {"seg_fraction": torch.stack([1 - f, f], -1), "mask": mask})
    torch.testing.assert_close(short["seg"], full["seg"])
    lp = torch.log_softmax(logits, -1)
    ref = -((1 - f) * lp[..., 0] + f * lp[..., 1])[mask].mean()
    torch.testing.assert_close(short["seg"], ref)
