"""Event-level particle-flow metrics: an :class:`~pcloud.core.attribution.Attribution` against the truth.

The truth is :func:`~pcloud.core.attribution.truth_attribution` (each cell's measured energy shared between tracks
like the true deposits of their particles). All metrics are computed on the *evaluated cells*: cells with measured
energy E > 0 and, if given, in ``cell_mask`` (the benchmark uses the topo-clustered cells, the cell population of
the MLTree / JetPointNet data; the noise window around every particle otherwise dominates cell counts with pure
noise). Attributions to cells outside the evaluated set are ignored by every metric except the conservation check.

Cell level (hard labels = :meth:`Attribution.dominant_track`: the track with the largest share, or neutral (-1)
when the neutral remainder is larger):

* ``f1``, ``iou``, ``precision``, ``recall``: charged (label >= 0) vs neutral, F1 = 2TP / (2TP + FP + FN),
  IoU = TP / (TP + FP + FN) for the charged class (:func:`pcloud.metrics.segmentation.f1_score`, ``iou_score``);
* ``accuracy``: exact label agreement (the right track, or neutral); ``energy_weighted_accuracy``: the same weighted
  by E_cell;
* ``f1_track_macro`` / ``iou_track_macro``: per track, the binary F1 / IoU of "cell labelled this track" over the
  cells of its event, averaged over tracks (tracks with no cell in truth and prediction are skipped);
* ``soft_overlap``: sum_c [sum_t min(E_ct^true, E_ct^pred) + min(E_c,n^true, E_c,n^pred)] / sum_c E_c, the
  energy-weighted overlap of the per-cell fractions (n: neutral remainder); 1 for a perfect attribution.

Track level: attributed energy E_t = sum over evaluated cells of the energy given to track t. Response
R = E_t^pred / E_t^true for tracks with E_t^true > ``min_true_gev``: ``track_energy_response`` (median) and
``track_energy_resolution`` (robust width: half the central 68.27 % interval of R,
:func:`pcloud.metrics.regression.robust_width`), ``track_energy_mae_gev``; per-track soft IoU
sum_c min(E_ct^true, E_ct^pred) / sum_c max(E_ct^true, E_ct^pred).

Event level: neutral energy N = sum_c (E_c - charged_c) over evaluated cells; ``neutral_energy_recovered`` = median
over events with N^true > ``min_neutral_gev`` of N^pred / N^true (1 is ideal), ``neutral_energy_recovered_total``
= sum N^pred / sum N^true.

Environment: ``by_dr`` repeats the track-level metrics in bins of DeltaR from each track to the nearest *other*
truth particle of its event (particles that showered). Positions are taken at the calorimeter: the track's
extrapolated point in EMB2 for particles with a track (helix), the production direction (eta, phi) for the others
(straight lines from the beam line). Default bins: < 0.05, 0.05-0.1, 0.1-0.2, > 0.2. Per bin: ``f1``/``iou`` (focal
F1 / IoU averaged over the bin's tracks), ``soft_iou``, ``energy_weighted_accuracy`` (energy of the cells of the
bin's tracks, in truth or prediction, that carry the right label / their total energy), ``response_median``,
``resolution``, ``mae_gev`` and the track counts.

``by_event_dr`` bins *events* by their densest track (the smallest track isolation DeltaR of the event; events
without a track: ``inf``) and gives the cell-level ``f1``, ``iou``, ``energy_weighted_accuracy`` over the evaluated
cells of those events and ``neutral_energy_recovered`` (median N^pred / N^true over the bin's events with
N^true > ``min_neutral_gev``), with ``n_events`` and ``n_cells``. ``dense`` is the dedicated summary at
``dense_dr`` (default 0.1): ``{"dr": 0.1, "tracks": <track metrics of tracks with DeltaR < 0.1>, "events": <event
metrics of events whose densest track has DeltaR < 0.1>, "isolated_tracks", "isolated_events": the complements}``.

Error budget (where the cell labels and the energy go wrong):

* ``energy_lost``: the evaluated energy whose cell carries the wrong label, split by kind, as fractions of the
  evaluated energy: ``charged_as_neutral`` (a track's cell labelled neutral), ``neutral_as_charged`` (a neutral cell
  given to a track) and ``wrong_track`` (a track's cell given to another track); the three sum to
  ``1 - energy_weighted_accuracy``.
* ``by_significance``: the cell-level numbers in bins of the measured cell significance E / sigma_noise
  (``cells["noise_sigma_gev"]``; edges ``significance_edges``, default 0, 1, 2, 4, 10, inf; cells with sigma <= 0 go
  to the last bin): ``n_cells``, ``f1``, ``charged_share_true`` / ``_pred``, ``energy_share`` (of the evaluated
  energy), ``energy_weighted_accuracy`` within the bin and the three ``lost_*`` fractions (of the *whole* evaluated
  energy, so bins add up to ``energy_lost``). A cell below about 1 sigma is mostly noise: its label is that of the
  particle with the larger (small) true deposit, which the measured energy barely constrains.
* ``by_layer``: the same per calorimeter layer, when the layer of every cell row is given (``cell_layer``; the
  benchmark passes ``geometry.cells["layer"][cells["id"]]``), keyed by layer name (``layer_names``, else the
  events' ``layer_names``, else the index).

:func:`energy_conservation` is the per-event check |charged + neutral - measured| (with the neutral energy of every
cell, evaluated or not, computed independently of the attribution as E_c - charged_c) and also reports cells given
more than their positive energy and attributions that cross events.

:class:`AttributionMetrics` computes the same numbers over events given chunk by chunk (files larger than memory):
every cell-level quantity is a sum, every track- and event-level one is kept as one number per track / event, so the
result is the one :func:`evaluate_attribution` gives on all events at once (tested).
"""
from __future__ import annotations

