"""Event-level inference with a per-track segmenter: common and iterative (seed 002 backup, "Ongoing work:
Building an iterative segmentation system").

Both functions take any *segmenter* with ``predict_fraction(clouds) -> (n_cell_points,)`` fractions in [0, 1] of
each CELL point's (current) energy that belongs to the cloud's focal track (:class:`pcloud.pflow.learned.
FocalTrackSegmenter`, :class:`~pcloud.pflow.learned.OracleSegmenter`, ...) and return an
:class:`~pcloud.core.attribution.Attribution`. Only positive cell energy is ever attributed; everything not given
to a track is neutral, so ``sum_tracks + neutral = measured`` holds per cell and per event by construction.

Common inference (:func:`common_inference`)
-------------------------------------------
Every track reaching the calorimeter is predicted on the untouched event (one batch of clouds). In a cell ``c``
claimed by tracks ``t`` with fractions ``f_t``, track ``t`` gets ``E_c^+ f_t / max(1, sum_t f_t)``
(``E^+ = max(E, 0)``): the claims are scaled down when they overbook the cell, the remainder is neutral.

Iterative inference (:func:`iterative_inference`)
-------------------------------------------------
Like the ATLAS particle-flow algorithm (ATL-PERF-2015-09, Eur. Phys. J. C 77 (2017) 466), tracks are processed in
descending measured pT within each event. Iteration ``k`` takes the k-th track of *every* event at once
(vectorised across events): re-cloud with the current cell energies (cells emptied by earlier tracks drop out of
the clouds, see :mod:`pcloud.pflow.clouds`), predict ``f``, give ``f * E_current^+`` to the track and subtract it.
Since ``0 <= f <= 1`` the current energy never goes below 0 and the sum given away never exceeds ``E^+``.

Clean-up ("remove the remnants if within expected fluctuations", ATLAS): after the last iteration, a cell that was
partly taken by tracks and whose leftover energy is positive, below ``cleanup_sigma * noise_sigma`` (the cell's
electronic noise, GeV) and smaller than the energy the tracks took gives that leftover to the track that took most
of the cell. The leftover is then
compatible with noise and is more likely the tail of the track's shower than a neutral deposit. ``cleanup_sigma=0``
(or None) disables it; :func:`clean_up_leftovers` applies it to an attribution made without it.

Events are processed in chunks of ``chunk_events`` (loop over chunks and over k only; everything inside is
vectorised over tracks and cells).
"""
from __future__ import annotations

import numpy as np

from ..core.attribution import Attribution
from .clouds import cloud_cell_rows, cloud_track_rows, track_clouds

__all__ = ["clean_up_leftovers", "common_inference", "iterative_inference", "track_order"]


def _check_segmenter(segmenter):
    if not callable(getattr(segmenter, "predict_fraction", None)):
        raise TypeError(f"segmenter must have predict_fraction(clouds); found {type(segmenter).__name__}")


