"""Point clouds for particle-flow segmentation: one cloud per focal track (JetPointNet, seed 002) or per event.

Per-track clouds (:func:`track_clouds`)
=======================================
Seed 002 ("Data processing pipeline"): events are "split into batched training samples using a Delta R cut on each
track". For every focal track (rows ``tracks`` of ``events.tracks``; default: every track that reaches at least one
calorimeter layer) the cloud holds

* the **reference point** of the track: its extrapolation to the EM middle layer EMB2 (``layer_names`` entry
  ``"EMB2"``) when it reaches that layer, else its first reached layer (per-event field ``focal_ref_layer``);
* CELL points: every cell of the focal track's event whose centre lies within ``Delta R < dr_max`` of the reference
  point (``Delta R = sqrt(d_eta^2 + d_phi^2)``, d_phi wrapped to [-pi, pi)). ``dr_max`` is an argument (chosen at
  load time, never baked into files); with ``cell_mask`` only the cells it marks (e.g. the topo-clustered cells
  with E > 0, the cell population of the MLTree files and of the benchmark's metrics);
* FOCAL_TRACK points: one per calorimeter layer the focal track reaches (its extrapolated eta, phi, x, y, z);
* OTHER_TRACK points: the layer points of the other tracks of the event that lie within ``dr_max`` of the
  reference point.

Point order inside a cloud: focal-track points (by layer), other-track points (by track, then layer), cells (by cell
row). Geometry: cells sit at their cell centre (``geometry.cells``), track points at their extrapolated position.

Cell energies are ``cell_energy_gev[cell_row]`` (float64; default ``events.cells["energy_gev"]``) so that iterative
inference (:mod:`pcloud.pflow.inference`) can re-cloud after subtraction. **Drop policy:** a cell whose current
energy is <= 0 while its measured energy was > 0 (i.e. a cell emptied by subtraction) is dropped; cells whose
*measured* energy is <= 0 (negative noise fluctuations) are kept, exactly as in an untouched event, so a subtracted
event still "resembles an event" (seed 002 backup, "Iterative inference").

Per-point fields: the schema fields of :mod:`pcloud.core.schema` plus (model features of the same names in
:mod:`pcloud.data.point_features`)

=================  =======  ==================================================================================
``cell_row``       int64    row of the cell in ``events.cells``; -1 for track points
``track_row``      int64    row of the point's track in ``events.tracks``; -1 for cells
``deta``           float32  eta(point) - eta(focal track at the point's layer)                              (--)
``dphi``           float32  phi(point) - phi(focal track at the point's layer), wrapped to [-pi, pi)      (rad)
``delta_r_ref``    float32  Delta R of the point to the reference point (the quantity cut at ``dr_max``)
``dr_other_track`` float64  Delta R to the nearest *other* track of the cloud at the point's layer (1.0: none)
``other_track_pt`` float64  measured pT of that track (GeV; 0 for none)
``nbr_energy_*``   float32  summed current energy of the cell's neighbours in its layer (``_same``), in the
                            layer in front (``_inner``) and behind (``_outer``); ``nbr_max_same`` the largest
                            same-layer neighbour (GeV; :func:`neighbour_energy`; 0 for track points)
``cell_nbr``       var int  with ``cell_graph=True`` only: the indices *within the cloud* of the point's
                            neighbours in the geometry's cell graph that the cloud holds (:func:`cloud_cell_graph`;
                            empty for track points)
=================  =======  ==================================================================================

``delta_r`` (schema) = ``sqrt(deta^2 + dphi^2)``: the distance to the focal track *at the point's layer* (the
track bends in phi between layers in the 2 T field); when the focal track does not reach the point's layer the
reference point is used instead. Focal-track points therefore have ``delta_r = 0``. ``track_pt`` is the measured
pT (GeV), ``track_chi2_ndf = chi2 / ndf``, ``track_index`` the track's index within its event.

Truth: per cell point, the per-particle deposits of ``events.hits`` (``truth_index`` = particle index within the
event, ``truth_energy`` = its true deposit in the cell, GeV), so hard / binary / soft targets derive through the
schema label policy (:func:`pcloud.core.schema.hard_labels`, ``target_fractions`` with ``focal_truth_index``; cells
with no positive truth deposit, i.e. noise only, are "not focal": fraction 0, hard label -1). Track points have
empty truth lists.

Per cloud: ``event_number``, ``event`` (event index), ``focal_track_row`` (row in ``events.tracks``),
``focal_track_index`` (index within the event), ``focal_truth_index`` (particle index within the event of the focal
track's particle), ``focal_track_pt`` (measured, GeV), ``focal_track_p`` (GeV), ``focal_track_eta``,
``focal_track_phi`` (reference point), ``focal_ref_layer``, ``n_tracks_event`` and the schema ``particles`` list of
the event (``track_index`` = index within the event of the particle's track, -1 none).

Whole-event clouds (:func:`event_clouds`)
=========================================
All cells of each event and the layer points of all its tracks (type OTHER_TRACK: there is no focal track).
``delta_r = 0`` (schema: not a per-track cloud). Instead, relative to the **nearest track at the point's layer**
(among tracks that reach that layer): ``deta``, ``dphi``, ``dr_nearest_track`` and ``nearest_track_row`` (events with
no track reaching that layer: ``dr_nearest_track = 10``, ``deta = dphi = 0``, row -1; track points: 0 and their own
row). ``charged_fraction``: fraction of the cell's clipped truth energy deposited by particles *that have a track*
(what particle flow can subtract; charged particles below the track pT cut count as neutral); 0 when the cell has
no positive truth deposit.

Everything is vectorised over tracks, cells and events (track-cell pairs are built in chunks of at most
``max_pairs`` rows; the loop runs over chunks only).
"""
from __future__ import annotations

