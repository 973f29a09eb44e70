"""Conversions between dense images / sparse deposits and point clouds (schema: :mod:`pcloud.core.schema`).

All conversions are vectorised over events and cells (``np.nonzero`` / ``np.lexsort`` / ``np.bincount``); the only
Python loops run over sections. Threshold semantics: a cell becomes a point when ``energy > threshold_gev``
(strictly); ``threshold_gev=None`` keeps every cell with ``energy != 0`` (negative noise fluctuations included).
Energy is conserved exactly: each point carries the cell's stored value, so the float64 sum of the points equals the
float64 sum of the cells above threshold (float32 output of float64 input: equal to float32 rounding, ~1e-7).
"""
from __future__ import annotations

import awkward as ak
import numpy as np

from ..geometry import Geometry
from ..core.showers import ShowerImages
from ..core.schema import POINT_FIELDS, PointType, SchemaError, build_clouds, event_fields, validate_clouds

# Per-geometry cache of the cell table in storage dtypes: id(geometry) -> (geometry, table).
_CELL_CACHE: dict[int, tuple[Geometry, dict]] = {}


def cell_table(geometry: Geometry) -> dict[str, np.ndarray]:
    """The geometry's cell table in point-schema dtypes (float32 positions, int32 layer), cached per geometry."""
    hit = _CELL_CACHE.get(id(geometry))
    if hit is not None and hit[0] is geometry:
        return hit[1]
    c = geometry.cells
    table = {k: np.ascontiguousarray(c[k], dtype=POINT_FIELDS[k][0]) for k in ("x", "y", "z", "eta", "phi", "layer")}
    table["noise_sigma"] = np.ascontiguousarray(c["noise_sigma_gev"], dtype=np.float32)
    table["x64"], table["y64"], table["z64"] = c["x"], c["y"], c["z"]
    if len(_CELL_CACHE) > 16:
        _CELL_CACHE.clear()
    _CELL_CACHE[id(geometry)] = (geometry, table)
    return table


def _check_threshold(threshold_gev):
    if threshold_gev is None:
        return None
    t = float(threshold_gev)
    if not np.isfinite(t):
        raise ValueError(f"threshold_gev must be finite or None, found {threshold_gev!r}")
    return t


def _check_finite(values: np.ndarray, what: str):
    # A float32 sum is one fast pass; it is non-finite if any value is NaN/inf (or, rarely, on overflow).
    if not np.isfinite(np.add.reduce(values, axis=None)):
        bad = ~np.isfinite(values)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise ValueError(f"{what}: {int(bad.sum())} non-finite energies (NaN/inf), first at index "
                             f"{tuple(int(i) for i in idx)}")


def _cell_points(geometry: Geometry, ev: np.ndarray, cell: np.ndarray, energy: np.ndarray, window_eta,
                 dtype) -> dict:
    """Per-point columns of cells ``cell`` in events ``ev`` (gathers from the cached cell table)."""
    t = cell_table(geometry)
    pts = {"type": np.zeros(cell.size, np.int8), "cell_id": cell.astype(np.int32),
           "energy": np.ascontiguousarray(energy, dtype=dtype)}
    for k in ("x", "y", "z", "layer", "noise_sigma"):
        pts[k] = t[k][cell]
    w = None if window_eta is None else np.asarray(window_eta, dtype=np.float64)
    if w is not None and geometry.frame == "local" and np.any(w != 0):
        # eta depends on the window position (to_collider shifts z_C by z_L sinh(window_eta)); phi does not.
        eta, phi = geometry.xyz_to_etaphi(t["x64"][cell], t["y64"][cell], t["z64"][cell], w[ev])
        pts["eta"], pts["phi"] = eta.astype(np.float32), phi.astype(np.float32)
    else:
        pts["eta"], pts["phi"] = t["eta"][cell], t["phi"][cell]
    return pts


def _noise_cut(geometry: Geometry, cell: np.ndarray, energy: np.ndarray, threshold_sigma) -> np.ndarray:
    """Mask of cells whose energy exceeds ``threshold_sigma`` times their noise sigma (all True when None)."""
    if threshold_sigma is None:
        return np.ones(np.shape(energy), dtype=bool)
    ts = float(threshold_sigma)
    if not (np.isfinite(ts) and ts >= 0):
        raise ValueError(f"threshold_sigma must be a finite number >= 0 or None, found {threshold_sigma!r}")
    return energy > ts * geometry.cells["noise_sigma_gev"][cell]


