"""pcloud.nn.pointnet: head shapes, permutation invariance / equivariance, padding invariance, overfitting."""
import pytest
import torch

from helpers.pointclouds import overfit, single_event
from pcloud.nn.losses import MultiTaskLoss
from pcloud.nn import PointNet, TNet, build_model, masked_pool

F, G = 4, 2


def make_batch(B=5, N=16, seed=0, p_real=0.7):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, N, generator=g) < p_real
    mask[:, 0] = True
    x = torch.randn(B, N, F, generator=g)
    pos = torch.randn(B, N, 3, generator=g) * 50.0
    x[~mask] = float("nan")  # padding content must never be read
    pos[~mask] = float("nan")
    ge = torch.rand(B, G, generator=g) * 80.0
    return {"x": x, "pos": pos, "mask": mask, "g": ge}


def tiny(**kw):
    cfg = dict(in_channels=F, n_classes=3, n_targets=4, n_seg_classes=2, n_global=G, energy_columns=(0, 1),
               g_scale=100.0, use_pos=True, pos_scale_mm=50.0, input_transform=True, channels=(16, 32),
               head_hidden=(32,), seg_hidden=(16,), seg_soft=True)
    cfg.update(kw)
    torch.manual_seed(0)
    return PointNet(**cfg)


def permute_points(batch, perm):
    return {k: (v[:, perm] if k in ("x", "pos", "mask") else v) for k, v in batch.items()}


def pad_more(batch, extra, seed=1):
    """Append ``extra`` padded points full of garbage, and interleave them by a permutation."""
    g = torch.Generator().manual_seed(seed)
    B, N = batch["mask"].shape
    out = {"g": batch["g"]}
    for k, C in (("x", F), ("pos", 3)):
        out[k] = torch.cat([batch[k], 1e4 * torch.randn(B, extra, C, generator=g)], 1)
    out["mask"] = torch.cat([batch["mask"], torch.zeros(B, extra, dtype=torch.bool)], 1)
    perm = torch.randperm(N + extra, generator=g)
    return permute_points(out, perm), perm


def test_output_shapes():
    b = make_batch()
    model = tiny().eval()
    out = model(b)
    assert out["logits"].shape == (5, 3)
    assert out["regression"].shape == (5, 4)
    assert out["energy"].shape == (5,)
    assert out["seg_logits"].shape == (5, 16, 2) and out["seg_fractions"].shape == (5, 16, 2)
    assert out["transform"].shape == (5, 3, 3)
    assert out["global"].shape == (5, 32)
    for v in out.values():
        assert torch.isfinite(v).all()
    # padding: seg outputs are zero; fractions of real points sum to 1
    assert (out["seg_logits"][~b["mask"]] == 0).all()
    torch.testing.assert_close(out["seg_fractions"].sum(-1)[b["mask"]], torch.ones(int(b["mask"].sum())))
    assert model.n_params == sum(p.numel() for p in model.parameters())
    assert build_model("pointnet", in_channels=F, channels=(8,), n_classes=2, head_hidden=()).n_params == \
        (F * 8 + 16) + (8 * 2 + 2)  # Linear(no bias)+BN, then Linear(8 -> 2)


@pytest.mark.parametrize("pooling", ["max", "mean", "max+mean"])
@pytest.mark.parametrize("train", [False, True])
def test_permutation_invariance(pooling, train):
    b = make_batch()
    model = tiny(pooling=pooling).train(train)
    ref = model(b)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    got = model(permute_points(b, perm))
    for key in ("logits", "regression", "energy", "global", "transform"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["seg_logits"], ref["seg_logits"][:, perm], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_padding_invariance(train):
    b = make_batch()
    model = tiny().train(train)
    ref = model(b)
    padded, perm = pad_more(b, 9)
    got = model(padded)
    for key in ("logits", "regression", "energy", "global"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    inv = torch.argsort(perm)[:16]  # where the original points went
    torch.testing.assert_close(got["seg_logits"][:, inv], ref["seg_logits"], rtol=1e-4, atol=1e-5)


def test_masked_pool():
    x = torch.tensor([[[1.0, -5.0], [3.0, -2.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_pool(x, mask, "max"), torch.tensor([[3.0, -2.0]]))
    torch.testing.assert_close(masked_pool(x, mask, "mean"), torch.tensor([[2.0, -3.5]]))
    torch.testing.assert_close(masked_pool(x, mask, "sum"), torch.tensor([[4.0, -7.0]]))
    torch.testing.assert_close(masked_pool(x, mask, "max+mean"), torch.tensor([[3.0, -2.0, 2.0, -3.5]]))
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert (masked_pool(x, empty, "max") == 0).all() and (masked_pool(x, empty, "mean") == 0).all()
    with pytest.raises(ValueError, match="pooling"):
        masked_pool(x, mask, "median")


def test_tnet_identity_at_init():
    t = TNet(3)
    b = make_batch()
    a = t(torch.nan_to_num(b["pos"]), b["mask"])
    torch.testing.assert_close(a, torch.eye(3).expand(5, 3, 3))


def test_bad_batches():
    model = tiny()
    b = make_batch()
    with pytest.raises(ValueError, match=r"batch\['x'\]"):
        model({**b, "x": b["x"][..., :3]})
    with pytest.raises(KeyError, match="pos"):
        model({k: v for k, v in b.items() if k != "pos"})
    with pytest.raises(KeyError, match="'g'"):
        model({k: v for k, v in b.items() if k != "g"})
    with pytest.raises(ValueError, match="mask"):
        model({**b, "mask": b["mask"].float()})
    with pytest.raises(ValueError, match="use_pos"):
        PointNet(F, input_transform=True)


def test_autocast_cpu_bfloat16():
    model = tiny().eval()
    b = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(b)
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    torch.testing.assert_close(out["energy"], b["g"].sum(1))  # the skip sum stays in float32


def test_overfits_small_batch():
    torch.manual_seed(0)
    B, N = 16, 24
    b = make_batch(B, N, seed=4)
    label = torch.arange(B) % 3
    energy = 1.2 * b["g"].sum(1) + 5.0
    seg = (torch.nan_to_num(b["x"])[..., 0] > 0).long()
    targets = {"label": label, "energy_gev": energy, "seg_label": seg, "mask": b["mask"]}
    model = tiny(input_transform=False)
    loss_fn = MultiTaskLoss(w_energy=10.0)
    first, final = overfit(model, b, targets, loss_fn, 300)
    print(f"PointNet overfit: loss {first:.4f} -> {final:.5f}")
    assert final < 0.1 * first, (first, final)


def test_batched_equals_each_event_alone():
    b = make_batch()
    model = tiny().eval()
    ref = model(b)
    for e in range(5):
        out = model(single_event(b, e))
        for key in ("logits", "regression", "energy", "global", "transform"):
            torch.testing.assert_close(out[key][0], ref[key][e], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["seg_logits"][0], ref["seg_logits"][e, b["mask"][e]], rtol=1e-4, atol=1e-5)