import numpy as np

from ..core.attribution import Attribution, truth_attribution
from ..geometry.base import wrap_phi as _wrap
from .regression import robust_width
from .segmentation import f1_score, iou_score, ratio

DEFAULT_DR_EDGES = (0.0, 0.05, 0.1, 0.2, np.inf)
#: bins of the measured cell significance E / sigma_noise of ``by_significance``
DEFAULT_SIGNIFICANCE_EDGES = (0.0, 1.0, 2.0, 4.0, 10.0, np.inf)
#: per-group sums of the error budget (``by_significance``, ``by_layer``)
_GROUP_SUMS = ("n", "tp", "fp", "fn", "ct", "cp", "w", "w_ok", "lost_cn", "lost_nc", "lost_wt")


def _group_sums(group: np.ndarray, n_groups: int, lt, lp, w) -> dict:
    """Per group of evaluated cells: counts, charged-vs-neutral TP/FP/FN, energies right and lost by kind."""
    ct, cp = lt >= 0, lp >= 0

    def bc(weights=None):
        return np.bincount(group, weights, minlength=n_groups).astype(np.float64)

    return {"n": bc(), "tp": bc(ct & cp), "fp": bc(~ct & cp), "fn": bc(ct & ~cp), "ct": bc(ct), "cp": bc(cp),
            "w": bc(w), "w_ok": bc(np.where(lt == lp, w, 0.0)), "lost_cn": bc(np.where(ct & ~cp, w, 0.0)),
            "lost_nc": bc(np.where(~ct & cp, w, 0.0)), "lost_wt": bc(np.where(ct & cp & (lt != lp), w, 0.0))}


def _group_summary(g: dict, i: int, w_total: float) -> dict:
    """Error-budget numbers of group ``i`` of the sums ``g`` (``lost_*`` and ``energy_share`` over ``w_total``)."""
    n, w = g["n"][i], g["w"][i]
    return {"n_cells": int(n), "f1": float(f1_score(g["tp"][i], g["fp"][i], g["fn"][i])),
            "charged_share_true": float(g["ct"][i] / n) if n else float("nan"),
            "charged_share_pred": float(g["cp"][i] / n) if n else float("nan"),
            "energy_share": float(w / w_total) if w_total > 0 else float("nan"),
            "energy_weighted_accuracy": float(g["w_ok"][i] / w) if w > 0 else float("nan"),
            "lost_charged_as_neutral": float(g["lost_cn"][i] / w_total) if w_total > 0 else float("nan"),
            "lost_neutral_as_charged": float(g["lost_nc"][i] / w_total) if w_total > 0 else float("nan"),
            "lost_wrong_track": float(g["lost_wt"][i] / w_total) if w_total > 0 else float("nan")}


