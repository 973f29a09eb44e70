"""The ragged (unpadded) path equals the padded path for every point model; its building blocks (segment pooling,
size groups, grouped kNN) and two hand-computed layer cases (GravNet aggregation, transformer pair features)."""
import math

import pytest
import torch

from pcloud.nn import build_model, knn, masked_pool
from pcloud.nn.gravnet import GravNetConv
from pcloud.nn.ragged import padded_to_ragged, ragged_knn, ragged_layout, segment_pool, size_groups
from pcloud.nn.transformer import pair_features
from helpers.pointclouds import make_batch

F, G = 4, 2
CFGS = {"pointnet": dict(channels=(8, 16), use_pos=True, pos_scale_mm=1000.0, input_transform=True),
        "dgcnn": dict(k=3, edge_channels=(8, 8), emb_dim=16),
        "dgcnn_general": dict(k=3, edge_channels=(8, 8), emb_dim=16, edge_hidden=(8,), aggr="mean", graph_on="x"),
        "transformer": dict(dim=16, n_heads=2, n_layers=2, pair_hidden=8, layer_col=2, energy_col=3,
                            group_elements=200),
        "transformer_local": dict(dim=16, n_heads=2, n_layers=2, pair_hidden=8, layer_col=2, energy_col=3,
                                  group_elements=200, attn_k=3),
        "gravnet": dict(blocks=2, dense=(8,), out_dims=8, space_dims=3, prop_dims=6, k=3, emb_dim=8)}


def build(key):
    torch.manual_seed(0)
    return build_model(key.split("_")[0], in_channels=F, n_classes=3, n_seg_classes=2, n_global=G,
                       energy_columns=(0, 1), head_hidden=(8,), seg_hidden=(8,), **CFGS[key])


@pytest.mark.parametrize("key", sorted(CFGS))
@pytest.mark.parametrize("train", [False, True])
def test_ragged_equals_padded(key, train):
    b = make_batch(B=6, N=14, seed=2, empty_event=True)
    model = build(key).train(train)
    torch.manual_seed(5)
    pad = model(b)
    rag = model(padded_to_ragged(b))
    for k in ("logits", "energy", "global"):
        torch.testing.assert_close(rag[k], pad[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rag["seg_logits"], pad["seg_logits"][b["mask"]], rtol=1e-4, atol=1e-5)
    if train:  # the gradients agree too
        g_pad = torch.autograd.grad(pad["seg_logits"].pow(2).sum() + pad["logits"].sum(), model.parameters(),
                                    allow_unused=True)
        g_rag = torch.autograd.grad(rag["seg_logits"].pow(2).sum() + rag["logits"].sum(), model.parameters(),
                                    allow_unused=True)
        for a, c in zip(g_pad, g_rag):
            if a is not None:
                torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-5)


def test_ragged_batch_checks():
    model = build("pointnet")
    r = padded_to_ragged(make_batch())
    with pytest.raises(ValueError, match="sorted"):
        model({**r, "batch": r["batch"].flip(0)})
    with pytest.raises(ValueError, match=r"'x'"):
        model({**r, "x": r["x"][:, :3]})
    with pytest.raises(ValueError, match=r"\(B, G\)"):
        model({**r, "n_events": 9})


def test_segment_pool_equals_masked_pool():
    b = make_batch(B=4, N=9, seed=3, empty_event=True)
    x = torch.nan_to_num(b["x"])
    r = padded_to_ragged(b)
    for mode in ("max", "mean", "sum", "max+mean"):
        torch.testing.assert_close(segment_pool(r["x"], r["batch"], 4, mode), masked_pool(x, b["mask"], mode))
    h = torch.tensor([[1.0, -5.0], [3.0, -2.0], [7.0, 7.0]])
    torch.testing.assert_close(segment_pool(h, torch.tensor([0, 0, 2]), 3, "max"),
                               torch.tensor([[3.0, -2.0], [0.0, 0.0], [7.0, 7.0]]))


