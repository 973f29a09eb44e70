"""Batched views of cloud arrays for models: padded tensors with a mask, PyG batches, a streaming dataset.

Everything is vectorised over points (one ``np.lexsort`` and fancy-index scatters per batch).

Point selection and truncation policy (``max_points``)
------------------------------------------------------
Points are ranked inside each event: track points (FOCAL_TRACK, OTHER_TRACK) first, then cells by decreasing
``energy`` (ties: stored order). When an event has more than ``max_points`` points, only the first ``max_points`` of
that ranking are kept, i.e. all tracks (up to the limit) and the highest-energy cells. The energy of the dropped
points is reported per event in ``truncated_energy`` (GeV, float64) and their number in ``n_truncated`` so that
losses are never silent. Stored PADDING points (type 3) are ignored. ``sort_by="energy"`` lays kept points out in
ranking order; ``sort_by=None`` keeps their stored order.

Padded layout (:func:`to_padded`)
---------------------------------
==================== ============= =====================================================================
key                  shape, dtype  meaning
==================== ============= =====================================================================
``x``                (B,N,F) f32   features (names in :func:`pcloud.core.schema.feature_columns`); 0 in padding
``pos``              (B,N,3) f32   x, y, z (mm, geometry frame); 0 in padding
``mask``             (B,N) bool    True for real points
``type``             (B,N) int64   point type; PADDING (3) in padding
``energy``           (B,N) f32     point energy (GeV); 0 in padding
``n_points``         (B,) int64    real points kept per event
``n_truncated``      (B,) int64    points dropped by ``max_points``
``truncated_energy`` (B,) f64      energy (GeV) of the dropped points
``event_number``     (B,) int64    event numbers
``y_hard``           (B,N) int64   requested targets (``targets=("hard", "binary", "soft")``), see the label
``y_binary``         (B,N) int64   policy of :mod:`pcloud.core.schema`; padding: -1 for hard/binary, 0 for soft
``y_soft``           (B,N) f32
``<event field>``    (B,)          per-event fields requested with ``event_targets`` (e.g. ``energy_gev``)
``g``                (B,G) f32     per-event fields requested with ``global_features``
==================== ============= =====================================================================
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import awkward as ak
import numpy as np
import torch

from ..core.schema import NO_PARTICLE, PointType, binary_labels, hard_labels, target_fractions, validate_clouds
from .point_features import resolve_features, feature_matrix

#: per-point targets derived from the truth lists (label policy of :mod:`pcloud.core.schema`)
POINT_TARGETS = ("hard", "binary", "soft")


def _flat(clouds, field):
    return ak.to_numpy(ak.flatten(clouds.points[field], axis=1))


def _target_index(clouds, target_index):
    if target_index is not None:
        return target_index
    if "focal_truth_index" in ak.fields(clouds):
        return ak.to_numpy(clouds.focal_truth_index)
    raise ValueError("binary/soft targets need the target truth particle: pass target_index= or store the per-event "
                     "field 'focal_truth_index' (per-track clouds)")


def _targets_flat(clouds, targets, target_index, threshold) -> dict[str, np.ndarray]:
    out = {}
    for t in targets:
        if t not in POINT_TARGETS:
            raise ValueError(f"unknown target {t!r}; known: {POINT_TARGETS}")
        if t == "hard":
            out[t] = ak.to_numpy(ak.flatten(hard_labels(clouds.points), axis=1))
        elif t == "binary":
            out[t] = ak.to_numpy(ak.flatten(binary_labels(clouds.points, _target_index(clouds, target_index),
                                                          threshold), axis=1))
        else:
            out[t] = ak.to_numpy(ak.flatten(target_fractions(clouds.points, _target_index(clouds, target_index)),
                                            axis=1))
    return out


def select_points(clouds, max_points, sort_by="energy") -> dict:
    """Rank and truncate points (policy: module docstring). Returns a dict of flat numpy arrays: ``idx`` (kept flat
    point indices in (event, slot) order), ``slot`` (their slot in the padded layout), ``ev`` (event of every
    point), ``kept`` / ``n_truncated`` / ``truncated_energy`` (per event), ``counts`` and ``typ``."""
    if sort_by not in ("energy", None):
        raise ValueError(f"sort_by must be 'energy' or None, found {sort_by!r}")
    if max_points is not None and int(max_points) <= 0:
        raise ValueError(f"max_points must be positive or None, found {max_points}")
    counts = ak.to_numpy(ak.num(clouds.points, axis=1)).astype(np.int64)
    b = counts.size
    ev = np.repeat(np.arange(b, dtype=np.int64), counts)
    typ = _flat(clouds, "type").astype(np.int64)
    energy = _flat(clouds, "energy").astype(np.float64)
    if not np.all(np.isfinite(energy)):
        raise ValueError(f"point energies contain {int((~np.isfinite(energy)).sum())} NaN/inf values")
    real = typ != PointType.PADDING
    # priority: tracks (+inf) before cells (by energy); padding last and never kept.
    prio = np.where(typ == PointType.CELL, energy, np.inf)
    prio = np.where(real, prio, -np.inf)
    order = np.lexsort((-prio, ev))  # stable: ties keep stored order
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    rank = np.empty(ev.size, dtype=np.int64)
    rank[order] = np.arange(ev.size) - starts[ev[order]]
    n_real = np.bincount(ev[real], minlength=b)
    limit = np.inf if max_points is None else int(max_points)
    keep = real & (rank < limit)
    if sort_by == "energy":
        idx = order[keep[order]]
        slot = rank[idx]
    else:
        idx = np.nonzero(keep)[0]
        csum = np.cumsum(keep)
        before = np.concatenate([[0], csum])[starts[ev[idx]]]
        slot = csum[idx] - 1 - before
    dropped = real & ~keep
    return dict(counts=counts, ev=ev, idx=idx, slot=slot, kept=np.bincount(ev[idx], minlength=b),
                n_truncated=n_real - np.bincount(ev[idx], minlength=b),
                truncated_energy=np.bincount(ev[dropped], weights=energy[dropped], minlength=b), typ=typ)


def padded_point_fields(feats) -> list[str]:
    """The per-point fields :func:`to_padded` reads for features ``feats`` (without per-point targets): position,
    energy (ordering, truncation), type, and what the features need."""
    need = {"x", "y", "z", "energy", "type"}
    for f in resolve_features(feats):
        need |= set(f.needs)
    return sorted(need)


def _point_columns(clouds, feats) -> dict[str, np.ndarray]:
    need = set(padded_point_fields(feats))
    pf = ak.fields(clouds.points)
    missing = sorted(need - set(pf))
    if missing:
        raise KeyError(f"clouds lack point field(s) {missing} needed by the features; found {pf}")
    return {k: _flat(clouds, k) for k in need}


def _event_targets(clouds, event_targets, b) -> dict[str, torch.Tensor]:
    out = {}
    for f in event_targets:
        if f not in ak.fields(clouds):
            raise KeyError(f"event target {f!r} is not a per-event field; found {ak.fields(clouds)}")
        out[f] = torch.from_numpy(np.ascontiguousarray(ak.to_numpy(clouds[f])))
    return out


def to_padded(clouds: ak.Array, features: Sequence[str], max_points: int | None = None,
              pad_to_multiple: int | None = None, sort_by: str | None = "energy", targets: Sequence[str] = (),
              target_index=None, binary_threshold: float = 0.5, event_targets: Sequence[str] = (),
              global_features: Sequence[str] = (), normaliser=None) -> dict[str, torch.Tensor]:
    """Padded tensors ``(B, N, ...)`` + mask of a cloud array (layout and truncation policy: module docstring).

    N is the largest kept point count (at least 1), rounded up to ``pad_to_multiple``. ``targets`` picks per-point
    targets from ``("hard", "binary", "soft")``; binary/soft need ``target_index`` (scalar or per event) or the
    per-event field ``focal_truth_index``. ``global_features``: per-event fields stacked into ``g`` (B, G) float32
    (the global input of :mod:`pcloud.nn` heads). ``normaliser`` (:class:`pcloud.data.normalise.Normaliser`) is applied
    to ``x``, leaving padding at 0.
    """
    feats = resolve_features(features)
    clouds = validate_clouds(clouds, "to_padded", None if targets else padded_point_fields(feats))
    b = len(clouds)
    if b == 0:
        raise ValueError("to_padded: no events")
    sel = select_points(clouds, max_points, sort_by)
    cols = _point_columns(clouds, feats)
    idx, slot, ev = sel["idx"], sel["slot"], sel["ev"][sel["idx"]]
    n = int(max(1, sel["kept"].max(initial=0)))
    if pad_to_multiple:
        m = int(pad_to_multiple)
        if m <= 0:
            raise ValueError(f"pad_to_multiple must be positive, found {pad_to_multiple}")
        n = -(-n // m) * m
    fm = feature_matrix({k: v[idx] for k, v in cols.items()}, feats)
    x = np.zeros((b, n, fm.shape[1]), dtype=np.float32)
    x[ev, slot] = fm
    pos = np.zeros((b, n, 3), dtype=np.float32)
    pos[ev, slot] = np.stack([cols["x"][idx], cols["y"][idx], cols["z"][idx]], axis=1)
    mask = np.zeros((b, n), dtype=bool)
    mask[ev, slot] = True
    typ = np.full((b, n), int(PointType.PADDING), dtype=np.int64)
    typ[ev, slot] = sel["typ"][idx]
    energy = np.zeros((b, n), dtype=np.float32)
    energy[ev, slot] = cols["energy"][idx]
    out = {"x": torch.from_numpy(x), "pos": torch.from_numpy(pos), "mask": torch.from_numpy(mask),
           "type": torch.from_numpy(typ), "energy": torch.from_numpy(energy),
           "n_points": torch.from_numpy(sel["kept"].astype(np.int64)),
           "n_truncated": torch.from_numpy(sel["n_truncated"].astype(np.int64)),
           "truncated_energy": torch.from_numpy(sel["truncated_energy"]),
           "event_number": torch.from_numpy(ak.to_numpy(clouds.event_number).astype(np.int64))}
    for name, flat in _targets_flat(clouds, targets, target_index, binary_threshold).items():
        fill = 0.0 if name == "soft" else NO_PARTICLE
        dtype = np.float32 if name == "soft" else np.int64
        y = np.full((b, n), fill, dtype=dtype)
        y[ev, slot] = flat[idx]
        out[f"y_{name}"] = torch.from_numpy(y)
    out.update(_event_targets(clouds, event_targets, b))
    if global_features:
        g = _event_targets(clouds, global_features, b)
        out["g"] = torch.stack([g[f].to(torch.float32) for f in global_features], dim=1)
    if normaliser is not None:
        out = normaliser.apply(out)
    return out


def to_pyg_batch(clouds: ak.Array, features: Sequence[str], y: str | None = None, max_points: int | None = None,
                 target_index=None, binary_threshold: float = 0.5, normaliser=None):
    """A :class:`torch_geometric.data.Batch` of the events: ``x`` (P, F), ``pos`` (P, 3), ``batch`` (P,), ``ptr``,
    ``energy``, ``type``, ``event_number`` (B,) and ``y``.

    ``y``: ``"hard"`` / ``"binary"`` / ``"soft"`` give per-point targets (P,); the name of a per-event field (e.g.
    ``"energy_gev"``, ``"pdg"``) gives (B,); None leaves it out. Points of one event are contiguous, in the
    ``sort_by="energy"`` order of :func:`to_padded` (truncation policy too). Built without a per-event loop; the
    batch supports ``num_graphs``, ``get_example`` and ``to_data_list``.
    """
    try:
        from torch_geometric.data import Batch
    except ImportError as err:
        raise ImportError("to_pyg_batch needs the optional package torch-geometric (PyG interchange): "
                          "pip install 'pcloud[pyg]' (torch-geometric 2.8.x); pcloud's own models do not need it"
                          ) from err

    clouds = validate_clouds(clouds, "to_pyg_batch")
    feats = resolve_features(features)
    b = len(clouds)
    if b == 0:
        raise ValueError("to_pyg_batch: no events")
    sel = select_points(clouds, max_points, "energy")
    cols = _point_columns(clouds, feats)
    idx = sel["idx"]
    x = feature_matrix({k: v[idx] for k, v in cols.items()}, feats)
    if normaliser is not None:
        x = normaliser.transform_flat(x)
    ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(sel["kept"])]).astype(np.int64))
    data = dict(x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                pos=torch.from_numpy(np.stack([cols["x"][idx], cols["y"][idx], cols["z"][idx]], 1).astype(np.float32)),
                energy=torch.from_numpy(cols["energy"][idx].astype(np.float32)),
                type=torch.from_numpy(sel["typ"][idx]),
                batch=torch.from_numpy(sel["ev"][idx]), ptr=ptr,
                event_number=torch.from_numpy(ak.to_numpy(clouds.event_number).astype(np.int64)))
    per_event = ["event_number"]
    if y is not None:
        if y in POINT_TARGETS:
            data["y"] = torch.from_numpy(_targets_flat(clouds, [y], target_index, binary_threshold)[y][idx])
        else:
            data["y"] = _event_targets(clouds, [y], b)[y]
            per_event.append("y")
    batch = Batch(**data)
    # bookkeeping that Batch.from_data_list would have made, so get_example / to_data_list work
    arange = torch.arange(b + 1)
    batch._num_graphs = b
    batch._slice_dict = {k: (arange if k in per_event else ptr) for k in data if k not in ("batch", "ptr")}
    batch._inc_dict = {k: torch.zeros(b, dtype=torch.long) for k in batch._slice_dict}
    return batch


# ---------------------------------------------------------------------------------------------------- collation
def _as_array(items) -> ak.Array:
    if isinstance(items, ak.Array):
        return items
    if isinstance(items, ak.Record):
        items = [items]
    parts = []
    for it in items:
        if isinstance(it, ak.Record):
            lay = it.layout
            parts.append(ak.Array(lay.array[lay.at:lay.at + 1]))
        elif isinstance(it, ak.Array):
            parts.append(it)
        else:
            raise TypeError(f"collate: expected awkward events (Array or Record), found {type(it).__name__}")
    if not parts:
        raise ValueError("collate: empty batch")
    return parts[0] if len(parts) == 1 else ak.concatenate(parts)


class PaddedCollate:
    """Collate function: a list of events (ak.Record / 1-event arrays) or an ak.Array batch -> :func:`to_padded`."""

    def __init__(self, features: Sequence[str], **to_padded_kwargs):
        resolve_features(features)
        self.features = list(features)
        self.kwargs = to_padded_kwargs

    def __call__(self, items):
        return to_padded(_as_array(items), self.features, **self.kwargs)


class PyGCollate:
    """Collate function producing :func:`to_pyg_batch` batches."""

    def __init__(self, features: Sequence[str], **to_pyg_kwargs):
        resolve_features(features)
        self.features = list(features)
        self.kwargs = to_pyg_kwargs

    def __call__(self, items):
        return to_pyg_batch(_as_array(items), self.features, **self.kwargs)


def collate_clouds(items, features: Sequence[str], **to_padded_kwargs) -> dict[str, torch.Tensor]:
    """Functional form of :class:`PaddedCollate`."""
    return to_padded(_as_array(items), features, **to_padded_kwargs)


# ---------------------------------------------------------------------------------------------------- dataset
class CloudDataset(torch.utils.data.IterableDataset):
    """Stream batches of events from a cloud array or a chunk source, never holding more than a buffer of events.

    A chunk source is any object with ``chunks(chunk_size, columns)`` (an iterator of cloud-array chunks) and
    ``n_events``, e.g. :class:`pcloud.io.native.NativeStore` for a native Parquet store. Sources that also have
    ``n_row_groups`` and accept ``chunks(row_groups=...)`` are read row group by row group: with several DataLoader
    workers each worker reads only every ``num_workers``-th row group, and with ``shuffle`` the row-group order is
    permuted every epoch.

    Yields ``collate(batch)`` for each batch of ``batch_size`` events (an ak.Array when ``collate`` is None), so use
    it as ``DataLoader(CloudDataset(...), batch_size=None)``. ``splits`` / ``split`` keep only the events of one
    split (by event number, :class:`pcloud.data.splits.Splits`). ``shuffle``: chunks (row groups, or slices of
    ``chunk_size`` events of an array) are taken in a permuted order and their events are shuffled inside a buffer
    of at least ``shuffle_buffer`` events (default ``chunk_size``, itself 16 batches by default), seeded by ``seed``,
    the epoch (:meth:`set_epoch`) and the worker. Without ``shuffle`` the stored order is kept.
    """

    def __init__(self, source, batch_size: int = 64, collate: Callable | None = None, shuffle: bool = False,
                 seed: int = 0, splits=None, split: str | None = None, columns=None, chunk_size: int | None = None,
                 drop_last: bool = False, shuffle_buffer: int | None = None):
        if batch_size <= 0:
            raise ValueError(f"CloudDataset: batch_size must be positive, found {batch_size}")
        if (splits is None) != (split is None):
            raise ValueError("CloudDataset: give both splits= and split= (or neither)")
        if splits is not None and split not in splits.names:
            raise KeyError(f"CloudDataset: split {split!r} not in {splits.names}")
        if isinstance(source, ak.Array):
            validate_clouds(source, "CloudDataset")
        elif not callable(getattr(source, "chunks", None)):
            raise TypeError(f"CloudDataset: expected a cloud array or a chunk source with .chunks() (e.g. "
                            f"pcloud.io.native.NativeStore), found {type(source).__name__}")
        self.source = source
        self.batch_size = int(batch_size)
        self.collate = collate
        self.shuffle = shuffle
        self.seed = int(seed)
        self.splits, self.split = splits, split
        self.columns = columns
        self.chunk_size = int(chunk_size) if chunk_size else 16 * self.batch_size
        self.shuffle_buffer = int(shuffle_buffer) if shuffle_buffer else self.chunk_size
        if self.chunk_size <= 0 or self.shuffle_buffer <= 0:
            raise ValueError(f"CloudDataset: chunk_size and shuffle_buffer must be positive, found "
                             f"{self.chunk_size}, {self.shuffle_buffer}")
        self.drop_last = drop_last
        self.epoch = 0
        #: distributed training (:mod:`pcloud.pipeline.distributed`): this process's rank among ``world`` readers;
        #: row groups are split over ``world x num_workers`` readers
        self.rank, self.world = 0, 1

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _chunks(self, rng, wid: int, nw: int) -> Iterator[ak.Array]:
        """This worker's chunks, in stored or (shuffled) permuted order."""
        if isinstance(self.source, ak.Array):
            starts = np.arange(0, len(self.source), self.chunk_size)
            if self.shuffle:
                starts = starts[rng.permutation(starts.size)]
            for s in starts[wid::nw]:  # slices of an in-memory array are views: cheap to reorder
                yield self.source[s:s + self.chunk_size]
        elif hasattr(self.source, "n_row_groups"):
            groups = np.arange(self.source.n_row_groups)
            if self.shuffle:
                groups = groups[rng.permutation(groups.size)]
            yield from self.source.chunks(columns=self.columns, row_groups=groups[wid::nw])
        else:
            for i, c in enumerate(self.source.chunks(chunk_size=self.chunk_size, columns=self.columns)):
                if i % nw == wid:
                    yield c

    def _filter(self, chunk):
        if self.splits is None:
            return chunk
        # packed: a masked jagged array is a view that keeps the whole chunk's points alive, and concatenating
        # views copies their whole contents (see _emit)
        return ak.to_packed(chunk[self.splits.mask(ak.to_numpy(chunk.event_number), self.split)])

    def _n_selected(self) -> int:
        if self.splits is None and isinstance(self.source, ak.Array):
            return len(self.source)
        if isinstance(self.source, ak.Array):
            return int(self.splits.mask(ak.to_numpy(self.source.event_number), self.split).sum())
        if self.splits is None:
            return int(self.source.n_events)
        return sum(int(self.splits.mask(ak.to_numpy(c.event_number), self.split).sum())
                   for c in self.source.chunks(columns=["event_number"]))

    def __len__(self) -> int:
        """Number of batches per epoch (single worker)."""
        n = self._n_selected()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        wid, nw = self.rank * nw + wid, self.world * nw  # one reader among all ranks' workers
        rng = np.random.default_rng([self.seed, self.epoch])  # the same chunk order in every worker
        shuffle_rng = np.random.default_rng([self.seed, self.epoch, wid, 1])
        pending, n_pending = [], 0
        for chunk in self._chunks(rng, wid, nw):
            chunk = self._filter(chunk)
            if not len(chunk):
                continue
            pending.append(chunk)
            n_pending += len(chunk)
            if n_pending >= self.shuffle_buffer:
                rest = yield from self._emit(pending, shuffle_rng)
                pending, n_pending = ([rest], len(rest)) if len(rest) else ([], 0)
        if n_pending:
            rest = yield from self._emit(pending, shuffle_rng)
            if len(rest) and not self.drop_last:
                yield self._out(rest)

    def _emit(self, pending, rng):
        """Yield the full batches of the buffered chunks (shuffled when asked); return the remainder."""
        buf = pending[0] if len(pending) == 1 else ak.concatenate(pending)
        if self.shuffle:
            buf = buf[rng.permutation(len(buf))]
        n_full = len(buf) // self.batch_size * self.batch_size
        for s in range(0, n_full, self.batch_size):
            yield self._out(buf[s:s + self.batch_size])
        # The remainder is packed (a copy of < batch_size events): as a view of the shuffled buffer it would carry
        # the buffer's whole content into the next ak.concatenate, which copies contents, not the viewed events,
        # so every buffer would hold all earlier ones and memory would grow with the number of buffers per epoch,
        # i.e. with the size of the input (issue 8: +0.4 GB at 200k CaloGAN showers).
        return ak.to_packed(buf[n_full:])

    def _out(self, batch):
        return batch if self.collate is None else self.collate(batch)