def _check(events, attribution: Attribution, what: str):
    attribution.check_rows(events.cells["event"].size, events.tracks["event"].size, what)


def energy_conservation(events, attribution: Attribution) -> dict:
    """Energy bookkeeping of an attribution (GeV): ``max_event_violation_gev`` = max over events of
    |sum charged + sum neutral - sum measured|, ``max_cell_excess_gev`` = max over cells of (charged - max(E, 0)),
    ``min_attributed_gev`` (>= 0 required), ``n_cross_event`` (attributions to a track of another event), and
    ``max_violation_gev``, the largest of the three energy numbers (0 for a perfect bookkeeping)."""
    _check(events, attribution, "energy_conservation")
    e = np.asarray(events.cells["energy_gev"], np.float64)
    ev = events.cells["event"]
    n = events.n_events
    a = attribution
    charged_cell = np.bincount(a.cell_row, a.energy_gev, minlength=e.size)
    neutral_cell = e - charged_cell
    charged_ev = np.bincount(events.tracks["event"][a.track_row], a.energy_gev, minlength=n)  # via the tracks
    neutral_ev = np.bincount(ev, neutral_cell, minlength=n)
    measured_ev = np.bincount(ev, e, minlength=n)
    ev_viol = np.abs(charged_ev + neutral_ev - measured_ev)
    excess = charged_cell - np.maximum(e, 0.0)
    cross = int(np.sum(events.tracks["event"][a.track_row] != ev[a.cell_row]))
    out = {"max_event_violation_gev": float(ev_viol.max(initial=0.0)),
           "max_cell_excess_gev": float(max(excess.max(initial=0.0), 0.0)),
           "min_attributed_gev": float(a.energy_gev.min(initial=0.0)), "n_cross_event": cross}
    out["max_violation_gev"] = max(out["max_event_violation_gev"], out["max_cell_excess_gev"],
                                   -min(out["min_attributed_gev"], 0.0))
    return out


def track_isolation_dr(events, other_parent_only: bool = False) -> np.ndarray:
    """DeltaR at the calorimeter from every track to the nearest other showering truth particle of its event
    (``inf`` if there is none); see the module docstring for the positions used. ``other_parent_only``: only
    particles from a different parent decay count (e.g. not the pi0 of the track's own rho), i.e. the overlap of
    independent showers."""
    P, T = events.particles, events.tracks
    n_p = P["event"].size
    eta = np.asarray(P["eta"], np.float64).copy()
    phi = np.asarray(P["phi"], np.float64).copy()
    if "EMB2" in events.layer_names:
        li = list(events.layer_names).index("EMB2")
        ok = np.asarray(T["layer_reached"][:, li], bool) & np.isfinite(T["layer_eta"][:, li])
        eta[T["particle"][ok]] = T["layer_eta"][ok, li]
        phi[T["particle"][ok]] = T["layer_phi"][ok, li]
    showered = np.asarray(P.get("showered", np.ones(n_p, bool)), bool)
    t_part = T["particle"]
    ev = T["event"]
    p0 = events.particle_offsets[ev]
    npe = events.particle_offsets[ev + 1] - p0
    pi = np.repeat(np.arange(t_part.size), npe)
    pp = np.repeat(p0 - np.cumsum(npe) + npe, npe) + np.arange(int(npe.sum()))
    keep = (pp != t_part[pi]) & showered[pp]
    if other_parent_only:
        par = np.asarray(P["parent"], np.int64)
        keep &= (par[pp] != par[t_part[pi]]) | (par[pp] < 0)
    pi, pp = pi[keep], pp[keep]
    d = np.hypot(eta[pp] - eta[t_part[pi]], _wrap(phi[pp] - phi[t_part[pi]]))
    out = np.full(t_part.size, np.inf)
    np.minimum.at(out, pi, d)
    return out