def images_to_clouds(showers: ShowerImages, threshold_gev: float | None = 0.0, cell_truth: str = "none",
                     dtype=np.float32, threshold_sigma: float | None = None) -> ak.Array:
    """Dense shower images to a cloud array: one CELL point per cell with ``energy > threshold_gev`` (GeV).

    ``threshold_sigma``: additionally require ``energy > threshold_sigma * noise_sigma`` of each cell (noisy
    geometries; e.g. 4 is the topo-cluster seed significance). Points are ordered by flat cell index inside each
    event. Positions, layer and noise come from ``geometry.cells``; for local-frame geometries eta / phi are recomputed per event at the truth ``window_eta``
    (:meth:`Geometry.xyz_to_etaphi`). All truth keys of the showers become per-event fields. ``cell_truth``:
    ``"none"`` leaves the per-point truth lists empty (images carry no per-cell truth); ``"single"`` attributes each
    cell's full energy to truth particle 0 (right for noise-free single-particle showers only). ``dtype`` is the
    storage dtype of ``energy`` (float32 by default; float64 keeps float64 images bit-exact).
    """
    if not isinstance(showers, ShowerImages):
        raise TypeError(f"images_to_clouds: expected ShowerImages, found {type(showers).__name__}")
    if showers.n_events == 0:
        raise ValueError(f"images_to_clouds: no events in the ShowerImages (geometry {showers.geometry.name!r})")
    if cell_truth not in ("none", "single"):
        raise ValueError(f"images_to_clouds: cell_truth must be 'none' or 'single', found {cell_truth!r}")
    thr = _check_threshold(threshold_gev)
    g = showers.geometry
    flat = showers.flat()
    if not np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(np.float32)
    for s, a, b in zip(g.sections, g.section_offsets[:-1], g.section_offsets[1:]):
        _check_finite(flat[:, a:b], f"images_to_clouds: section {s.name!r} of geometry {g.name!r}")
    mask = (flat != 0) if thr is None else (flat > thr)
    if threshold_sigma is not None:  # noise-relative cut, cell by cell (E > t * sigma_noise of the cell)
        mask &= _noise_cut(g, np.arange(g.n_cells), flat, threshold_sigma)
    ev, cell = np.nonzero(mask)
    counts = np.count_nonzero(mask, axis=1)
    energy = flat[mask]
    pts = _cell_points(g, ev, cell, energy, showers.truth.get("window_eta"), dtype)
    kw = {}
    if cell_truth == "single":
        kw = dict(truth_counts=np.ones(cell.size, np.int64), truth_index=np.zeros(cell.size, np.int32),
                  truth_energy=pts["energy"])
    clouds = build_clouds(counts, pts, dict(showers.truth), **kw)
    return _tag(clouds, g, thr)


def _tag(clouds: ak.Array, geometry: Geometry, threshold) -> ak.Array:
    """Attach the geometry name and threshold as array parameters (informative; the store keeps them in meta)."""
    clouds = ak.with_parameter(clouds, "pcloud_geometry", geometry.name)
    kwargs = geometry.info.get("builder_kwargs")
    if kwargs:
        clouds = ak.with_parameter(clouds, "pcloud_geometry_kwargs", dict(kwargs))
    return ak.with_parameter(clouds, "pcloud_threshold_gev", threshold)


def _sparse_deposits(event_index, cell, energy_gev) -> tuple:
    """Validated deposit columns of :func:`sparse_to_clouds`: (event int64, cell int64, energy float64)."""
    ev = np.asarray(event_index)
    cell = np.asarray(cell)
    e = np.asarray(energy_gev, dtype=np.float64)
    if not (ev.ndim == cell.ndim == e.ndim == 1 and ev.size == cell.size == e.size):
        raise ValueError(f"sparse_to_clouds: event_index, cell and energy_gev must be 1-d of equal length, found "
                         f"shapes {ev.shape}, {cell.shape}, {e.shape}")
    if not (np.issubdtype(ev.dtype, np.integer) or ev.size == 0) or not (np.issubdtype(cell.dtype, np.integer)
                                                                       or cell.size == 0):
        raise ValueError(f"sparse_to_clouds: event_index and cell must be integers, found {ev.dtype}, {cell.dtype}")
    return ev.astype(np.int64), cell.astype(np.int64), e


