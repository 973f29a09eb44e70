"""pcloud.nn.knn: brute-force agreement, never self / padding, fill rules, blocking, knn_graph."""
import numpy as np
import pytest
import torch

from pcloud.nn.knn import auto_block_size, knn, knn_graph


def _batch(seed=0, B=4, N=40, C=3, counts=(40, 25, 3, 1), offset=0.0, scale=1.0):
    """Random features with the real points scattered at random slots (padding not only at the end)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, N, C, generator=g, dtype=torch.float64) * scale + offset
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, n in enumerate(counts):
        mask[b, torch.randperm(N, generator=g)[:n]] = True
    feats[~mask] = 1e6 * torch.randn(int((~mask).sum()), C, generator=g, dtype=torch.float64)  # garbage padding
    return feats, mask


def _brute(feats, mask, b, i):
    """Real neighbours of point i in event b, sorted by squared distance (float64, no tricks)."""
    f = feats[b].numpy()
    others = np.flatnonzero(mask[b].numpy())
    others = others[others != i]
    d = ((f[others] - f[i]) ** 2).sum(-1)
    order = np.argsort(d, kind="stable")
    return others[order], d[order]


@pytest.mark.parametrize("k", [1, 5, 8])
def test_knn_matches_brute_force(k):
    feats, mask = _batch(seed=k)
    idx, valid = knn(feats.float(), k, mask, return_valid=True)
    assert idx.shape == (4, 40, k) and idx.dtype == torch.long
    for b in range(4):
        for i in np.flatnonzero(mask[b].numpy()):
            ref, dref = _brute(feats, mask, b, i)
            got = idx[b, i].numpy()
            n_avail = min(k, len(ref))
            if n_avail == 0:  # isolated point: self-loops, nothing valid
                assert (got == i).all() and not valid[b, i].any()
                continue
            f = feats[b].numpy()
            dgot = ((f[got[:n_avail]] - f[i]) ** 2).sum(-1)
            np.testing.assert_allclose(dgot, dref[:n_avail], rtol=1e-4, atol=1e-6)
            assert valid[b, i, :n_avail].all() and not valid[b, i, n_avail:].any()
            assert len(set(got[:n_avail])) == n_avail  # distinct
            # fewer than k real neighbours: the remaining slots repeat the nearest one
            assert (got[n_avail:] == ref[0]).all()


def test_never_self_or_padding():
    feats, mask = _batch(seed=3)
    idx = knn(feats.float(), 6, mask)
    B, N, k = idx.shape
    q = torch.arange(N).view(1, N, 1).expand_as(idx)
    real_q = mask.unsqueeze(-1).expand_as(idx)
    n_real = mask.sum(1).view(B, 1, 1).expand_as(idx)
    # self only for an isolated point
    assert not ((idx == q) & real_q & (n_real > 1)).any()
    # no real query ever gets padding
    nb_is_real = torch.gather(mask, 1, idx.view(B, -1)).view(B, N, k)
    assert nb_is_real[real_q].all()
    # padded queries are filled with their own index
    assert (idx[~real_q] == q[~real_q]).all()


def test_isolated_point_self_loop_and_k_larger_than_n():
    feats = torch.randn(1, 3, 2)
    mask = torch.tensor([[True, False, False]])
    idx, valid = knn(feats, 5, mask, return_valid=True)
    assert idx.shape == (1, 3, 5)
    assert (idx[0, 0] == 0).all() and not valid.any()
    mask = torch.tensor([[True, True, True]])
    idx, valid = knn(feats, 5, mask, return_valid=True)  # k > N - 1: two real neighbours then repeats
    for i in range(3):
        others = [j for j in range(3) if j != i]
        assert set(idx[0, i, :2].tolist()) == set(others)
        assert (idx[0, i, 2:] == idx[0, i, 0]).all()
    assert valid[..., :2].all() and not valid[..., 2:].any()


@pytest.mark.parametrize("block", [1, 3, 7, 40, 1000])
def test_blocked_equals_unblocked(block):
    feats, mask = _batch(seed=11)
    f = feats.float()
    ref, vref = knn(f, 7, mask, block_size=40, return_valid=True)
    got, vgot = knn(f, 7, mask, block_size=block, return_valid=True)
    assert torch.equal(ref, got) and torch.equal(vref, vgot)
    auto = knn(f, 7, mask, max_elements=4 * 40 * 5)  # automatic block of 5 queries
    assert auto_block_size(4, 40, 4 * 40 * 5) == 5
    assert torch.equal(ref, auto)


def test_large_coordinate_offset_in_mm():
    """Cells 5 mm apart at ~5 m from the origin: float32 expanded norms would lose the ordering without the
    per-event centring."""
    feats, mask = _batch(seed=5, counts=(40, 40, 40, 40), offset=5000.0, scale=5.0)
    idx = knn(feats.float(), 4, mask)
    for b in range(4):
        for i in range(0, 40, 3):
            ref, dref = _brute(feats, mask, b, i)
            f = feats[b].numpy()
            dgot = ((f[idx[b, i].numpy()] - f[i]) ** 2).sum(-1)
            np.testing.assert_allclose(dgot, dref[:4], rtol=1e-3)


def test_autocast_does_not_change_result():
    feats, mask = _batch(seed=2)
    f = feats.float()
    ref = knn(f, 5, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = knn(f, 5, mask)
    assert torch.equal(ref, got)


def test_knn_bad_input():
    with pytest.raises(ValueError, match="features"):
        knn(torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match="k"):
        knn(torch.randn(1, 5, 3), 0)
    with pytest.raises(ValueError, match="mask"):
        knn(torch.randn(1, 5, 3), 2, torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        knn(torch.randn(1, 5, 3), 2, torch.ones(1, 5))
    with pytest.raises(ValueError, match="block_size"):
        knn(torch.randn(1, 5, 3), 2, block_size=0)


@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_brute_force(loop):
    g = torch.Generator().manual_seed(7)
    sizes = [12, 1, 3, 20]
    pos = torch.randn(sum(sizes), 3, generator=g)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    k = 4
    ei = knn_graph(pos, k, batch, loop=loop)
    src, dst = ei
    assert (batch[src] == batch[dst]).all()
    assert (torch.diff(batch[dst]) >= 0).all() and (torch.diff(dst) >= 0).all()  # sorted by batch and centre
    expected = set()
    start = 0
    for n in sizes:
        p = pos[start:start + n].double()
        d = torch.cdist(p, p) ** 2
        d.fill_diagonal_(float("inf"))
        for i in range(n):
            m = min(k, n - 1)
            for j in torch.topk(d[i], m, largest=False).indices.tolist():
                expected.add((start + j, start + i))
            if loop:
                expected.add((start + i, start + i))
        start += n
    got = set(zip(src.tolist(), dst.tolist()))
    assert got == expected and len(got) == ei.shape[1]  # no duplicated edges
    ei_t = knn_graph(pos, k, batch, loop=loop, flow="target_to_source")
    assert torch.equal(ei_t, ei.flip(0))


def test_knn_graph_errors_and_single_event():
    pos = torch.randn(6, 2)
    ei = knn_graph(pos, 2)
    assert ei.shape == (2, 12) and not (ei[0] == ei[1]).any()
    with pytest.raises(ValueError, match="sorted"):
        knn_graph(pos, 2, torch.tensor([0, 1, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="batch"):
        knn_graph(pos, 2, torch.zeros(5, dtype=torch.long))
    assert knn_graph(torch.empty(0, 3), 3).shape == (2, 0)