import awkward as ak
import numpy as np

from ..geometry.base import wrap_phi
from ..core.schema import PointType, build_clouds

__all__ = ["track_clouds", "event_clouds", "reference_layer", "delta_phi", "cloud_cell_rows", "cloud_track_rows",
           "cell_counts", "NO_TRACK_DR", "neighbour_energy", "NEIGHBOUR_FIELDS", "cloud_cell_graph"]

#: ``dr_nearest_track`` of points in events where no track reaches the point's layer.
NO_TRACK_DR = 10.0
_MAX_PAIRS = 4_000_000


def delta_phi(phi1, phi2) -> np.ndarray:
    """phi1 - phi2 wrapped to [-pi, pi) (rad)."""
    return wrap_phi(np.asarray(phi1, np.float64) - np.asarray(phi2, np.float64))


# ---------------------------------------------------------------------------------------------------- helpers
def _check_events(events, geometry, where: str):
    for attr in ("tracks", "cells", "hits", "particles", "cell_offsets", "track_offsets", "particle_offsets"):
        if not hasattr(events, attr):
            raise TypeError(f"{where}: expected pcloud.core.events.TrackCellEvents, found {type(events).__name__} "
                            f"without {attr!r}")
    n_layers = sum(s.n_layers for s in geometry.sections)
    if events.tracks["layer_eta"].ndim != 2 or events.tracks["layer_eta"].shape[1] != n_layers:
        raise ValueError(f"{where}: events.tracks['layer_eta'] must be (n_tracks, {n_layers}) for geometry "
                         f"{geometry.name!r}, found {events.tracks['layer_eta'].shape}")
    ids = events.cells["id"]
    if ids.size and (ids.min() < 0 or ids.max() >= geometry.n_cells):
        raise ValueError(f"{where}: events.cells['id'] must lie in [0, {geometry.n_cells}) of geometry "
                         f"{geometry.name!r}, found [{ids.min()}, {ids.max()}]")
    if getattr(events, "geometry_name", geometry.name) != geometry.name:
        raise ValueError(f"{where}: events were simulated in geometry {events.geometry_name!r}, "
                         f"given geometry {geometry.name!r}")


def _cell_energy(events, cell_energy_gev, where):
    e0 = np.asarray(events.cells["energy_gev"], np.float64)
    if cell_energy_gev is None:
        return e0, e0
    e = np.asarray(cell_energy_gev, np.float64)
    if e.shape != e0.shape:
        raise ValueError(f"{where}: cell_energy_gev must have one value per row of events.cells {e0.shape}, "
                         f"found shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{where}: cell_energy_gev contains {int((~np.isfinite(e)).sum())} NaN/inf values")
    return e, e0


def _event_numbers(events) -> np.ndarray:
    en = getattr(events, "event_number", None)
    if en is None:
        en = events.meta.get("event_number") if isinstance(getattr(events, "meta", None), dict) else None
    if en is None:
        return np.arange(events.n_events, dtype=np.int64)
    en = np.asarray(en, np.int64)
    if en.shape != (events.n_events,):
        raise ValueError(f"events.event_number: expected {events.n_events} values, found shape {en.shape}")
    return en