def _per_track_stats(events, truth: Attribution, pred: Attribution, lab_t, lab_p, sel, e):
    """Per track: true/pred attributed energy, soft min/max sums, hard TP/FP/FN counts and energy-weighted
    correct / relevant energies (over the evaluated cells ``sel``)."""
    n_t = events.tracks["event"].size
    ft = sel[truth.cell_row]
    fp = sel[pred.cell_row]
    et = np.bincount(truth.track_row[ft], truth.energy_gev[ft], minlength=n_t)
    ep = np.bincount(pred.track_row[fp], pred.energy_gev[fp], minlength=n_t)
    # soft per (cell, track): merge the two sparse tables
    key_t = truth.cell_row[ft] * n_t + truth.track_row[ft]
    key_p = pred.cell_row[fp] * n_t + pred.track_row[fp]
    keys, inv = np.unique(np.concatenate([key_t, key_p]), return_inverse=True)
    vt = np.bincount(inv[:key_t.size], truth.energy_gev[ft], minlength=keys.size)
    vp = np.bincount(inv[key_t.size:], pred.energy_gev[fp], minlength=keys.size)
    k_track = keys % n_t if keys.size else keys
    k_cell = keys // n_t if keys.size else keys
    s_min = np.bincount(k_track, np.minimum(vt, vp), minlength=n_t)
    s_max = np.bincount(k_track, np.maximum(vt, vp), minlength=n_t)
    # hard labels
    cells = np.nonzero(sel)[0]
    lt, lp = lab_t[cells], lab_p[cells]
    w = e[cells]
    same = lt == lp
    tp = np.bincount(lt[same & (lt >= 0)], minlength=n_t).astype(np.float64)
    n_true = np.bincount(lt[lt >= 0], minlength=n_t).astype(np.float64)
    n_pred = np.bincount(lp[lp >= 0], minlength=n_t).astype(np.float64)
    # energy-weighted accuracy of the cells that are this track's in truth or prediction
    rel_t = np.bincount(lt[lt >= 0], w[lt >= 0], minlength=n_t)
    rel_p = np.bincount(lp[(lp >= 0) & ~same], w[(lp >= 0) & ~same], minlength=n_t)
    ok_e = np.bincount(lt[same & (lt >= 0)], w[same & (lt >= 0)], minlength=n_t)
    soft_overlap_cells = (k_cell, np.minimum(vt, vp))
    return {"e_true": et, "e_pred": ep, "soft_min": s_min, "soft_max": s_max, "tp": tp, "fp": n_pred - tp,
            "fn": n_true - tp, "e_relevant": rel_t + rel_p, "e_correct": ok_e}, soft_overlap_cells


def _track_summary(st: dict, m: np.ndarray, min_true_gev: float) -> dict:
    """Track-level metrics over the tracks of mask ``m``."""
    has = m & (2 * st["tp"] + st["fp"] + st["fn"] > 0)
    f1 = f1_score(st["tp"], st["fp"], st["fn"])[has]
    iou = iou_score(st["tp"], st["fp"], st["fn"])[has]
    r_ok = m & (st["e_true"] > min_true_gev)
    resp = st["e_pred"][r_ok] / st["e_true"][r_ok]
    soft = ratio(st["soft_min"], st["soft_max"])[m & (st["soft_max"] > 0)]
    erel = st["e_relevant"][m]
    out = {"n_tracks": int(m.sum()), "n_tracks_response": int(r_ok.sum()),
           "f1": float(np.mean(f1)) if f1.size else float("nan"),
           "iou": float(np.mean(iou)) if iou.size else float("nan"),
           "soft_iou": float(np.mean(soft)) if soft.size else float("nan"),
           "energy_weighted_accuracy": float(st["e_correct"][m].sum() / erel.sum()) if erel.sum() > 0 else
           float("nan"),
           "response_median": float(np.median(resp)) if resp.size else float("nan"),
           "resolution": robust_width(resp) if resp.size else float("nan"),
           "mae_gev": float(np.mean(np.abs(st["e_pred"][r_ok] - st["e_true"][r_ok]))) if resp.size else float("nan")}
    return out


