"""k-nearest-neighbour search in pure torch (no torch-cluster / pyg-lib).

Two entry points:

* :func:`knn` for padded batches ``(B, N, C)`` + ``mask (B, N)`` -> neighbour indices ``(B, N, k)``;
* :func:`knn_graph` for PyG-style flat inputs ``(P, C)`` + sorted ``batch (P,)`` -> ``edge_index (2, E)``.

Distances are squared Euclidean after subtracting the per-event mean of the real points (translation does not
change distances but removes most of the float32 cancellation for coordinates in mm far from the origin), always in
float32 with autocast disabled: coordinates (at most 4 channels) as ``sum_c (a_c - b_c)^2``, wider features as
``|a|^2 + |b|^2 - 2 a.b`` (one matmul); then the ``k`` smallest by a stable sort (ties: lower index first), so
that exported graphs (:func:`knn_dense`) pick the same neighbours as torch on cell grids with equal distances. The query axis is processed in blocks so that the distance buffer holds at most ``B * block * N``
numbers.

Neighbour rules (the contract the EdgeConv layers rely on):

* a point is never its own neighbour while another real point exists in its event;
* padding (``mask == False``) is never returned as a neighbour of a real point;
* a real point whose event has fewer than ``k + 1`` real points gets all the other real points in ascending
  distance, and the remaining slots repeat its *nearest* real neighbour (neutral for max aggregation); the
  ``valid`` mask returned with ``return_valid=True`` is False for those repeated slots;
* a real point that is alone in its event gets itself in every slot (a self-loop, ``valid`` all False);
* rows of padded query points are filled with the point's own index (they are meaningless; ``valid`` False).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["knn", "knn_dense", "knn_graph", "pairwise_sq_dist", "auto_block_size"]

DEFAULT_MAX_ELEMENTS = 1 << 22  # float32 distance-buffer budget for block_size=None (16 MiB; see bench_knn.py)


def pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``(B, M, N)`` between rows of ``a (B, M, C)`` and ``b (B, N, C)``.

    Uses the expanded form ``|a|^2 + |b|^2 - 2 a.b``, clamped at 0 against rounding.
    """
    d = torch.baddbmm((b * b).sum(-1).unsqueeze(-2), a, b.transpose(-1, -2), alpha=-2.0)  # one (B, M, N) buffer
    d.add_((a * a).sum(-1, keepdim=True))
    return d.clamp_min_(0.0)


#: feature widths up to this use the exact difference form of the distance (coordinates: exact ties on cell grids)
EXACT_DIFF_MAX_CHANNELS = 4


def sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared distances ``(B, M, N)`` as the kNN ranks them: for at most :data:`EXACT_DIFF_MAX_CHANNELS`
    channels (coordinates) ``sum_c (a_c - b_c)^2`` accumulated channel by channel in a fixed order (elementwise
    IEEE operations, so every runtime computes the same bits and cells at equal distance on a grid tie exactly);
    wider (learned) features use :func:`pairwise_sq_dist`. The dtype is the inputs' (float64 with ``precise``)."""
    if a.shape[-1] > EXACT_DIFF_MAX_CHANNELS:
        return pairwise_sq_dist(a, b)
    d = (a[..., 0].unsqueeze(-1) - b[..., 0].unsqueeze(-2)) ** 2
    for c in range(1, a.shape[-1]):
        d = d + (a[..., c].unsqueeze(-1) - b[..., c].unsqueeze(-2)) ** 2
    return d


#: set while an ONNX graph is traced (:func:`pcloud.nn.export.export_onnx`): ONNX has no stable sort operator,
#: but its ``TopK`` breaks ties by the lower index (ONNX operator specification, TopK, opset >= 11)
ONNX_TOPK = [False]