def _expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR expansion: (owner index, position) of ``sum(counts)`` rows ``starts[i] + 0..counts[i]-1``."""
    counts = np.asarray(counts, np.int64)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    pos = np.asarray(starts, np.int64)[owner] + (np.arange(owner.size, dtype=np.int64) - first[owner])
    return owner, pos


def _chunks(counts: np.ndarray, max_pairs: int):
    """Consecutive ranges [a, b) of owners with at most ``max_pairs`` expanded rows each (at least one owner)."""
    c = np.cumsum(np.asarray(counts, np.int64))
    a = 0
    n = c.size
    while a < n:
        base = c[a - 1] if a else 0
        b = int(np.searchsorted(c, base + max_pairs, side="right"))
        b = max(b, a + 1)
        yield a, min(b, n)
        a = b


def reference_layer(events, track_rows, layer: str = "EMB2") -> np.ndarray:
    """Layer index of each track's reference point: ``layer`` (EMB2) when reached, else its first reached layer;
    -1 when the track reaches no layer."""
    reached = np.asarray(events.tracks["layer_reached"])[np.asarray(track_rows, np.int64)]
    first = np.where(reached.any(1), np.argmax(reached, axis=1), -1)
    if layer in list(events.layer_names):
        li = list(events.layer_names).index(layer)
        return np.where(reached[:, li], li, first).astype(np.int64)
    return first.astype(np.int64)


def _particles_of(events, ev_of_cloud: np.ndarray) -> dict:
    """Schema ``particles`` columns (flat, with counts) of the events of each cloud."""
    p, off = events.particles, events.particle_offsets
    counts = off[ev_of_cloud + 1] - off[ev_of_cloud]
    _, rows = _expand(off[ev_of_cloud], counts)
    p2t = np.full(p["event"].size, -1, np.int64)
    trows = np.arange(events.tracks["event"].size)
    p2t[events.tracks["particle"]] = trows - events.track_offsets[events.tracks["event"]]
    return {"counts": counts, "pdg": p["pdg"][rows], "energy_gev": p["energy_gev"][rows], "pt_gev": p["pt_gev"][rows],
            "eta": p["eta"][rows], "phi": p["phi"][rows], "charge": p["charge"][rows], "track_index": p2t[rows]}


def _truth_lists(events, cell_rows: np.ndarray):
    """Per-point truth lists (counts, within-event particle index, energy) for point cell rows (-1: none)."""
    hits = events.hits
    order = np.lexsort((hits["particle"], hits["cell"]))
    h_cell, h_part, h_e = hits["cell"][order], hits["particle"][order], hits["energy_gev"][order]
    n_cells = events.cells["event"].size
    hoff = np.searchsorted(h_cell, np.arange(n_cells + 1))
    is_cell = cell_rows >= 0
    r = np.where(is_cell, cell_rows, 0)
    counts = np.where(is_cell, hoff[r + 1] - hoff[r], 0)
    _, hrow = _expand(hoff[r], counts)
    p_ev = events.particles["event"][h_part[hrow]]
    t_idx = h_part[hrow] - events.particle_offsets[p_ev]
    return counts, t_idx.astype(np.int32), h_e[hrow].astype(np.float64)


def cloud_cell_rows(clouds) -> np.ndarray:
    """``cell_row`` of every CELL point of ``clouds``, flattened in cloud order (the order of ``predict_fraction``)."""
    typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
    return ak.to_numpy(ak.flatten(clouds.points["cell_row"], axis=1))[typ == PointType.CELL].astype(np.int64)


def cloud_track_rows(clouds) -> np.ndarray:
    """``focal_track_row`` repeated for every CELL point of ``clouds`` (flattened in cloud order)."""
    return np.repeat(ak.to_numpy(clouds.focal_track_row).astype(np.int64), cell_counts(clouds))


def cell_counts(clouds) -> np.ndarray:
    """Number of CELL points per cloud (int64)."""
    typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
    cnt = ak.to_numpy(ak.num(clouds.points, axis=1)).astype(np.int64)
    cloud = np.repeat(np.arange(cnt.size), cnt)
    return np.bincount(cloud[typ == PointType.CELL], minlength=cnt.size).astype(np.int64)


# ---------------------------------------------------------------------------------------------------- per track
def _focal_rows(events, tracks, reached: np.ndarray, where: str) -> np.ndarray:
    """Rows of ``events.tracks`` that get a cloud (default: every track reaching a calorimeter layer), validated."""
    n_trk = events.tracks["event"].size
    if tracks is None:
        return np.nonzero(reached.any(1))[0].astype(np.int64)
    rows = np.asarray(tracks, np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n_trk):
        raise ValueError(f"{where}: tracks must be rows of events.tracks in [0, {n_trk}), found "
                         f"[{rows.min()}, {rows.max()}]")
    bad = rows[~reached[rows].any(1)]
    if bad.size:
        raise ValueError(f"{where}: tracks {bad[:5].tolist()} reach no calorimeter layer (no reference point)")
    return rows


def _cells_in_cone(events, geometry, ev, ref_eta, ref_phi, dr_max: float, emptied, max_pairs: int,
                   cell_mask=None) -> tuple:
    """(cloud, cell row) of every cell of the cloud's event within ``dr_max`` of its reference point, built from
    all (cloud, cell of its event) pairs in chunks; cells marked in ``emptied`` (if given) and cells outside
    ``cell_mask`` (if given) are dropped."""
    gc, C = geometry.cells, events.cells
    c_off = events.cell_offsets
    n_ev_cells = c_off[ev + 1] - c_off[ev]
    sel_cl, sel_row = [], []
    for a, b in _chunks(n_ev_cells, max_pairs):
        owner, crow = _expand(c_off[ev[a:b]], n_ev_cells[a:b])
        owner += a
        cid = C["id"][crow]
        d_eta = gc["eta"][cid] - ref_eta[owner]
        keep = np.abs(d_eta) < dr_max
        owner, crow, cid, d_eta = owner[keep], crow[keep], cid[keep], d_eta[keep]
        dr = np.hypot(d_eta, delta_phi(gc["phi"][cid], ref_phi[owner]))
        keep = dr < dr_max
        if emptied is not None:
            keep &= ~emptied[crow]  # emptied by subtraction (drop policy)
        if cell_mask is not None:
            keep &= cell_mask[crow]
        sel_cl.append(owner[keep])
        sel_row.append(crow[keep])
    cell_cl = np.concatenate(sel_cl) if sel_cl else np.zeros(0, np.int64)
    cell_row = np.concatenate(sel_row) if sel_row else np.zeros(0, np.int64)
    return cell_cl, cell_row


def _other_track_points(events, rows, ev, reached, ref_eta, ref_phi, dr_max: float) -> tuple:
    """(cloud, track row, layer) of the layer points of the other tracks of each cloud's event within ``dr_max``
    of the reference point."""
    lay_eta = np.asarray(events.tracks["layer_eta"], np.float64)
    lay_phi = np.asarray(events.tracks["layer_phi"], np.float64)
    t_off = events.track_offsets
    o_cl, o_row = _expand(t_off[ev], t_off[ev + 1] - t_off[ev])
    other = o_row != rows[o_cl]
    o_cl, o_row = o_cl[other], o_row[other]
    L = reached.shape[1]
    o_cl = np.repeat(o_cl, L)
    o_row = np.repeat(o_row, L)
    o_lay = np.tile(np.arange(L), other.sum())
    ok = reached[o_row, o_lay]
    o_cl, o_row, o_lay = o_cl[ok], o_row[ok], o_lay[ok]
    o_dr_ref = np.hypot(lay_eta[o_row, o_lay] - ref_eta[o_cl], delta_phi(lay_phi[o_row, o_lay], ref_phi[o_cl]))
    ok = o_dr_ref < dr_max
    return o_cl[ok], o_row[ok], o_lay[ok]


def _relative_to_focal(events, rows, reached, ref_eta, ref_phi, cl, layer, eta, phi) -> tuple:
    """(deta, dphi) of points of clouds ``cl`` at global layers ``layer`` to the focal track at that layer (the
    reference point where the focal track does not reach the layer)."""
    fr = rows[cl]
    ok = (layer >= 0) & (layer < reached.shape[1])
    lc = np.where(ok, layer, 0)
    use = ok & reached[fr, lc]
    t_eta = np.where(use, np.asarray(events.tracks["layer_eta"], np.float64)[fr, lc], ref_eta[cl])
    t_phi = np.where(use, np.asarray(events.tracks["layer_phi"], np.float64)[fr, lc], ref_phi[cl])
    return eta - t_eta, delta_phi(phi, t_phi)


#: ``dr_other_track`` of points with no other track at their layer in the cloud
NO_OTHER_TRACK_DR = 1.0


def _nearest_other_track(cl, layer, grp, eta, phi, pt, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point: DeltaR to the nearest OTHER_TRACK point of its cloud at its layer (capped at
    :data:`NO_OTHER_TRACK_DR`, which also marks "none") and that track's pT (0 for none); over (point, other-track
    point of the same cloud and layer) pairs, without a loop."""
    n = cl.size
    dr = np.full(n, NO_OTHER_TRACK_DR)
    ptn = np.zeros(n)
    other = np.nonzero(grp == 1)[0]
    if other.size == 0 or n == 0:
        return dr, ptn
    key_o = cl[other] * L + layer[other]
    o = np.argsort(key_o, kind="stable")
    other, key_o = other[o], key_o[o]
    key = cl * L + layer
    start = np.searchsorted(key_o, key, side="left")
    cnt = np.searchsorted(key_o, key, side="right") - start
    owner, pos = _expand(start, cnt)
    if owner.size == 0:
        return dr, ptn
    j = other[pos]
    d = np.hypot(eta[owner] - eta[j], delta_phi(phi[owner], phi[j]))
    d = np.where(owner == j, np.inf, d)  # an other-track point is not its own neighbour
    best = np.lexsort((d, owner))
    first = np.r_[True, owner[best][1:] != owner[best][:-1]]
    b = best[first]
    keep = np.isfinite(d[b]) & (d[b] < NO_OTHER_TRACK_DR)
    dr[owner[b][keep]] = d[b][keep]
    ptn[owner[b][keep]] = pt[j[b][keep]]
    return dr, ptn


