"""The point transformer and GravNet through the shared heads: output shapes, padding and permutation invariance /
equivariance, batched = alone, gradient flow into every parameter, overfitting a tiny set, bfloat16 autocast."""
import pytest
import torch

from pcloud.nn import GravNet, PointTransformer, build_model
from pcloud.nn.losses import MultiTaskLoss
from helpers.pointclouds import assert_permuted, make_batch, overfit, pad_more, permute_points, single_event

F, G = 4, 2
MODELS = ["transformer", "transformer_local", "gravnet"]


def tiny(name, **kw):
    cfg = dict(in_channels=F, n_classes=3, n_targets=2, n_seg_classes=2, n_global=G, energy_columns=(0, 1),
               g_scale=100.0, head_hidden=(16,), seg_hidden=(16,), seg_soft=True)
    if name.startswith("transformer"):
        cfg.update(dim=16, n_heads=2, n_layers=2, pair_hidden=8, layer_col=2, energy_col=3, use_pos=True,
                   pos_scale_mm=1000.0)
    else:
        cfg.update(blocks=2, dense=(16,), out_dims=12, space_dims=3, prop_dims=8, k=4, emb_dim=16, use_pos=True,
                   pos_scale_mm=1000.0)
    if name == "transformer_local":  # attention restricted to the point itself and its 4 nearest points
        cfg.update(attn_k=4)
    cfg.update(kw)
    torch.manual_seed(0)
    return build_model(name.split("_")[0], **cfg)


def test_registered_classes():
    assert isinstance(tiny("transformer"), PointTransformer) and isinstance(tiny("gravnet"), GravNet)


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name):
    b = make_batch()
    model = tiny(name).eval()
    out = model(b)
    assert out["logits"].shape == (5, 3) and out["regression"].shape == (5, 2) and out["energy"].shape == (5,)
    assert out["seg_logits"].shape == (5, 16, 2) and out["seg_fractions"].shape == (5, 16, 2)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["seg_logits"][~b["mask"]] == 0).all()
    torch.testing.assert_close(out["seg_fractions"].sum(-1)[b["mask"]], torch.ones(int(b["mask"].sum())))
    torch.testing.assert_close(out["energy"], b["g"].sum(1))  # the energy skip connection at initialisation


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("train", [False, True])
def test_permutation_invariance_and_equivariance(name, train):
    b = make_batch()
    model = tiny(name).train(train)
    ref = model(b)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    got = model(permute_points(b, perm))
    assert_permuted(got, ref, perm)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("train", [False, True])