def _sparse_event_count(truth: dict, ev: np.ndarray, n_events) -> int:
    """Number of events: ``n_events``, else the truth length, else max(event_index) + 1; checked against both."""
    lengths = {k: len(v) for k, v in truth.items()}
    if n_events is None:
        if lengths:
            n_events = next(iter(lengths.values()))
        elif ev.size:
            n_events = int(ev.max()) + 1
        else:
            raise ValueError("sparse_to_clouds: no deposits, no truth and no n_events: cannot tell how many events")
    n_events = int(n_events)
    if n_events <= 0:
        raise ValueError(f"sparse_to_clouds: n_events must be positive, found {n_events} (empty events list)")
    bad = {k: n for k, n in lengths.items() if n != n_events}
    if bad:
        raise ValueError(f"sparse_to_clouds: truth arrays must have n_events={n_events} entries, found {bad}")
    if ev.size and (ev.min() < 0 or ev.max() >= n_events):
        raise ValueError(f"sparse_to_clouds: event_index must be in [0, {n_events}), found range "
                         f"[{ev.min()}, {ev.max()}]")
    return n_events


def _sparse_truth_lists(e, inv, keep, n_points: int, particle_index, truth_energy_gev) -> dict:
    """Per-point truth lists (``build_clouds`` keywords): per-particle sums of the deposits of each kept cell
    (``inv``: cell of each deposit, ``keep``: kept cells); deposits with particle index -1 count for no particle."""
    pidx = np.asarray(particle_index).astype(np.int64)
    te = e if truth_energy_gev is None else np.asarray(truth_energy_gev, dtype=np.float64)
    if pidx.shape != e.shape or te.shape != e.shape:
        raise ValueError(f"sparse_to_clouds: particle_index / truth_energy_gev must have one entry per deposit "
                         f"({e.size}), found {pidx.shape}, {te.shape}")
    _check_finite(te, "sparse_to_clouds: truth_energy_gev")
    # point index of every deposit (-1 when its cell is below threshold), then sum per (point, particle).
    point_of_key = np.full(keep.size, -1, dtype=np.int64)
    point_of_key[keep] = np.arange(int(keep.sum()))
    dep_point = point_of_key[inv]
    sel = (dep_point >= 0) & (pidx >= 0)
    n_part = int(pidx.max()) + 1 if pidx.size else 1
    pk = dep_point[sel] * n_part + pidx[sel]
    upk, pinv = np.unique(pk, return_inverse=True)
    tsum = np.bincount(pinv, weights=te[sel], minlength=upk.size)
    t_point = upk // n_part
    return dict(truth_counts=np.bincount(t_point, minlength=n_points),
                truth_index=(upk % n_part).astype(np.int32), truth_energy=tsum.astype(np.float32))