def _track_cloud_points(events, geometry, e_cur, rows, reached, ref_eta, ref_phi, trk_pts, cell_cl, cell_row, nbr):
    """Point columns of all clouds in cloud order (focal-track points by layer, other-track points by track then
    layer, cells by row); ``trk_pts`` = (cloud, track row, layer, group 0 focal / 1 other); ``nbr``: the
    :func:`neighbour_energy` columns per row of ``events.cells``. Returns (cloud of each point, point columns, cell
    row of each point)."""
    T, C, gc = events.tracks, events.cells, geometry.cells
    t_cl, t_row, t_lay, t_grp = trk_pts
    cid = C["id"][cell_row]
    L = reached.shape[1]
    cl = np.concatenate([t_cl, cell_cl])
    grp = np.concatenate([t_grp, np.full(cell_cl.size, 2, np.int64)])
    order = np.lexsort((np.concatenate([t_row * L + t_lay, cell_row]), grp, cl))
    nt = t_cl.size

    def cat(track_vals, cell_vals):
        return np.concatenate([np.asarray(track_vals), np.asarray(cell_vals)])[order]

    eta = cat(np.asarray(T["layer_eta"], np.float64)[t_row, t_lay], gc["eta"][cid].astype(np.float64))
    phi = cat(np.asarray(T["layer_phi"], np.float64)[t_row, t_lay], gc["phi"][cid].astype(np.float64))
    layer = cat(t_lay, gc["layer"][cid].astype(np.int64))
    cl = cl[order]
    grp = grp[order]
    deta, dphi = _relative_to_focal(events, rows, reached, ref_eta, ref_phi, cl, layer, eta, phi)
    is_trk = grp < 2
    trow_pt = np.where(is_trk, cat(t_row, np.zeros(cell_cl.size, np.int64)), -1)
    safe = np.where(is_trk, trow_pt, 0)
    ndf = np.maximum(np.asarray(T["ndf"], np.float64), 1.0)
    prow = cat(np.full(nt, -1, np.int64), cell_row)
    points = {
        "type": np.where(grp == 0, PointType.FOCAL_TRACK, np.where(grp == 1, PointType.OTHER_TRACK, PointType.CELL)),
        "x": cat(T["layer_x_mm"][t_row, t_lay], gc["x"][cid]),
        "y": cat(T["layer_y_mm"][t_row, t_lay], gc["y"][cid]),
        "z": cat(T["layer_z_mm"][t_row, t_lay], gc["z"][cid]),
        "eta": eta, "phi": phi, "layer": layer,
        "cell_id": cat(np.full(nt, -1, np.int64), cid),
        "energy": np.where(is_trk, 0.0, e_cur[np.maximum(prow, 0)]).astype(np.float64),
        "noise_sigma": np.where(is_trk, 0.0, C["noise_sigma_gev"][np.maximum(prow, 0)]),
        "delta_r": np.hypot(deta, dphi),
        "track_pt": np.where(is_trk, T["pt_gev"][safe], 0.0),
        "track_chi2_ndf": np.where(is_trk, T["chi2"][safe] / ndf[safe], 0.0),
        "track_index": np.where(is_trk, safe - events.track_offsets[T["event"][safe]], -1),
        "cell_row": prow, "track_row": trow_pt,
        "deta": deta, "dphi": dphi, "delta_r_ref": np.hypot(eta - ref_eta[cl], delta_phi(phi, ref_phi[cl])),
    }
    for name in NEIGHBOUR_FIELDS:
        points[name] = cat(np.zeros(nt, np.float32), nbr[name][cell_row])
    points["dr_other_track"], points["other_track_pt"] = _nearest_other_track(cl, layer, grp, eta, phi,
                                                                              points["track_pt"], L)
    return cl, points, prow


