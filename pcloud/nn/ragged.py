"""The ragged (unpadded, PyG-style) batch of the point models: all points of all events in one ``(P, C)`` tensor
plus a sorted event index ``batch (P,)``, instead of ``(B, N_max, C)`` tensors padded to the largest event.

Batch dict of the ragged path (every point model accepts it in place of the padded dict; see
:meth:`pcloud.nn.heads.PointCloudModel.unpack_ragged`)::

    {"x": (P, F) float, "pos": (P, 3) float mm, "batch": (P,) int64 non-decreasing, "g": (B, G) (optional),
     "n_events": B (optional, else batch[-1] + 1 or g's rows)}

Outputs: per-event outputs ``(B, ...)`` as in the padded path, per-point outputs ``(P, ...)`` in the input order
(so ``padded_out[mask]`` of the padded path equals the ragged output: tested).

What the ragged path changes: per-point layers already run only on real points in the padded path
(:class:`pcloud.nn.layers.MaskedMLP`), so the savings are in what remains per slot: the padded ``(B, N_max, C)``
activations written after every layer, the masked pooling, and above all the quadratic per-event parts (kNN
distance blocks of DGCNN and GravNet, attention of the point transformer), which the ragged path computes in groups
of events of similar size (:func:`size_groups`), each padded only to the largest event *of its group*.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .knn import knn
from .layers import pooled_dim

__all__ = ["RaggedLayout", "ragged_layout", "pad_ragged", "segment_pool", "size_groups", "ragged_knn",
           "padded_to_ragged", "pad_point_outputs", "DEFAULT_GROUP_ELEMENTS"]

#: budget of a group of :func:`size_groups`: events x (largest event)^2 (one float32 N x N block per event: 16 MiB)
DEFAULT_GROUP_ELEMENTS = 1 << 22


@dataclass
class RaggedLayout:
    """Where each point of a ragged batch sits: event ``batch (P,)``, slot within its event ``slot (P,)``, points per
    event ``counts (B,)`` and the first point of each event ``ptr (B,)``."""

    batch: Tensor
    slot: Tensor
    counts: Tensor
    ptr: Tensor

    @property
    def n_events(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_max(self) -> int:
        return int(self.counts.max()) if self.counts.numel() else 0


def ragged_layout(batch: Tensor, n_events: int | None = None) -> RaggedLayout:
    """The :class:`RaggedLayout` of a sorted event index ``batch (P,)`` (events without points allowed)."""
    if batch.dim() != 1:
        raise ValueError(f"ragged batch: 'batch' must be (P,), found {tuple(batch.shape)}")
    batch = batch.long()
    P = batch.shape[0]
    if P and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("ragged batch: 'batch' must be sorted in non-decreasing order (PyG convention)")
    if P and int(batch[0]) < 0:
        raise ValueError(f"ragged batch: 'batch' must be non-negative, found {int(batch[0])}")
    b = int(batch[-1]) + 1 if P else 0
    if n_events is not None:
        if n_events < b:
            raise ValueError(f"ragged batch: n_events = {n_events} but 'batch' holds event index {b - 1}")
        b = int(n_events)
    counts = torch.bincount(batch, minlength=b)
    ptr = torch.cumsum(counts, 0) - counts
    slot = torch.arange(P, device=batch.device) - ptr[batch]
    return RaggedLayout(batch, slot, counts, ptr)


def pad_ragged(x: Tensor, layout: RaggedLayout, n_max: int | None = None) -> tuple[Tensor, Tensor]:
    """``(P, ...)`` -> padded ``(B, n_max, ...)`` (zeros at padding) and ``mask (B, n_max)``."""
    n = max(layout.n_max, 1) if n_max is None else int(n_max)
    out = x.new_zeros((layout.n_events, n) + tuple(x.shape[1:]))
    out[layout.batch, layout.slot] = x
    mask = torch.zeros(layout.n_events, n, dtype=torch.bool, device=x.device)
    mask[layout.batch, layout.slot] = True
    return out, mask


def padded_to_ragged(batch: dict) -> dict:
    """The ragged form of a padded model batch (``x``, ``pos``, ``mask``, optional ``g``, and the cell graph's
    ``layer (B, N)`` and ``nbr (B, N, K)`` slots, -1 for none, of :mod:`pcloud.nn.cellgraph`): points in (event, slot)
    order, so that per-point outputs of the ragged path equal ``padded_output[mask]``; neighbours at padded slots
    become -1."""
    mask = batch["mask"]
    bi = mask.nonzero(as_tuple=True)[0]
    out = {"x": batch["x"][mask], "batch": bi, "n_events": int(mask.shape[0])}
    if batch.get("pos") is not None:
        out["pos"] = batch["pos"][mask]
    if batch.get("g") is not None:
        out["g"] = batch["g"]
    if batch.get("layer") is not None:
        out["layer"] = batch["layer"][mask]
    if batch.get("nbr") is not None:  # (B, N, K) slots within the event -> (P, K) flat indices of the ragged rows
        nb = batch["nbr"][mask].long()
        B, N = mask.shape
        if nb.numel() and int(nb.max()) >= N:
            raise ValueError(f"padded batch: 'nbr' holds slot {int(nb.max())}, but the events have {N} slots")
        row = torch.cumsum(mask.reshape(-1).long(), 0) - 1
        flat = (bi.unsqueeze(1) * N + nb.clamp_min(0)).clamp_max(B * N - 1)
        ok = (nb >= 0) & mask.reshape(-1)[flat]
        out["nbr"] = torch.where(ok, row[flat], torch.full_like(nb, -1))
    return out


def pad_point_outputs(out: dict, mask: Tensor) -> dict:
    """Put the per-point outputs (``seg_logits``, ``seg_fractions``) of a ragged forward pass of a padded batch back
    into ``(B, N, ...)`` with zeros at padding (in place; returns ``out``)."""
    for key in ("seg_logits", "seg_fractions"):
        if key in out:
            v = out[key]
            pad = v.new_zeros(mask.shape + v.shape[1:])
            pad[mask] = v
            out[key] = pad
    return out


def segment_pool(h: Tensor, batch: Tensor, n_events: int, mode: str = "max") -> Tensor:
    """The ragged form of :func:`pcloud.nn.layers.masked_pool`: ``(P, C) -> (B, C)`` (``2C`` for "max+mean"); an
    event without points pools to zeros."""
    pooled_dim(h.shape[-1], mode)
    C = h.shape[-1]
    parts = []
    idx = batch.view(-1, 1).expand(-1, C)
    if mode in ("max", "max+mean"):
        parts.append(h.new_zeros(n_events, C).scatter_reduce(0, idx, h, "amax", include_self=False))
    if mode in ("mean", "sum", "max+mean"):
        s = h.new_zeros(n_events, C).index_add(0, batch, h)
        if mode != "sum":
            cnt = torch.bincount(batch, minlength=n_events).clamp_min(1).to(h.dtype)
            s = s / cnt.unsqueeze(-1)
        parts.append(s)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def size_groups(counts: Tensor, max_elements: int = DEFAULT_GROUP_ELEMENTS) -> list[Tensor]:
    """Events sorted by size and cut into consecutive groups with ``len(group) * n_max(group)^2 <= max_elements``
    (at least one event per group); events without points are left out. Each group is padded only to its own
    largest event by the quadratic parts of the ragged path."""
    order = torch.argsort(counts, stable=True)
    order = order[counts[order] > 0]
    c = counts[order].tolist()
    groups, start = [], 0
    for i in range(len(c)):  # a loop over events of one batch (cheap next to the per-group tensor work)
        if i > start and (i - start + 1) * c[i] * c[i] > max_elements:
            groups.append(order[start:i])
            start = i
    if start < len(c):
        groups.append(order[start:])
    return groups


def group_index(layout: RaggedLayout, events: Tensor) -> tuple[Tensor, Tensor]:
    """Flat point indices ``(G, n)`` of the events of one group, padded to the group's largest event (padding slots
    point at the event's first point), and the group's ``mask (G, n)``."""
    cnt = layout.counts[events]
    n = int(cnt.max())
    ar = torch.arange(n, device=cnt.device)
    mask = ar.unsqueeze(0) < cnt.unsqueeze(1)
    idx = layout.ptr[events].unsqueeze(1) + torch.where(mask, ar.unsqueeze(0), torch.zeros_like(ar).unsqueeze(0))
    return idx, mask


@torch.no_grad()
def ragged_knn(feat: Tensor, layout: RaggedLayout, k: int, max_elements: int = DEFAULT_GROUP_ELEMENTS,
               exact_ties: bool = True, precise: bool = False) -> tuple[Tensor, Tensor]:
    """k nearest neighbours of every point among the points of its event, on ragged inputs ``feat (P, C)``:
    ``(nbr (P, k) flat point indices, valid (P, k))``, the neighbour rules of :func:`pcloud.nn.knn.knn` (self
    excluded, repeated nearest neighbour where an event has fewer than ``k + 1`` points, a self-loop for an isolated
    point). Computed per :func:`size_groups` group; ``precise`` ranks in float64 (as :func:`knn`)."""
    P = feat.shape[0]
    nbr = torch.arange(P, device=feat.device).unsqueeze(1).repeat(1, k)
    valid = torch.zeros(P, k, dtype=torch.bool, device=feat.device)
    for ev in size_groups(layout.counts, max_elements):
        idx, mask = group_index(layout, ev)
        loc, ok = knn(feat[idx], k, mask, return_valid=True, exact_ties=exact_ties,
                      precise=precise)  # (G, n, k) slots in the event
        flat = layout.ptr[ev].view(-1, 1, 1) + loc
        q = idx[mask]
        nbr[q] = flat[mask]
        valid[q] = ok[mask]
    return nbr, valid