def _event_summary(ev_stats: dict, m: np.ndarray, min_neutral_gev: float) -> dict:
    """Cell-level and neutral-energy metrics over the events of mask ``m`` (per-event sums in ``ev_stats``)."""
    tp, fp, fn = (float(ev_stats[k][m].sum()) for k in ("tp", "fp", "fn"))
    w, w_ok = float(ev_stats["w"][m].sum()), float(ev_stats["w_ok"][m].sum())
    nt, npred = ev_stats["n_true"], ev_stats["n_pred"]
    evm = m & (nt > min_neutral_gev)
    rec = npred[evm] / nt[evm]
    return {"n_events": int(m.sum()), "n_cells": int(ev_stats["n_cells"][m].sum()),
            "n_events_neutral": int(evm.sum()),
            "f1": float(f1_score(tp, fp, fn)), "iou": float(iou_score(tp, fp, fn)),
            "energy_weighted_accuracy": w_ok / w if w > 0 else float("nan"),
            "neutral_energy_recovered": float(np.median(rec)) if rec.size else float("nan"),
            "neutral_energy_recovered_total": float(npred[evm].sum() / nt[evm].sum()) if evm.any() else
            float("nan")}


def event_isolation_dr(events, track_iso: np.ndarray | None = None) -> np.ndarray:
    """Per event, the smallest :func:`track_isolation_dr` of its tracks (``inf`` for events without a track)."""
    iso = track_isolation_dr(events) if track_iso is None else np.asarray(track_iso, np.float64)
    out = np.full(events.n_events, np.inf)
    np.minimum.at(out, events.tracks["event"], iso)
    return out


def _evaluated_cells(e: np.ndarray, cell_mask) -> np.ndarray:
    """Mask of the evaluated cell rows: measured energy > 0 (and in ``cell_mask``, if given)."""
    sel = e > 0
    if cell_mask is not None:
        cm = np.asarray(cell_mask, bool)
        if cm.shape != e.shape:
            raise ValueError(f"evaluate_attribution: cell_mask must have shape {e.shape} (one per cell row), found "
                             f"{cm.shape}")
        sel &= cm
    return sel