def _track_cloud_fields(events, rows, ev, ref_l, ref_eta, ref_phi) -> dict:
    """Per-cloud fields of the per-track clouds (module docstring)."""
    T, t_off = events.tracks, events.track_offsets
    return {
        "event_number": _event_numbers(events)[ev], "event": ev, "focal_track_row": rows,
        "focal_track_index": (rows - t_off[ev]).astype(np.int32),
        "focal_truth_index": np.where(T["particle"][rows] >= 0, T["particle"][rows] - events.particle_offsets[ev],
                                      -1).astype(np.int32),
        "focal_track_pt": np.asarray(T["pt_gev"], np.float64)[rows],
        "focal_track_p": np.asarray(T["p_gev"], np.float64)[rows],
        "focal_track_eta": ref_eta, "focal_track_phi": ref_phi, "focal_ref_layer": ref_l.astype(np.int32),
        "n_tracks_event": (t_off[ev + 1] - t_off[ev]).astype(np.int32),
    }


def track_clouds(events, geometry, dr_max: float = 0.2, cell_energy_gev=None, tracks=None,
                 max_pairs: int = _MAX_PAIRS, cell_mask=None, cell_graph: bool = False) -> ak.Array:
    """One cloud per focal track (module docstring). ``tracks``: rows of ``events.tracks`` (default: all tracks
    reaching the calorimeter); ``cell_energy_gev``: current energy per row of ``events.cells`` (default: measured);
    ``cell_mask``: bool per row of ``events.cells``, only those cells may enter the clouds (default: all; e.g. the
    topo-clustered cells with positive energy, :func:`pcloud.pflow.learned.cloud_cell_mask`); ``cell_graph``: add
    the per-point field ``cell_nbr`` (:func:`cloud_cell_graph`), which the cell-graph model reads."""
    where = "track_clouds"
    _check_events(events, geometry, where)
    if not (np.isfinite(dr_max) and dr_max > 0):
        raise ValueError(f"{where}: dr_max must be a positive number, found {dr_max!r}")
    e_cur, e0 = _cell_energy(events, cell_energy_gev, where)
    T = events.tracks
    reached = np.asarray(T["layer_reached"], bool)
    rows = _focal_rows(events, tracks, reached, where)
    ev = T["event"][rows].astype(np.int64)
    ref_l = reference_layer(events, rows)
    ref_eta = T["layer_eta"][rows, ref_l]
    ref_phi = T["layer_phi"][rows, ref_l]
    emptied = None if cell_energy_gev is None else (e_cur <= 0) & (e0 > 0)
    if cell_mask is not None:
        cell_mask = np.asarray(cell_mask, bool)
        if cell_mask.shape != e0.shape:
            raise ValueError(f"{where}: cell_mask must have one value per row of events.cells {e0.shape}, found "
                             f"shape {cell_mask.shape}")
    cell_cl, cell_row = _cells_in_cone(events, geometry, ev, ref_eta, ref_phi, dr_max, emptied, max_pairs,
                                       cell_mask)
    f_cl, f_lay = np.nonzero(reached[rows])  # focal-track points: one per reached layer
    o_cl, o_row, o_lay = _other_track_points(events, rows, ev, reached, ref_eta, ref_phi, dr_max)
    trk_pts = (np.concatenate([f_cl, o_cl]), np.concatenate([rows[f_cl], o_row]), np.concatenate([f_lay, o_lay]),
               np.concatenate([np.zeros(f_cl.size, np.int64), np.ones(o_cl.size, np.int64)]))
    eligible = np.ones(e0.shape, bool) if cell_mask is None else cell_mask.copy()
    if emptied is not None:
        eligible &= ~emptied
    nbr = neighbour_energy(events, geometry, e_cur, eligible, rows=cell_row, max_pairs=max_pairs)
    cl, points, prow = _track_cloud_points(events, geometry, e_cur, rows, reached, ref_eta, ref_phi, trk_pts,
                                           cell_cl, cell_row, nbr)
    counts = np.bincount(cl, minlength=rows.size)
    tc, ti, te = _truth_lists(events, prow)
    clouds = build_clouds(counts, points, _track_cloud_fields(events, rows, ev, ref_l, ref_eta, ref_phi),
                          truth_counts=tc, truth_index=ti, truth_energy=te, particles=_particles_of(events, ev))
    if cell_graph:
        n_nbr, local = cloud_cell_graph(geometry, cl, points["cell_id"], max_pairs)
        nested = ak.unflatten(ak.unflatten(local, n_nbr), counts)
        clouds = ak.with_field(clouds, nested, ["points", "cell_nbr"])
    return clouds