def test_padding_never_changes_outputs(name, train):
    b = make_batch()
    model = tiny(name).train(train)
    ref = model(b)
    padded, perm = pad_more(b, 9)
    got = model(padded)
    for key in ("logits", "regression", "energy", "global"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    inv = torch.argsort(perm)[:16]
    torch.testing.assert_close(got["seg_logits"][:, inv], ref["seg_logits"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_batched_equals_each_event_alone(name):
    b = make_batch()
    model = tiny(name).eval()
    ref = model(b)
    for e in range(5):
        out = model(single_event(b, e))
        torch.testing.assert_close(out["logits"][0], ref["logits"][e], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["seg_logits"][0], ref["seg_logits"][e, b["mask"][e]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_points_interact(name):
    """Moving one point changes the other points' outputs (attention / neighbour aggregation is live: a per-point
    model with global pooling only would also pass the invariance tests)."""
    b = make_batch(B=1, N=12, p_real=1.0)
    model = tiny(name, pooling="mean").eval()
    ref = model(b)["seg_logits"][0]
    b2 = {k: v.clone() for k, v in b.items()}
    b2["x"][0, 0] += 3.0
    b2["pos"][0, 0] += 30.0
    got = model(b2)["seg_logits"][0]
    assert (got[1:] - ref[1:]).abs().max() > 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_gradient_reaches_every_parameter(name):
    b = make_batch()
    model = tiny(name).train()
    out = model(b)
    (out["logits"].sum() + out["regression"].sum() + out["energy"].sum() + out["seg_logits"].pow(2).sum()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0]
    assert not dead, dead


@pytest.mark.parametrize("name", MODELS)
def test_overfits_a_tiny_set(name):
    torch.manual_seed(0)
    B, N = 12, 16
    b = make_batch(B, N, seed=4)
    x = torch.nan_to_num(b["x"])
    targets = {"label": torch.arange(B) % 3, "seg_label": ((x[..., 0] + x[..., 1]) > 0).long(), "mask": b["mask"]}
    model = tiny(name)
    loss_fn = MultiTaskLoss(w_energy=0.0)
    first, final = overfit(model, b, targets, loss_fn, 150)
    assert final < 0.15 * first, (first, final)


@pytest.mark.parametrize("name", MODELS)
def test_autocast_cpu_bfloat16(name):
    model = tiny(name).eval()
    b = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(b)
    assert all(torch.isfinite(v.float()).all() for v in out.values())


def test_local_attention_sees_only_neighbours():
    """With attn_k, a point far from every other point but its neighbours' neighbours does not change a point's
    output unless it is among its attn_k nearest (in one layer)."""
    b = make_batch(B=1, N=10, p_real=1.0)
    model = tiny("transformer_local", n_layers=1, attn_k=2).eval()

    def trunk(batch):  # the attention blocks' point features (the heads mix in the pooled vector)
        x, pos, mask, _ = model.unpack(batch)
        return model._attend(model.embed(model._inputs(x, pos), mask), x, pos, mask)[0]

    ref = trunk(b)
    pos = b["pos"][0]
    d = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    d.fill_diagonal_(float("inf"))
    near0 = set(d[0].argsort()[:2].tolist())
    far = next(j for j in d[0].argsort().flip(0).tolist() if j not in near0 and j != 0)
    b2 = {k: v.clone() for k, v in b.items()}
    b2["x"][0, far] += 5.0  # features only: the neighbour sets stay the same
    got = trunk(b2)
    affected = [i for i in range(10) if (got[i] - ref[i]).abs().max() > 1e-6]
    nbr_of = {i: set(d[i].argsort()[:2].tolist()) | {i} for i in range(10)}
    assert set(affected) == {i for i in range(10) if far in nbr_of[i]}


@pytest.mark.parametrize("train", [False, True])
def test_local_attention_with_every_neighbour_is_full_attention(train):
    """attn_k >= N - 1: every point attends to itself and all other real points, as the full attention (the same
    weights: attn_k adds no parameters), padding included."""
    b = make_batch(B=3, N=8, p_real=0.6)
    full, local = tiny("transformer").train(train), tiny("transformer", attn_k=7).train(train)
    local.load_state_dict(full.state_dict())
    ref, got = full(b), local(b)
    for key in ("logits", "regression", "energy", "seg_logits"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    # fewer neighbours than the cloud has points: a different function
    fewer = tiny("transformer", attn_k=2).train(train)
    fewer.load_state_dict(full.state_dict())
    assert not torch.allclose(fewer(b)["seg_logits"], ref["seg_logits"], atol=1e-4)


def test_bad_configs():
    with pytest.raises(ValueError, match="layer_col"):
        PointTransformer(F, pair_features=("dlayer",))
    with pytest.raises(ValueError, match="unknown pair"):
        PointTransformer(F, pair_features=("mass",))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        PointTransformer(F, dim=10, n_heads=4, pair_features=())
    with pytest.raises(ValueError, match="k must be"):
        GravNet(F, k=0)
    with pytest.raises(ValueError, match="attn_k"):
        PointTransformer(F, pair_features=(), attn_k=0)
    model = tiny("gravnet")
    with pytest.raises(ValueError, match=r"batch\['x'\]"):
        model({**make_batch(), "x": torch.zeros(5, 16, 3)})