def _neutral_cell_energy(a: Attribution, sel: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Per cell row: what ``a`` leaves neutral of an evaluated cell (E_cell minus its attributed energy; 0 for
    cells not evaluated)."""
    charged = np.bincount(a.cell_row[sel[a.cell_row]], a.energy_gev[sel[a.cell_row]], minlength=e.size)
    return np.where(sel, e - charged, 0.0)


def _dr_bins(dr_edges):
    """(name, lo, hi) of every DeltaR bin of ``dr_edges`` (name ``"lo-hi"``, or ``">lo"`` for an infinite edge)."""
    edges = np.asarray(dr_edges, np.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):  # loop over the few DeltaR bins
        yield (f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}"), lo, hi


def _overall_metrics(sums: dict, trk: dict, nt_ev, np_ev, n_events: int, n_tracks: int, min_neutral_gev: float,
                     conservation: dict) -> dict:
    """The top-level metrics of :func:`evaluate_attribution` from the cell sums ``sums`` (see
    :meth:`AttributionMetrics.add`), the track summary ``trk`` of :func:`_track_summary` and the neutral energy per
    event ``nt_ev``, ``np_ev``."""
    tp, fp, fn, n_cells, w = sums["tp"], sums["fp"], sums["fn"], sums["n_cells"], sums["w"]
    evm = nt_ev > min_neutral_gev
    rec = np_ev[evm] / nt_ev[evm]
    return {"n_events": int(n_events), "n_cells": int(n_cells), "n_tracks": int(n_tracks),
            "f1": float(f1_score(tp, fp, fn)), "iou": float(iou_score(tp, fp, fn)),
            "precision": float(ratio(tp, tp + fp)), "recall": float(ratio(tp, tp + fn)),
            "accuracy": sums["same"] / n_cells if n_cells else float("nan"),
            "energy_weighted_accuracy": sums["w_ok"] / w if w > 0 else float("nan"),
            "f1_track_macro": trk["f1"], "iou_track_macro": trk["iou"], "soft_iou_track_macro": trk["soft_iou"],
            "soft_overlap": sums["overlap"] / w if w > 0 else float("nan"),
            "track_energy_response": trk["response_median"], "track_energy_resolution": trk["resolution"],
            "track_energy_mae_gev": trk["mae_gev"], "n_tracks_response": trk["n_tracks_response"],
            "neutral_energy_recovered": float(np.median(rec)) if rec.size else float("nan"),
            "neutral_energy_recovered_width": robust_width(rec) if rec.size else float("nan"),
            "neutral_energy_recovered_total": float(np_ev[evm].sum() / nt_ev[evm].sum()) if evm.any() else
            float("nan"),
            "charged_fraction_true": sums["ct"] / n_cells if n_cells else float("nan"),
            "charged_fraction_pred": sums["cp"] / n_cells if n_cells else float("nan"),
            "energy_conservation": conservation}


def _merge_conservation(a: dict | None, b: dict) -> dict:
    """:func:`energy_conservation` of two disjoint sets of events together."""
    if a is None:
        return dict(b)
    return {"max_event_violation_gev": max(a["max_event_violation_gev"], b["max_event_violation_gev"]),
            "max_cell_excess_gev": max(a["max_cell_excess_gev"], b["max_cell_excess_gev"]),
            "min_attributed_gev": min(a["min_attributed_gev"], b["min_attributed_gev"]),
            "n_cross_event": a["n_cross_event"] + b["n_cross_event"],
            "max_violation_gev": max(a["max_violation_gev"], b["max_violation_gev"])}


def _event_stats(events, cells, lt, lp, w, nt_ev, np_ev) -> dict:
    """Per-event sums over the evaluated ``cells`` (labels ``lt``, ``lp``, energies ``w``) for :func:`_event_summary`."""
    ev_c = events.cells["event"][cells]
    n_ev = events.n_events
    ct, cp = lt >= 0, lp >= 0
    same = lt == lp
    return {"tp": np.bincount(ev_c, ct & cp, minlength=n_ev), "fp": np.bincount(ev_c, ~ct & cp, minlength=n_ev),
            "fn": np.bincount(ev_c, ct & ~cp, minlength=n_ev), "w": np.bincount(ev_c, w, minlength=n_ev),
            "w_ok": np.bincount(ev_c, np.where(same, w, 0.0), minlength=n_ev),
            "n_cells": np.bincount(ev_c, minlength=n_ev), "n_true": nt_ev, "n_pred": np_ev}


class AttributionMetrics:
    """:func:`evaluate_attribution` over events given chunk by chunk: ``m.add(events, pred, truth, cell_mask)`` for
    every chunk (rows of ``pred`` / ``truth`` local to that chunk), then ``m.result()``. Memory: a few numbers per
    track and per event, never the cells of earlier chunks."""

    _TRACK = ("e_true", "e_pred", "soft_min", "soft_max", "tp", "fp", "fn", "e_relevant", "e_correct")
    _EVENT = ("tp", "fp", "fn", "w", "w_ok", "n_cells", "n_true", "n_pred")
    _SUMS = ("tp", "fp", "fn", "same", "ct", "cp", "n_cells", "w", "w_ok", "overlap")

    def __init__(self, dr_edges=DEFAULT_DR_EDGES, min_true_gev: float = 0.5, min_neutral_gev: float = 1.0,
                 dense_dr: float = 0.1, significance_edges=DEFAULT_SIGNIFICANCE_EDGES, layer_names=None):
        edges = np.asarray(significance_edges, np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"AttributionMetrics: significance_edges must be increasing (at least two), found "
                             f"{significance_edges!r}")
        self.significance_edges = edges
        self.layer_names = None if layer_names is None else [str(x) for x in layer_names]
        self.groups: dict[str, dict | None] = {"significance": None, "layer": None}
        self.dr_edges, self.min_true_gev = dr_edges, float(min_true_gev)
        self.min_neutral_gev, self.dense_dr = float(min_neutral_gev), float(dense_dr)
        self.tracks: dict[str, list] = {k: [] for k in (*self._TRACK, "iso")}
        self.events: dict[str, list] = {k: [] for k in (*self._EVENT, "iso")}
        self.sums = {k: 0.0 for k in self._SUMS}
        self.n_events = 0
        self.conservation: dict | None = None

    def _add_groups(self, name: str, group: np.ndarray, n_groups: int, lt, lp, w):
        """Add the chunk's per-group sums to ``groups[name]`` (chunks may see different numbers of layers)."""
        g = _group_sums(group, n_groups, lt, lp, w)
        old = self.groups[name]
        if old is not None:
            n = max(n_groups, old["n"].size)
            g = {k: np.pad(g[k], (0, n - g[k].size)) + np.pad(old[k], (0, n - old[k].size)) for k in _GROUP_SUMS}
        self.groups[name] = g

    def add(self, events, pred: Attribution, truth: Attribution | None = None, cell_mask=None,
            cell_layer=None) -> dict:
        """Add one chunk of events (``cell_layer``: layer index per cell row, for ``by_layer``); returns the
        per-chunk arrays (``lab_t``, ``lab_p``, ``sel``, ``st``, ``iso``)."""
        _check(events, pred, "evaluate_attribution")
        truth = truth_attribution(events) if truth is None else truth
        _check(events, truth, "evaluate_attribution (truth)")
        e = np.asarray(events.cells["energy_gev"], np.float64)
        sel = _evaluated_cells(e, cell_mask)
        lab_t = truth.dominant_track(e.size, e)
        lab_p = pred.dominant_track(e.size, e)
        cells = np.nonzero(sel)[0]
        lt, lp, w = lab_t[cells], lab_p[cells], e[cells]
        st, (_, mins) = _per_track_stats(events, truth, pred, lab_t, lab_p, sel, e)
        # soft overlap incl. the neutral remainders; neutral energy per event
        n_t_cell = _neutral_cell_energy(truth, sel, e)
        n_p_cell = _neutral_cell_energy(pred, sel, e)
        nt_ev = np.bincount(events.cells["event"], n_t_cell, minlength=events.n_events)
        np_ev = np.bincount(events.cells["event"], n_p_cell, minlength=events.n_events)
        iso = track_isolation_dr(events)
        ev_stats = _event_stats(events, cells, lt, lp, w, nt_ev, np_ev)
        ct, cp = lt >= 0, lp >= 0
        same = lt == lp
        add = {"tp": np.sum(ct & cp), "fp": np.sum(~ct & cp), "fn": np.sum(ct & ~cp), "same": np.sum(same),
               "ct": np.sum(ct), "cp": np.sum(cp), "n_cells": lt.size, "w": w.sum(), "w_ok": w[same].sum(),
               "overlap": mins.sum() + np.minimum(n_t_cell, n_p_cell)[sel].sum()}
        for k, v in add.items():
            self.sums[k] += float(v)
        sig = np.asarray(events.cells["noise_sigma_gev"], np.float64)[cells]
        signif = np.divide(w, sig, out=np.full(w.size, np.inf), where=sig > 0)
        n_sig = self.significance_edges.size - 1
        sbin = np.clip(np.searchsorted(self.significance_edges, signif, side="right") - 1, 0, n_sig - 1)
        self._add_groups("significance", sbin, n_sig, lt, lp, w)
        if cell_layer is not None:
            lay = np.asarray(cell_layer, np.int64)
            if lay.shape != e.shape:
                raise ValueError(f"evaluate_attribution: cell_layer must have shape {e.shape} (one per cell row), "
                                 f"found {lay.shape}")
            lay = lay[cells]
            if self.layer_names is None and getattr(events, "layer_names", None) is not None:
                self.layer_names = [str(x) for x in events.layer_names]
            if lay.size and lay.min() < 0:
                raise ValueError(f"evaluate_attribution: cell_layer must be >= 0, found {int(lay.min())}")
            n_lay = max(int(lay.max()) + 1 if lay.size else 0, len(self.layer_names or ()))
            self._add_groups("layer", lay, n_lay, lt, lp, w)
        for k in self._TRACK:
            self.tracks[k].append(st[k])
        self.tracks["iso"].append(iso)
        for k in self._EVENT:
            self.events[k].append(ev_stats[k])
        self.events["iso"].append(event_isolation_dr(events, iso))
        self.n_events += int(events.n_events)
        self.conservation = _merge_conservation(self.conservation, energy_conservation(events, pred))
        return {"lab_t": lab_t, "lab_p": lab_p, "sel": sel, "st": st, "iso": iso}

    def result(self) -> dict:
        """All metrics of the module docstring over the events added so far (a JSON-friendly dict)."""
        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0)

        st = {k: cat(v) for k, v in self.tracks.items()}
        ev_stats = {k: cat(v) for k, v in self.events.items()}
        iso, ev_iso = st.pop("iso"), ev_stats.pop("iso")
        mt, mn = self.min_true_gev, self.min_neutral_gev
        trk = _track_summary(st, np.ones(iso.size, bool), mt)
        out = _overall_metrics(self.sums, trk, ev_stats["n_true"], ev_stats["n_pred"], self.n_events, iso.size, mn,
                               self.conservation or energy_conservation_empty())
        out["by_dr"] = {name: {"dr_lo": float(lo), "dr_hi": float(hi),
                               **_track_summary(st, (iso >= lo) & (iso < hi), mt)}
                        for name, lo, hi in _dr_bins(self.dr_edges)}
        # events binned by their densest track: cell-level metrics and neutral energy per event
        out["by_event_dr"] = {name: {"dr_lo": float(lo), "dr_hi": float(hi),
                                     **_event_summary(ev_stats, (ev_iso >= lo) & (ev_iso < hi), mn)}
                              for name, lo, hi in _dr_bins(self.dr_edges)}
        # the significance bins hold every evaluated cell once: the totals of the error budget are their sums
        w_tot = self.sums["w"]
        g = self.groups["significance"] or {k: np.zeros(self.significance_edges.size - 1) for k in _GROUP_SUMS}
        out["energy_lost"] = {kind: float(g[k].sum() / w_tot) if w_tot > 0 else float("nan") for kind, k in
                              (("charged_as_neutral", "lost_cn"), ("neutral_as_charged", "lost_nc"),
                               ("wrong_track", "lost_wt"))}
        out["by_significance"] = {name: {"significance_lo": float(lo), "significance_hi": float(hi),
                                         **_group_summary(g, i, w_tot)}
                                  for i, (name, lo, hi) in enumerate(_dr_bins(self.significance_edges))}
        gl = self.groups["layer"]
        if gl is not None:
            names = self.layer_names or []
            out["by_layer"] = {(names[i] if i < len(names) else str(i)): {"layer": i, **_group_summary(gl, i, w_tot)}
                               for i in range(gl["n"].size)}
        d = self.dense_dr
        out["dense"] = {"dr": d, "tracks": _track_summary(st, iso < d, mt),
                        "events": _event_summary(ev_stats, ev_iso < d, mn),
                        "isolated_tracks": _track_summary(st, iso >= d, mt),
                        "isolated_events": _event_summary(ev_stats, ev_iso >= d, mn)}
        return out


