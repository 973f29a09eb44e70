"""pcloud.nn.edgeconv / pcloud.nn.dgcnn: EdgeConv against an explicit reference, invariances, overfitting."""
import pytest
import torch

from pcloud.nn import DGCNN, EdgeConv, build_model, knn
from helpers.pointclouds import assert_permuted, overfit, single_event
from pcloud.nn.losses import MultiTaskLoss

F, G = 4, 2


def make_batch(B=5, N=16, seed=0, p_real=0.7):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, N, generator=g) < p_real
    mask[:, :2] = True
    mask[0, 2:] = False  # an event with only two real points (fewer than k + 1)
    x = torch.randn(B, N, F, generator=g)
    pos = torch.randn(B, N, 3, generator=g) * 50.0
    x[~mask] = float("nan")
    pos[~mask] = float("nan")
    return {"x": x, "pos": pos, "mask": mask, "g": torch.rand(B, G, generator=g) * 80.0}


def tiny(**kw):
    cfg = dict(in_channels=F, n_classes=3, n_targets=4, n_seg_classes=2, n_global=G, energy_columns=(0, 1),
               g_scale=100.0, k=4, edge_channels=(16, 16), emb_dim=32, use_pos=True, pos_scale_mm=50.0,
               head_hidden=(32,), seg_hidden=(16,))
    cfg.update(kw)
    torch.manual_seed(0)
    return DGCNN(**cfg)


def permute_points(batch, perm):
    return {k: (v[:, perm] if k in ("x", "pos", "mask") else v) for k, v in batch.items()}


@pytest.mark.parametrize("aggr", ["max", "mean"])
def test_edgeconv_matches_explicit_formula(aggr):
    """x'_i = AGG_j MLP([x_i, x_j - x_i]) evaluated by brute force per point."""
    torch.manual_seed(1)
    B, N, C, k = 2, 7, 3, 3
    x = torch.randn(B, N, C)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 5:] = False
    idx, valid = knn(x, k, mask, return_valid=True)
    conv = EdgeConv(C, 5, hidden=(6,), aggr=aggr, norm=None, act="relu")
    out = conv(x, idx, mask, valid)
    lin0, lin1 = conv.lin0, conv.tail[1]  # tail = [act, Linear, act] without norm
    for b in range(B):
        for i in range(N):
            if not mask[b, i]:
                assert (out[b, i] == 0).all()
                continue
            xi, xj = x[b, i].expand(k, C), x[b, idx[b, i]]
            h = torch.relu(lin1(torch.relu(lin0(torch.cat([xi, xj - xi], -1)))))
            ref = h.amax(0) if aggr == "max" else h[valid[b, i]].mean(0)
            torch.testing.assert_close(out[b, i], ref, rtol=1e-5, atol=1e-6)


def _random_bn(conv, seed):
    """Give the batch-norm random statistics and affine weights of both signs (exercises the arg-min branch)."""
    g = torch.Generator().manual_seed(seed)
    bn = conv.tail[0]
    H = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.randn(H, generator=g))
        bn.bias.copy_(torch.randn(H, generator=g))
        bn.running_mean.copy_(torch.randn(H, generator=g))
        bn.running_var.copy_(torch.rand(H, generator=g) + 0.5)


@pytest.mark.parametrize("norm", ["batch", None])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
@pytest.mark.parametrize("train", [True, False])
def test_fused_edgeconv_equals_general_path(norm, act, train):
    """Fast path (max of an affine batch-norm + increasing activation) == general path: values, gradients of the
    inputs and of every parameter, and the running statistics after a training step."""
    B, N, C, H, k = 4, 20, 5, 8, 6
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(B, N, C, generator=g)
    mask = torch.rand(B, N, generator=g) < 0.7
    mask[:, :2] = True
    mask[0, 2:] = False  # fewer than k + 1 real points: repeated-neighbour slots
    idx, valid = knn(x0, k, mask, return_valid=True)
    convs = []
    for fused in (True, False):
        torch.manual_seed(0)
        conv = EdgeConv(C, H, norm=norm, act=act, fused=fused)
        if norm == "batch":
            _random_bn(conv, 5)
        conv.train(train)
        convs.append(conv)
    assert convs[0].fused and not convs[1].fused
    outs, grads = [], []
    for conv in convs:
        x = x0.clone().requires_grad_(True)
        out = conv(x, idx, mask, valid)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
        (out * w).sum().backward()
        outs.append(out.detach())
        grads.append([x.grad] + [q.grad for q in conv.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    assert (outs[0][~mask] == 0).all()
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    if norm == "batch":
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(convs[0].tail[0], name), getattr(convs[1].tail[0], name),
                                       rtol=1e-4, atol=1e-6)
        start = EdgeConv(C, H)
        _random_bn(start, 5)
        moved = not torch.allclose(convs[0].tail[0].running_mean, start.tail[0].running_mean)
        assert moved == train


def test_fused_edgeconv_batchnorm_matches_explicit_edges():
    """Training-mode batch-norm statistics are those of all M*k edges, including repeated-neighbour slots."""
    B, N, C, H, k = 2, 9, 3, 4, 3
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, N, C, generator=g)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 3:] = False  # 3 real points, k = 3: one repeated slot each
    idx = knn(x, k, mask)
    conv = EdgeConv(C, H, norm="batch", act="leaky_relu")
    _random_bn(conv, 1)
    out = conv(x, idx, mask)
    edges = []
    for b in range(B):
        for i in range(N):
            if mask[b, i]:
                xi, xj = x[b, i].expand(k, C), x[b, idx[b, i]]
                edges.append(conv.lin0(torch.cat([xi, xj - xi], -1)))
    e = torch.stack(edges)  # (M, k, H)
    mu, var = e.mean((0, 1)), e.var((0, 1), unbiased=False)
    bn = conv.tail[0]
    ref = torch.nn.functional.leaky_relu((e - mu) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias, 0.2).amax(1)
    torch.testing.assert_close(out[mask], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(hidden=(6,)), dict(aggr="mean"), dict(norm="layer"), dict(act="gelu"),
                                dict(fused=False)])