def cloud_cell_graph(geometry, cloud, cell_id, max_pairs: int = _MAX_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """The geometry's cell graph (:func:`pcloud.pflow.topocluster.cell_neighbours`, the "all3D" neighbours of ATLAS
    topo-clustering) restricted to each cloud: for the points of all clouds (``cloud`` index per point,
    non-decreasing; ``cell_id`` per point, -1 for track points) returns ``(n_nbr, local)``: the number of
    neighbours of every point that the same cloud holds, and their indices within the cloud (flat, grouped by
    point in point order, neighbours in cloud order). Symmetric: j lists i whenever i lists j. Vectorised over
    (point, neighbour) pairs in chunks of at most ``max_pairs``."""
    from .topocluster import _neighbour_edges, cell_neighbours

    cloud = np.asarray(cloud, np.int64)
    cid = np.asarray(cell_id, np.int64)
    n = cid.size
    if cloud.shape != (n,):
        raise ValueError(f"cloud_cell_graph: cloud and cell_id must have the same length, found {cloud.shape} and "
                         f"{cid.shape}")
    if n and np.any(np.diff(cloud) < 0):
        raise ValueError("cloud_cell_graph: points must be grouped by cloud (cloud index non-decreasing)")
    is_cell = cid >= 0
    key = np.where(is_cell, cloud * geometry.n_cells + cid, -1)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    if np.any((skey[1:] == skey[:-1]) & (skey[1:] >= 0)):
        raise ValueError("cloud_cell_graph: a cell appears twice in one cloud")
    safe = np.maximum(cid, 0)
    deg = np.where(is_cell, np.diff(cell_neighbours(geometry).indptr)[safe], 0)
    src_all, dst_all = [], []
    for a, b in _chunks(deg, max_pairs):
        grow = np.zeros(n, bool)
        grow[a:b] = is_cell[a:b]
        s, d = _neighbour_edges(geometry, cloud, safe, order, skey, grow, is_cell)
        src_all.append(s)
        dst_all.append(d)
    src = np.concatenate(src_all) if src_all else np.zeros(0, np.int64)
    dst = np.concatenate(dst_all) if dst_all else np.zeros(0, np.int64)
    srt = np.lexsort((dst, src))
    src, dst = src[srt], dst[srt]
    first = np.searchsorted(cloud, np.arange(int(cloud[-1]) + 1 if n else 0))
    return np.bincount(src, minlength=n).astype(np.int64), (dst - first[cloud[dst]]).astype(np.int32)


# ---------------------------------------------------------------------------------------------- cell neighbourhoods
#: per-point fields written by :func:`neighbour_energy` into the track clouds (GeV; 0 for track points)
NEIGHBOUR_FIELDS = ("nbr_energy_same", "nbr_energy_inner", "nbr_energy_outer", "nbr_max_same")


def neighbour_energy(events, geometry, energy_gev=None, eligible=None, rows=None, max_pairs: int = _MAX_PAIRS) -> dict:
    """Energy around each cell, from its neighbours in the geometry's cell graph (:func:`pcloud.pflow.topocluster.
    cell_neighbours`: the 8 cells around it in its layer, and the cells of the adjacent layers whose areas overlap
    it, the "all3D" neighbours of ATLAS topo-clustering, Eur. Phys. J. C 77 (2017) 490, section 4).

    Per row of ``events.cells`` (float32, GeV), over the neighbours present in the same event and marked in
    ``eligible`` (default: every cell; the particle-flow clouds pass their cell selection, e.g. the topo-clustered
    cells, minus the cells emptied by subtraction, so a file that stores only clustered cells gives the same values):

    * ``nbr_energy_same``: summed energy of the neighbours in the cell's own layer;
    * ``nbr_energy_inner`` / ``nbr_energy_outer``: summed energy of the overlapping cells of the layer in front
      (smaller layer index, towards the beam line) / behind;
    * ``nbr_max_same``: the largest energy among the same-layer neighbours (0 when there is none).

    ``rows``: compute only for these rows of ``events.cells`` (the others get 0; default: the eligible rows).

    Why: a point model that pools over the whole cloud (PointNet) cannot see a cell's surroundings. The longitudinal
    pattern is what separates the two showers that share the EM middle layer in particle flow: a photon showers
    early (EMB1 lit in front of the EMB2 cell, little behind), a charged pion crosses EMB1 as a minimum-ionising
    particle and deposits most of its energy in the hadronic layers (PDG Review "Passage of particles through
    matter", sec. 34.4.5 and 34.5: a photon converts after 9/7 X0 and its cascade is contained in a few X0, i.e.
    within EMB1-EMB2; PDG Review "Calorimetry" on hadronic showers, which develop over interaction lengths).
    ``energy_gev``: current energy per row (default measured). Vectorised over (cell, neighbour) pairs in chunks of
    at most ``max_pairs``.
    """
    from .topocluster import _neighbour_edges, cell_neighbours

    C = events.cells
    cid = np.asarray(C["id"], np.int64)
    ev = np.asarray(C["event"], np.int64)
    n = cid.size
    e = np.asarray(C["energy_gev"] if energy_gev is None else energy_gev, np.float64)
    if e.shape != (n,):
        raise ValueError(f"neighbour_energy: energy_gev must have one value per row of events.cells ({n}), found "
                         f"shape {e.shape}")
    el = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
    if el.shape != (n,):
        raise ValueError(f"neighbour_energy: eligible must have one value per row of events.cells ({n}), found "
                         f"shape {el.shape}")
    out = {k: np.zeros(n, np.float64) for k in NEIGHBOUR_FIELDS}
    mx = np.full(n, -np.inf)
    nb = cell_neighbours(geometry)
    layer = np.asarray(geometry.cells["layer"], np.int64)
    key = ev * geometry.n_cells + cid  # sorted: TrackCellEvents keeps cells in (event, id) order
    rows = np.nonzero(el)[0] if rows is None else np.unique(np.asarray(rows, np.int64))
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"neighbour_energy: rows must lie in [0, {n}), found [{rows[0]}, {rows[-1]}]")
    deg = np.diff(nb.indptr)[cid[rows]]
    order = np.arange(n)
    for a, b in _chunks(deg, max_pairs):  # (row, eligible neighbour row) pairs of the topo-clustering graph walk
        chunk = np.zeros(n, bool)
        chunk[rows[a:b]] = True
        src, dst = _neighbour_edges(geometry, ev, cid, order, key, chunk, el)
        ls, ld = layer[cid[src]], layer[cid[dst]]
        same = ls == ld
        for name, sel in (("nbr_energy_same", same), ("nbr_energy_inner", ld < ls), ("nbr_energy_outer", ld > ls)):
            out[name] += np.bincount(src[sel], weights=e[dst[sel]], minlength=n)
        np.maximum.at(mx, src[same], e[dst[same]])
    out["nbr_max_same"] = np.where(np.isfinite(mx), mx, 0.0)
    return {k: v.astype(np.float32) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------- whole events
def _nearest_track_at_layer(events, reached, c_eta, c_phi, c_lay, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell row: (DeltaR, row) of the nearest track of its event at the cell's layer among the tracks reaching
    that layer (inf, -1 when none); (cell, track of its event) pairs are built in chunks."""
    T, C = events.tracks, events.cells
    lay_eta = np.asarray(T["layer_eta"], np.float64)
    lay_phi = np.asarray(T["layer_phi"], np.float64)
    n_cells = C["event"].size
    t_off = events.track_offsets
    n_trk_of_cell = (t_off[C["event"] + 1] - t_off[C["event"]]).astype(np.int64)
    best_dr = np.full(n_cells, np.inf)
    best_row = np.full(n_cells, -1, np.int64)
    for a, b in _chunks(n_trk_of_cell, max_pairs):
        owner, trow = _expand(t_off[C["event"][a:b]], n_trk_of_cell[a:b])
        owner += a
        ok = reached[trow, c_lay[owner]]
        owner, trow = owner[ok], trow[ok]
        dr = np.hypot(c_eta[owner] - lay_eta[trow, c_lay[owner]], delta_phi(c_phi[owner], lay_phi[trow, c_lay[owner]]))
        o = np.lexsort((dr, owner))
        first = o[np.r_[True, np.diff(owner[o]) != 0]] if o.size else o
        best_dr[owner[first]] = dr[first]
        best_row[owner[first]] = trow[first]
    return best_dr, best_row


def _charged_fraction(events, n_cells: int) -> np.ndarray:
    """Per cell row: clipped truth energy of particles with a track / clipped truth energy (0 without truth)."""
    hits = events.hits
    has_track = np.zeros(events.particles["event"].size, bool)
    has_track[events.tracks["particle"]] = True
    he = np.clip(hits["energy_gev"], 0, None)
    tot = np.bincount(hits["cell"], he, minlength=n_cells)
    chg = np.bincount(hits["cell"], he * has_track[hits["particle"]], minlength=n_cells)
    return np.divide(chg, tot, out=np.zeros(n_cells), where=tot > 0)


def _event_cloud_points(events, geometry, e_cur, reached, max_pairs: int) -> tuple:
    """Point columns of the whole-event clouds (per event: track points by track then layer, then cells by row);
    returns (event of each point, point columns, cell row of each point)."""
    T, C, gc = events.tracks, events.cells, geometry.cells
    L = reached.shape[1]
    n_cells = C["event"].size
    cid = C["id"]
    c_eta, c_phi = gc["eta"][cid].astype(np.float64), gc["phi"][cid].astype(np.float64)
    c_lay = gc["layer"][cid].astype(np.int64)
    best_dr, best_row = _nearest_track_at_layer(events, reached, c_eta, c_phi, c_lay, max_pairs)
    lay_eta = np.asarray(T["layer_eta"], np.float64)
    lay_phi = np.asarray(T["layer_phi"], np.float64)
    has = best_row >= 0
    sr = np.maximum(best_row, 0)
    c_deta = np.where(has, c_eta - lay_eta[sr, c_lay], 0.0)
    c_dphi = np.where(has, delta_phi(c_phi, lay_phi[sr, c_lay]), 0.0)
    c_dr = np.where(has, best_dr, NO_TRACK_DR)
    t_row, t_lay = np.nonzero(reached)  # track points
    ev_all = np.concatenate([T["event"][t_row], C["event"]])
    grp = np.concatenate([np.zeros(t_row.size, np.int64), np.ones(n_cells, np.int64)])
    order = np.lexsort((np.concatenate([t_row * L + t_lay, np.arange(n_cells)]), grp, ev_all))
    nt = t_row.size

    def cat(a, b):
        return np.concatenate([np.asarray(a), np.asarray(b)])[order]

    ndf = np.maximum(np.asarray(T["ndf"], np.float64), 1.0)
    is_trk = cat(np.ones(nt, bool), np.zeros(n_cells, bool))
    trow = cat(t_row, np.full(n_cells, -1, np.int64))
    safe = np.maximum(trow, 0)
    crow = cat(np.full(nt, -1, np.int64), np.arange(n_cells))
    sc = np.maximum(crow, 0)
    cfrac = _charged_fraction(events, n_cells)
    points = {
        "type": np.where(is_trk, PointType.OTHER_TRACK, PointType.CELL),
        "x": cat(T["layer_x_mm"][t_row, t_lay], gc["x"][cid]),
        "y": cat(T["layer_y_mm"][t_row, t_lay], gc["y"][cid]),
        "z": cat(T["layer_z_mm"][t_row, t_lay], gc["z"][cid]),
        "eta": cat(lay_eta[t_row, t_lay], c_eta), "phi": cat(lay_phi[t_row, t_lay], c_phi),
        "layer": cat(t_lay, c_lay), "cell_id": cat(np.full(nt, -1, np.int64), cid),
        "energy": np.where(is_trk, 0.0, e_cur[sc]).astype(np.float64),
        "noise_sigma": np.where(is_trk, 0.0, C["noise_sigma_gev"][sc]),
        "delta_r": np.zeros(nt + n_cells),
        "track_pt": np.where(is_trk, T["pt_gev"][safe], 0.0),
        "track_chi2_ndf": np.where(is_trk, T["chi2"][safe] / ndf[safe], 0.0),
        "track_index": np.where(is_trk, safe - events.track_offsets[T["event"][safe]], -1),
        "cell_row": crow, "track_row": trow,
        "deta": np.where(is_trk, 0.0, c_deta[sc]), "dphi": np.where(is_trk, 0.0, c_dphi[sc]),
        "dr_nearest_track": np.where(is_trk, 0.0, c_dr[sc]),
        "nearest_track_row": np.where(is_trk, trow, best_row[sc]),
        "charged_fraction": np.where(is_trk, 0.0, cfrac[sc]).astype(np.float32),
    }
    return ev_all, points, crow


def event_clouds(events, geometry, cell_energy_gev=None, max_pairs: int = _MAX_PAIRS) -> ak.Array:
    """One cloud per event: all cells and all track layer points (module docstring, "Whole-event clouds")."""
    where = "event_clouds"
    _check_events(events, geometry, where)
    e_cur, _ = _cell_energy(events, cell_energy_gev, where)
    reached = np.asarray(events.tracks["layer_reached"], bool)
    ev_all, points, crow = _event_cloud_points(events, geometry, e_cur, reached, max_pairs)
    n_ev = events.n_events
    counts = np.bincount(ev_all, minlength=n_ev)
    tc, ti, te = _truth_lists(events, crow)
    ev_idx = np.arange(n_ev, dtype=np.int64)
    t_off = events.track_offsets
    ev_fields = {"event_number": _event_numbers(events), "event": ev_idx,
                 "n_tracks_event": (t_off[1:] - t_off[:-1]).astype(np.int32)}
    return build_clouds(counts, points, ev_fields, truth_counts=tc, truth_index=ti, truth_energy=te,
                        particles=_particles_of(events, ev_idx))