def energy_conservation_empty() -> dict:
    """:func:`energy_conservation` of no event (nothing violated)."""
    return {"max_event_violation_gev": 0.0, "max_cell_excess_gev": 0.0, "min_attributed_gev": 0.0,
            "n_cross_event": 0, "max_violation_gev": 0.0}


def evaluate_attribution(events, pred: Attribution, truth: Attribution | None = None, cell_mask=None,
                         dr_edges=DEFAULT_DR_EDGES, min_true_gev: float = 0.5, min_neutral_gev: float = 1.0,
                         keep_arrays: bool = False, dense_dr: float = 0.1,
                         significance_edges=DEFAULT_SIGNIFICANCE_EDGES, cell_layer=None, layer_names=None) -> dict:
    """All metrics of the module docstring for one method (a JSON-friendly dict; ``keep_arrays`` adds per-track
    ``e_true_gev``, ``e_pred_gev``, ``isolation_dr`` and per-cell ``label_true``/``label_pred`` numpy arrays).
    Events that do not fit in memory: :class:`AttributionMetrics`."""
    m = AttributionMetrics(dr_edges, min_true_gev, min_neutral_gev, dense_dr, significance_edges, layer_names)
    a = m.add(events, pred, truth, cell_mask, cell_layer)
    out = m.result()
    if keep_arrays:
        out["arrays"] = {"e_true_gev": a["st"]["e_true"], "e_pred_gev": a["st"]["e_pred"], "isolation_dr": a["iso"],
                         "label_true": a["lab_t"], "label_pred": a["lab_p"], "evaluated": a["sel"]}
    return out