def test_fused_path_only_where_exact(kw):
    assert not EdgeConv(3, 4, **kw).fused
    assert EdgeConv(3, 4).fused


def test_edgeconv_mean_isolated_point_uses_self_loop():
    conv = EdgeConv(2, 3, aggr="mean", norm=None)
    x = torch.randn(1, 3, 2)
    mask = torch.tensor([[True, False, False]])
    idx, valid = knn(x, 2, mask, return_valid=True)
    out = conv(x, idx, mask, valid)
    ref = torch.nn.functional.leaky_relu(conv.lin0(torch.cat([x[0, 0], torch.zeros(2)])), 0.2)
    torch.testing.assert_close(out[0, 0], ref)
    assert (out[0, 1:] == 0).all()
    with pytest.raises(ValueError, match="aggr"):
        EdgeConv(2, 3, aggr="median")


def test_output_shapes_and_registry():
    b = make_batch()
    model = build_model("dgcnn", in_channels=F, n_classes=3, n_targets=4, n_seg_classes=2, n_global=G,
                        energy_columns=(0, 1), k=4, edge_channels=(16, 16), emb_dim=32, seg_soft=True)
    assert isinstance(model, DGCNN)
    out = model.eval()(b)
    assert out["logits"].shape == (5, 3) and out["regression"].shape == (5, 4) and out["energy"].shape == (5,)
    assert out["seg_logits"].shape == (5, 16, 2) and out["seg_fractions"].shape == (5, 16, 2)
    assert out["global"].shape == (5, 64)  # max+mean of emb_dim
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["seg_logits"][~b["mask"]] == 0).all()
    with pytest.raises(KeyError, match="unknown model"):
        build_model("pointnet++")


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("graph_on", ["pos", "x"])
def test_permutation_invariance_and_equivariance(train, graph_on):
    b = make_batch()
    model = tiny(graph_on=graph_on).train(train)
    ref = model(b)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    got = model(permute_points(b, perm))
    assert_permuted(got, ref, perm)


@pytest.mark.parametrize("train", [False, True])
def test_padding_invariance(train):
    b = make_batch()
    model = tiny().train(train)
    ref = model(b)
    g = torch.Generator().manual_seed(2)
    B, N, extra = 5, 16, 11
    padded = {"g": b["g"], "mask": torch.cat([b["mask"], torch.zeros(B, extra, dtype=torch.bool)], 1)}
    for k, C in (("x", F), ("pos", 3)):
        # garbage padding placed right next to real points: it would be picked as neighbour if not masked
        near = torch.nan_to_num(b[k])[:, :extra] + 1e-3 * torch.randn(B, extra, C, generator=g)
        padded[k] = torch.cat([b[k], near], 1)
    perm = torch.randperm(N + extra, generator=g)
    got = model(permute_points(padded, perm))
    for key in ("logits", "regression", "energy", "global"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    inv = torch.argsort(perm)[:N]
    torch.testing.assert_close(got["seg_logits"][:, inv], ref["seg_logits"], rtol=1e-4, atol=1e-5)


def test_dynamic_graph_is_recomputed():
    """With dynamic=False the later layers reuse the coordinate graph; the outputs must then differ."""
    b = make_batch(N=24, p_real=1.0)
    dyn = tiny(dynamic=True).eval()(b)["global"]
    static = tiny(dynamic=False).eval()(b)["global"]  # same seed -> same weights
    assert not torch.allclose(dyn, static, atol=1e-4)


def test_autocast_cpu_bfloat16():
    b = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny().eval()(b)
    assert all(torch.isfinite(v.float()).all() for v in out.values())


def test_bad_config():
    with pytest.raises(ValueError, match="graph_on"):
        DGCNN(F, graph_on="eta")
    with pytest.raises(ValueError, match="k must"):
        DGCNN(F, k=0)
    with pytest.raises(KeyError, match="pos"):
        tiny()({k: v for k, v in make_batch().items() if k != "pos"})


def test_overfits_small_batch():
    torch.manual_seed(0)
    B, N = 16, 24
    b = make_batch(B, N, seed=4)
    targets = {"label": torch.arange(B) % 3, "energy_gev": 1.2 * b["g"].sum(1) + 5.0,
               "seg_label": (torch.nan_to_num(b["x"])[..., 0] > 0).long(), "mask": b["mask"]}
    model = tiny()
    loss_fn = MultiTaskLoss(w_energy=10.0)
    first, final = overfit(model, b, targets, loss_fn, 300)
    print(f"DGCNN overfit: loss {first:.4f} -> {final:.5f}")
    assert final < 0.1 * first, (first, final)


def test_batched_equals_each_event_alone():
    """Eval mode: each event run alone without any padding gives the batched result (padding sits at the
    origin after unpacking, so a model that let it into the kNN would differ here)."""
    b = make_batch()
    model = tiny().eval()
    ref = model(b)
    for e in range(5):
        out = model(single_event(b, e))
        for key in ("logits", "regression", "energy", "global"):
            torch.testing.assert_close(out[key][0], ref[key][e], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["seg_logits"][0], ref["seg_logits"][e, b["mask"][e]], rtol=1e-4, atol=1e-5)