def sparse_to_clouds(geometry: Geometry, truth: dict, event_index, cell, energy_gev, threshold_gev: float | None = 0.0,
                     n_events: int | None = None, particle_index=None, truth_energy_gev=None, particles=None,
                     dtype=np.float32, threshold_sigma: float | None = None) -> ak.Array:
    """Sparse deposits ``(event_index, cell, energy_gev)`` to a cloud array.

    Deposits of the same (event, cell) are summed first (float64), then the threshold is applied to the cell sum.
    Events without points stay as empty lists. ``truth``: per-event arrays (length ``n_events``; ``event_number``
    defaults to ``arange``). ``n_events`` defaults to the truth length, else ``max(event_index) + 1``.
    Per-cell truth: give ``particle_index`` per deposit (the truth particle that made it; -1 for noise deposits,
    which add to the cell energy but to no particle) and optionally ``truth_energy_gev`` per deposit (default: the
    deposit energy); the truth lists then hold the per-particle sums of each cell. ``particles``: optional
    per-event particle list (see :func:`pcloud.core.schema.make_particles`). ``threshold_sigma``: as in
    :func:`images_to_clouds`, applied to the summed cell energies.
    """
    thr = _check_threshold(threshold_gev)
    ev, cell, e = _sparse_deposits(event_index, cell, energy_gev)
    truth = {k: np.asarray(v) for k, v in (truth or {}).items()}
    n_events = _sparse_event_count(truth, ev, n_events)
    if cell.size and (cell.min() < 0 or cell.max() >= geometry.n_cells):
        raise ValueError(f"sparse_to_clouds: cell ids must be in [0, {geometry.n_cells}) for geometry "
                         f"{geometry.name!r}, found range [{cell.min()}, {cell.max()}] (wrong geometry?)")
    _check_finite(e, "sparse_to_clouds: energy_gev")
    # sum the deposits of each (event, cell), then cut on the sums
    ukey, inv = np.unique(ev * geometry.n_cells + cell, return_inverse=True)
    cell_e = np.bincount(inv, weights=e, minlength=ukey.size)
    keep = (cell_e != 0) if thr is None else (cell_e > thr)
    if threshold_sigma is not None:
        keep &= _noise_cut(geometry, ukey % geometry.n_cells, cell_e, threshold_sigma)
    kept_key, kept_e = ukey[keep], cell_e[keep]
    p_ev, p_cell = kept_key // geometry.n_cells, kept_key % geometry.n_cells
    counts = np.bincount(p_ev, minlength=n_events)
    pts = _cell_points(geometry, p_ev, p_cell, kept_e, truth.get("window_eta"), dtype)
    kw = {} if particle_index is None else _sparse_truth_lists(e, inv, keep, kept_key.size, particle_index,
                                                                truth_energy_gev)
    clouds = build_clouds(counts, pts, truth, particles=particles, **kw)
    return _tag(clouds, geometry, thr)


#: the per-point fields :func:`clouds_to_images` reads
IMAGE_POINT_FIELDS = ("type", "cell_id", "energy")


def clouds_to_images(clouds: ak.Array, geometry: Geometry, dtype=np.float32) -> ShowerImages:
    """Inverse of :func:`images_to_clouds`: CELL points back to dense images (GeV); tracks and padding ignored.

    Cells that were below threshold come back as 0. Per-event scalar fields become the truth dict. Raises when the
    clouds were made on another geometry or hold cell ids outside it.
    """
    clouds = validate_clouds(clouds, "clouds_to_images", IMAGE_POINT_FIELDS)
    n = len(clouds)
    if n == 0:
        raise ValueError("clouds_to_images: no events")
    gname = ak.parameters(clouds).get("pcloud_geometry")
    if gname is not None and gname != geometry.name:
        raise ValueError(f"clouds_to_images: clouds were made on geometry {gname!r}, asked for {geometry.name!r}")
    counts = ak.to_numpy(ak.num(clouds.points, axis=1))
    ev = np.repeat(np.arange(n, dtype=np.int64), counts)
    typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
    cell = ak.to_numpy(ak.flatten(clouds.points.cell_id, axis=1)).astype(np.int64)
    energy = ak.to_numpy(ak.flatten(clouds.points.energy, axis=1))
    is_cell = typ == PointType.CELL
    ev, cell, energy = ev[is_cell], cell[is_cell], energy[is_cell]
    if cell.size and (cell.min() < 0 or cell.max() >= geometry.n_cells):
        raise SchemaError(f"clouds_to_images: cell_id of CELL points must be in [0, {geometry.n_cells}) for geometry "
                          f"{geometry.name!r}, found range [{cell.min()}, {cell.max()}] (wrong geometry?)")
    flat = np.bincount(ev * geometry.n_cells + cell, weights=energy.astype(np.float64),
                       minlength=n * geometry.n_cells).reshape(n, geometry.n_cells).astype(dtype)
    truth = {f: ak.to_numpy(clouds[f]) for f in event_fields(clouds)}
    return ShowerImages(geometry, geometry.unflatten_images(flat), truth,
                        {"threshold_gev": ak.parameters(clouds).get("pcloud_threshold_gev")})