def test_size_groups_respect_the_budget():
    counts = torch.tensor([5, 0, 2, 9, 3, 9, 1])
    groups = size_groups(counts, max_elements=200)
    flat = torch.cat(groups)
    assert sorted(flat.tolist()) == [0, 2, 3, 4, 5, 6]  # every event with points, once; the empty one left out
    assert counts[flat].tolist() == sorted(counts[flat].tolist())  # by size
    for g in groups:
        assert len(g) == 1 or len(g) * int(counts[g].max()) ** 2 <= 200


def test_ragged_knn_equals_padded_knn():
    b = make_batch(B=5, N=20, seed=7)
    feat = torch.nan_to_num(b["pos"])
    idx, valid = knn(feat, 4, b["mask"], return_valid=True)
    r = padded_to_ragged(b)
    lay = ragged_layout(r["batch"], 5)
    nbr, ok = ragged_knn(r["pos"], lay, 4, max_elements=500)
    bi, ii = b["mask"].nonzero(as_tuple=True)
    row_of_slot = torch.full((5, 20), -1, dtype=torch.long)
    row_of_slot[bi, ii] = torch.arange(bi.numel())
    expect = row_of_slot[bi.unsqueeze(1), idx[bi, ii]]  # padded slots -> flat rows
    assert torch.equal(ok, valid[bi, ii])
    assert torch.equal(nbr[ok], expect[ok])
    assert (lay.batch[nbr] == lay.batch.unsqueeze(1)).all()  # never a point of another event


def test_gravnet_layer_by_hand():
    """3 points of one event, k = 2: the mean / max of exp(-d^2)-weighted propagated features, by hand."""
    conv = GravNetConv(2, 1, space_dims=1, prop_dims=1, k=2)
    with torch.no_grad():
        conv.lin_s.weight.copy_(torch.tensor([[1.0, 0.0]]))
        conv.lin_s.bias.zero_()
        conv.lin_f.weight.copy_(torch.tensor([[0.0, 1.0]]))
        conv.lin_f.bias.zero_()
        conv.lin_o.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 10.0]]))  # out = mean + 10 max
        conv.lin_o.bias.zero_()
    h = torch.tensor([[0.0, 1.0], [1.0, 2.0], [3.0, -4.0]])  # s = 0, 1, 3; f = 1, 2, -4
    lay = ragged_layout(torch.zeros(3, dtype=torch.long))
    out, s = conv(h, lambda s: ragged_knn(s, lay, 2))
    e = math.exp
    w = {(0, 1): e(-1), (0, 2): e(-9), (1, 2): e(-4)}
    f = [1.0, 2.0, -4.0]
    expect = []
    for i in range(3):
        m = [w[tuple(sorted((i, j)))] * f[j] for j in range(3) if j != i]
        expect.append(sum(m) / 2 + 10 * max(m))
    torch.testing.assert_close(out.squeeze(1), torch.tensor(expect))
    assert torch.equal(s.squeeze(1), torch.tensor([0.0, 1.0, 3.0]))


def test_pair_features_by_hand():
    r = 1500.0
    eta = torch.tensor([0.0, 0.1])
    phi = torch.tensor([0.0, 0.05])
    pos = torch.stack([r * torch.cos(phi), r * torch.sin(phi), r * torch.sinh(eta)], -1)[None]
    x = torch.tensor([[[0.0, 1.0, 2.0], [0.0, 3.0, -1.0]]])  # layer in column 1, log E in column 2
    u = pair_features(x, pos, ("dr", "dist", "dlayer", "dlogE"), layer_col=1, energy_col=2, dist_scale_mm=100.0)
    assert u.shape == (1, 2, 2, 4)
    dr = math.hypot(0.1, 0.05)
    torch.testing.assert_close(u[0, 0, 1, 0], torch.tensor(math.log(dr + 1e-3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(u[0, 0, 0, 0], torch.tensor(math.log(1e-3)))
    d = float((pos[0, 0] - pos[0, 1]).norm())
    torch.testing.assert_close(u[0, 1, 0, 1], torch.tensor(math.log1p(d / 100.0)))
    assert float(u[0, 0, 1, 2]) == -2.0 and float(u[0, 1, 0, 2]) == 2.0
    assert float(u[0, 0, 1, 3]) == 3.0