def _predict(segmenter, clouds, where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crow = cloud_cell_rows(clouds)
    trow = cloud_track_rows(clouds)
    f = np.asarray(segmenter.predict_fraction(clouds), np.float64).ravel()
    if f.shape != crow.shape:
        raise ValueError(f"{where}: {type(segmenter).__name__}.predict_fraction returned {f.size} values for "
                         f"{crow.size} cell points")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{where}: {type(segmenter).__name__}.predict_fraction returned NaN/inf")
    return crow, trow, np.clip(f, 0.0, 1.0)


def _event_chunks(n_events: int, chunk_events: int):
    if chunk_events < 1:
        raise ValueError(f"chunk_events must be >= 1, found {chunk_events}")
    for a in range(0, n_events, chunk_events):
        yield a, min(n_events, a + chunk_events)


def _cell_mask(events, geometry, segmenter, cell_mask):
    """The cells the clouds may hold: ``cell_mask`` if given, else the segmenter's own selection
    (``segmenter.cloud_cell_mask(events, geometry)``, e.g. topo-clustered cells), else all."""
    if cell_mask is not None:
        return np.asarray(cell_mask, bool)
    fn = getattr(segmenter, "cloud_cell_mask", None)
    return fn(events, geometry) if callable(fn) else None


def _reaching_tracks(events) -> np.ndarray:
    return np.nonzero(np.asarray(events.tracks["layer_reached"], bool).any(1))[0].astype(np.int64)


def track_order(events) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the tracks reaching the calorimeter and their rank within their event by descending measured pT
    (rank 0 = hardest; ties: lower row first)."""
    rows = _reaching_tracks(events)
    ev = events.tracks["event"][rows]
    o = np.lexsort((rows, -np.asarray(events.tracks["pt_gev"])[rows], ev))
    rows, ev = rows[o], ev[o]
    first = np.searchsorted(ev, ev, side="left")
    return rows, np.arange(rows.size) - first


def _merge(cell_row, track_row, energy, n_tracks, method) -> Attribution:
    keep = energy > 0
    cell_row, track_row, energy = cell_row[keep], track_row[keep], energy[keep]
    key = cell_row * max(n_tracks, 1) + track_row
    uk, inv = np.unique(key, return_inverse=True)
    e = np.bincount(inv, energy, minlength=uk.size)
    return Attribution(uk // max(n_tracks, 1), uk % max(n_tracks, 1), e, method=method)


def common_inference(events, geometry, segmenter, dr_max: float = 0.2, chunk_events: int = 2000,
                     cell_mask=None) -> Attribution:
    """Every track predicted on the untouched event; claims normalised per cell (module docstring). ``cell_mask``:
    the cells the clouds may hold (default: the segmenter's ``cloud_cell_mask``, else all)."""
    _check_segmenter(segmenter)
    cell_mask = _cell_mask(events, geometry, segmenter, cell_mask)
    rows_all = _reaching_tracks(events)
    tev = events.tracks["event"][rows_all]
    e_pos = np.clip(np.asarray(events.cells["energy_gev"], np.float64), 0, None)
    n_cells = e_pos.size
    crs, trs, fs = [], [], []
    for a, b in _event_chunks(events.n_events, chunk_events):
        rows = rows_all[(tev >= a) & (tev < b)]
        if rows.size == 0:
            continue
        clouds = track_clouds(events, geometry, dr_max=dr_max, tracks=rows, cell_mask=cell_mask,
                              cell_graph=getattr(segmenter, "needs_cell_graph", False))
        crow, trow, f = _predict(segmenter, clouds, "common_inference")
        crs.append(crow), trs.append(trow), fs.append(f)
    if not crs:
        return Attribution(np.zeros(0), np.zeros(0), np.zeros(0), method="common")
    crow, trow, f = np.concatenate(crs), np.concatenate(trs), np.concatenate(fs)
    claim = np.bincount(crow, f, minlength=n_cells)
    scale = np.maximum(claim, 1.0)
    e = f / scale[crow] * e_pos[crow]
    return _merge(crow, trow, e, events.tracks["event"].size, "common")


def iterative_inference(events, geometry, segmenter, dr_max: float = 0.2, cleanup_sigma: float | None = 2.0,
                        chunk_events: int = 2000, cell_mask=None) -> Attribution:
    """Tracks in descending pT, k-th track of every event at once, predict-attribute-subtract-re-cloud; final
    clean-up of small leftovers (module docstring). ``cell_mask`` as in :func:`common_inference`."""
    _check_segmenter(segmenter)
    cell_mask = _cell_mask(events, geometry, segmenter, cell_mask)
    if cleanup_sigma is not None and not cleanup_sigma >= 0:
        raise ValueError(f"iterative_inference: cleanup_sigma must be >= 0 or None, found {cleanup_sigma!r}")
    e_cur = np.asarray(events.cells["energy_gev"], np.float64).copy()
    rows_all, rank_all = track_order(events)
    tev = events.tracks["event"][rows_all]
    crs, trs, es = [], [], []
    for a, b in _event_chunks(events.n_events, chunk_events):
        in_chunk = (tev >= a) & (tev < b)
        if not in_chunk.any():
            continue
        rows_c, rank_c = rows_all[in_chunk], rank_all[in_chunk]
        for k in range(int(rank_c.max()) + 1):
            rows = rows_c[rank_c == k]
            clouds = track_clouds(events, geometry, dr_max=dr_max, cell_energy_gev=e_cur, tracks=rows,
                                  cell_mask=cell_mask, cell_graph=getattr(segmenter, "needs_cell_graph", False))
            crow, trow, f = _predict(segmenter, clouds, "iterative_inference")
            e = f * np.clip(e_cur[crow], 0, None)
            # one track per event in this iteration and events own disjoint cell rows: crow is unique
            np.subtract.at(e_cur, crow, e)
            crs.append(crow), trs.append(trow), es.append(e)
    if not crs:
        return Attribution(np.zeros(0), np.zeros(0), np.zeros(0), method="iterative")
    raw = _merge(np.concatenate(crs), np.concatenate(trs), np.concatenate(es), events.tracks["event"].size,
                 "iterative")
    return clean_up_leftovers(events, raw, cleanup_sigma) if cleanup_sigma else raw


def clean_up_leftovers(events, attribution: Attribution, cleanup_sigma: float | None = 2.0) -> Attribution:
    """The clean-up step of iterative inference (module docstring), applied to an attribution made without it: in
    every cell that tracks took part of, a positive leftover ``E - taken`` below ``cleanup_sigma`` times the cell's
    noise sigma and below ``taken`` goes to the track whose summed take of the cell is largest (ties: the track of
    higher measured pT, then the lower track row, i.e. the one iterative inference processed first).
    ``iterative_inference(..., cleanup_sigma=s)`` is ``clean_up_leftovers(events, iterative_inference(...,
    cleanup_sigma=None), s)``; callers that need both (``scripts/pflow_study.py errors``) run the inference once.
    Repeated (cell, track) entries are summed first. ``cleanup_sigma`` 0 or None: no clean-up. Returns a new, merged
    :class:`~pcloud.core.attribution.Attribution` with the same method name."""
    if cleanup_sigma is not None and not cleanup_sigma >= 0:
        raise ValueError(f"clean_up_leftovers: cleanup_sigma must be >= 0 or None, found {cleanup_sigma!r}")
    energy = np.asarray(events.cells["energy_gev"], np.float64)
    n_tracks = events.tracks["event"].size
    attribution.check_rows(energy.size, n_tracks, "clean_up_leftovers")
    merged = _merge(attribution.cell_row, attribution.track_row, attribution.energy_gev, n_tracks, attribution.method)
    if not cleanup_sigma or merged.cell_row.size == 0:
        return merged
    crow, trow, e = merged.cell_row, merged.track_row, merged.energy_gev
    taken = np.bincount(crow, e, minlength=energy.size)
    sigma = np.asarray(events.cells["noise_sigma_gev"], np.float64)
    left = np.where(taken > 0, energy - taken, 0.0)
    small = (left > 0) & (left < cleanup_sigma * sigma) & (left < taken)
    m = small[crow]
    if m.any():
        pt = np.asarray(events.tracks["pt_gev"], np.float64)
        o = np.lexsort((trow[m], -pt[trow[m]], -e[m], crow[m]))
        c_m, t_m = crow[m][o], trow[m][o]
        first = np.r_[True, np.diff(c_m) != 0]
        c_best, t_best = c_m[first], t_m[first]
        crow = np.concatenate([crow, c_best])
        trow = np.concatenate([trow, t_best])
        e = np.concatenate([e, left[c_best]])
    return _merge(crow, trow, e, n_tracks, attribution.method)