def smallest_k(d: Tensor, k: int, exact_ties: bool = True) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest values of the last axis and their indices, ties broken by the lower index (a stable sort
    in torch; ONNX ``TopK``, which breaks ties the same way, in exported graphs), so that neighbour sets do not
    depend on the runtime. ``exact_ties=False``: ``torch.topk`` (several times faster on CPU; the order of equal
    distances is unspecified, which does not matter for learned, continuous coordinates)."""
    if ONNX_TOPK[0] or not exact_ties:
        return torch.topk(d, k, dim=-1, largest=False, sorted=True)
    vals, idx = torch.sort(d, dim=-1, stable=True)
    return vals[..., :k], idx[..., :k]


def auto_block_size(batch_size: int, n_points: int, max_elements: int = DEFAULT_MAX_ELEMENTS) -> int:
    """Query-block length so that the ``(B, block, N)`` distance buffer stays below ``max_elements``."""
    return max(1, min(n_points, max_elements // max(1, batch_size * n_points)))


def _check_inputs(features: Tensor, k: int, mask: Tensor | None) -> Tensor:
    if not isinstance(features, Tensor) or features.dim() != 3:
        raise ValueError(f"knn: `features` must be a (B, N, C) tensor, found "
                         f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"knn: `k` must be a positive int, found {k!r}")
    B, N, _ = features.shape
    if mask is None:
        return torch.ones(B, N, dtype=torch.bool, device=features.device)
    if mask.shape != (B, N):
        raise ValueError(f"knn: `mask` must have shape (B, N) = {(B, N)} to match `features`, "
                         f"found {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"knn: `mask` must be a bool tensor (True = real point), found dtype {mask.dtype}")
    return mask


@torch.no_grad()
def knn(features: Tensor, k: int, mask: Tensor | None = None, block_size: int | None = None, *,
        return_valid: bool = False, max_elements: int = DEFAULT_MAX_ELEMENTS, precise: bool = False,
        exact_ties: bool = True):
    """Indices of the ``k`` nearest real neighbours of every point, ``(B, N, k)`` int64, nearest first.

    Parameters
    ----------
    features : (B, N, C) float tensor - coordinates (e.g. ``pos`` in mm) or learned features.
    k : number of neighbours.
    mask : (B, N) bool, True = real point; None = all real.
    block_size : number of query points per block; None picks one from ``max_elements`` (the
        ``B * block * N`` distance-buffer budget). Results do not depend on it.
    return_valid : also return ``valid (B, N, k)`` bool, True where the slot is a genuine, distinct real
        neighbour (False for repeated-nearest fill, self-loops and padded queries).
    precise : centre and rank in float64 instead of float32. Two runtimes (torch, onnxruntime) round float32
        sums and matmuls differently, enough to swap two neighbours whose distances agree to ~1e-7 (measured on
        particle-flow clouds, where cells at nearly equal distances abound); in float64 such swaps are ~1e9 times
        rarer. Models use it in eval mode, so that exported graphs choose the same neighbours.
    exact_ties : ties go to the lower index (stable sort, the default); False uses ``torch.topk`` (faster, tie
        order unspecified: for learned coordinates).

    See the module docstring for the fill rules when an event has fewer than ``k + 1`` real points.
    """
    mask = _check_inputs(features, k, mask)
    B, N, _ = features.shape
    device = features.device
    with torch.autocast(device_type=device.type, enabled=False):
        dt = torch.float64 if precise else torch.float32
        f = features.to(dt).masked_fill(~mask.unsqueeze(-1), 0.0)
        n_real = mask.sum(1, keepdim=True).clamp_min(1).unsqueeze(-1).to(dt)  # (B,1,1)
        f = f - f.sum(1, keepdim=True) / n_real  # centre on the real points' mean
        f = f.masked_fill(~mask.unsqueeze(-1), 0.0)
        if block_size is None:
            block_size = auto_block_size(B, N, max_elements)
        elif not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"knn: `block_size` must be a positive int or None, found {block_size!r}")
        k_eff = min(k, N)
        pad_cols = ~mask.unsqueeze(1)  # (B,1,N)
        idx = torch.empty(B, N, k, dtype=torch.long, device=device)
        valid = torch.empty(B, N, k, dtype=torch.bool, device=device)
        for start in range(0, N, block_size):
            stop = min(N, start + block_size)
            q = torch.arange(start, stop, device=device)
            d = sq_dist(f[:, start:stop], f)  # (B, b, N)
            d.masked_fill_(pad_cols, float("inf"))
            d[:, q - start, q] = float("inf")  # exclude self
            dist, nb = smallest_k(d, k_eff, exact_ties)  # (B, b, k_eff), ties: lower index first
            ok = torch.isfinite(dist)
            if k_eff < k:
                extra = k - k_eff
                nb = torch.cat([nb, nb[..., :1].expand(-1, -1, extra)], dim=-1)
                ok = torch.cat([ok, ok.new_zeros(ok.shape[:-1] + (extra,))], dim=-1)
            ok &= mask[:, start:stop].unsqueeze(-1)
            self_idx = q.view(1, -1, 1).expand_as(nb)
            fill = torch.where(ok[..., :1], nb[..., :1], self_idx)  # nearest real neighbour, else self
            idx[:, start:stop] = torch.where(ok, nb, fill)
            valid[:, start:stop] = ok
    return (idx, valid) if return_valid else idx


@torch.no_grad()
def knn_dense(features: Tensor, k: int, mask: Tensor, precise: bool = True) -> tuple[Tensor, Tensor]:
    """The export-friendly form of :func:`knn` (same neighbours, same ``valid``, same fill rules): one distance
    buffer ``(B, N, N)`` instead of a loop over query blocks, and ``k`` columns of ``+inf`` appended before
    ``topk`` so that ``k`` never exceeds the number of columns whatever the (dynamic) number of points; the
    appended columns are never finite, so they are never valid and are replaced by the fill rule. No Python value
    depends on the shapes, so ONNX and TorchScript graphs keep the batch and point axes dynamic. Distances are
    computed exactly as in :func:`knn` (:func:`sq_dist` of the centred float32 features) and ties go to the lower
    index (:func:`smallest_k`); float64 with ``precise`` (as :func:`knn` in eval mode)."""
    dt = torch.float64 if precise else torch.float32
    f = features.to(dt).masked_fill(~mask.unsqueeze(-1), 0.0)
    n_real = mask.sum(1, keepdim=True).clamp_min(1).unsqueeze(-1).to(dt)
    f = f - f.sum(1, keepdim=True) / n_real
    f = f.masked_fill(~mask.unsqueeze(-1), 0.0)
    d = sq_dist(f, f)  # (B, N, N)
    n = torch.arange(d.shape[-1], device=d.device)
    bad = (~mask).unsqueeze(1) | (n.unsqueeze(0) == n.unsqueeze(1)).unsqueeze(0)  # padding columns, self
    d = d.masked_fill(bad, float("inf"))
    d = torch.cat([d, torch.full_like(d[:, :, :1], float("inf")).expand(-1, -1, k)], dim=-1)
    dist, nb = smallest_k(d, k)  # (B, N, k)
    ok = torch.isfinite(dist) & mask.unsqueeze(-1)
    self_idx = n.view(1, -1, 1).expand_as(nb)
    fill = torch.where(ok[..., :1], nb[..., :1], self_idx)
    return torch.where(ok, nb, fill), ok


@torch.no_grad()
def knn_graph(pos: Tensor, k: int, batch: Tensor | None = None, *, loop: bool = False,
              flow: str = "source_to_target", block_size: int | None = None) -> Tensor:
    """PyG-style kNN graph on flat inputs, pure torch.

    Parameters
    ----------
    pos : (P, C) float tensor of points (all events concatenated).
    k : neighbours per point (points whose event has fewer than ``k + 1`` points get all of them: no
        repeated or padded edges are emitted here, as in ``torch_geometric.nn.knn_graph``).
    batch : (P,) int64 event index, sorted non-decreasing (PyG convention); None = one event.
    loop : if True, each point is also connected to itself (in addition to its ``k`` neighbours).
    flow : ``"source_to_target"`` -> ``edge_index = [neighbour j; centre i]`` (PyG default);
        ``"target_to_source"`` -> ``[centre i; neighbour j]``.

    Returns
    -------
    edge_index : (2, E) int64, grouped by event and by centre point (ascending), neighbours nearest first.
    """
    if not isinstance(pos, Tensor) or pos.dim() != 2:
        raise ValueError(f"knn_graph: `pos` must be a (P, C) tensor, found "
                         f"{tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__}")
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"knn_graph: `flow` must be 'source_to_target' or 'target_to_source', found {flow!r}")
    P = pos.shape[0]
    device = pos.device
    if batch is None:
        batch = torch.zeros(P, dtype=torch.long, device=device)
    if batch.shape != (P,):
        raise ValueError(f"knn_graph: `batch` must have shape ({P},) to match `pos`, found {tuple(batch.shape)}")
    batch = batch.long()
    if P == 0:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    if bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("knn_graph: `batch` must be sorted in non-decreasing order (PyG convention)")
    if int(batch[0]) < 0:
        raise ValueError(f"knn_graph: `batch` must be non-negative, found min {int(batch[0])}")
    n_events = int(batch[-1]) + 1
    counts = torch.bincount(batch, minlength=n_events)
    ptr = torch.cumsum(counts, 0) - counts
    slot = torch.arange(P, device=device) - ptr[batch]
    n_max = int(counts.max())
    padded = pos.new_zeros(n_events, n_max, pos.shape[1])
    padded[batch, slot] = pos
    mask = torch.zeros(n_events, n_max, dtype=torch.bool, device=device)
    mask[batch, slot] = True
    idx, valid = knn(padded, k, mask, block_size, return_valid=True)  # (B, n_max, k)
    nb_local = idx[batch, slot]  # (P, k)
    ok = valid[batch, slot]
    nb_flat = nb_local + ptr[batch].unsqueeze(-1)
    centre = torch.arange(P, device=device).unsqueeze(-1).expand_as(nb_flat)
    if loop:
        nb_flat = torch.cat([torch.arange(P, device=device).unsqueeze(-1), nb_flat], dim=1)
        centre = torch.cat([centre[:, :1], centre], dim=1)
        ok = torch.cat([ok.new_ones(P, 1), ok], dim=1)
    src, dst = nb_flat[ok], centre[ok]
    return torch.stack([src, dst]) if flow == "source_to_target" else torch.stack([dst, src])
