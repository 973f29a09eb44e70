"""Cell-level segmentation metrics for particle flow (seed 002), always reported beside trivial baselines.

Inputs are flat per-cell arrays (cells of all events concatenated): hard labels ``y_true``/``y_pred`` (ints in
[0, K)), optional cell ``energy`` (GeV) and, for soft targets, per-cell fractions ``(M, K)`` (or ``(M,)`` for the
binary "fraction belonging to the focal track" of per-track clouds, expanded to ``[1 - f, f]``).

Definitions (per class k; TP/FP/FN counted over cells):

* accuracy = mean(y_pred == y_true); energy-weighted accuracy = sum_c w_c [y_pred == y_true] / sum_c w_c with
  w_c = max(E_c, 0): negative (noise-fluctuated) cells carry no weight;
* precision_k = TP/(TP+FP), recall_k = TP/(TP+FN), F1_k = 2TP/(2TP+FP+FN), IoU_k = TP/(TP+FP+FN) (Jaccard);
  NaN when the denominator is 0 (class absent from truth and prediction); macro averages ignore NaN;
* soft targets: energy-weighted overlap = sum_c w_c sum_k min(t_ck, p_ck) / sum_c w_c (= 1 - half the
  energy-weighted L1 distance when rows sum to 1), soft IoU_k = sum_c w_c min(t_ck, p_ck) / sum_c w_c max(t_ck,
  p_ck). Cells whose truth fractions sum to 0 (no truth particle deposited energy: pure noise) are excluded and
  counted in ``n_unlabelled``; predicted rows are used as given (not renormalised).

Baselines (accuracy alone is meaningless under class imbalance; peers report 0.83 vs 0.82 for the trivial model):

* trivial: always predict the majority class of the prior (by cell count);
* smart random: predict class k at random with probability q_k = prior frequency. Its expected counts are
  TP_k = n_k q_k, FP_k = (N - n_k) q_k, FN_k = n_k (1 - q_k), so accuracy = sum_k n_k q_k / N, energy-weighted
  accuracy = sum_k E_k q_k / E, precision_k = n_k / N, recall_k = q_k and, with q = p = n_k / N, F1_k = p and
  IoU_k = p / (2 - p) (ratios of expected counts, exact for large N).
"""
from __future__ import annotations

import numpy as np

from .regression import robust_width


# ---------------------------------------------------------------------------------------------------- helpers
def _labels(y, where, name, n_classes=None):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-D cell labels, found shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer) and not np.issubdtype(y.dtype, np.bool_):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{where}: {name} must hold integer class labels, found dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{where}: {name} holds negative labels (min {y.min()})")
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise ValueError(f"{where}: {name} holds label {y.max()} >= n_classes = {n_classes}")
    return y


def _weights(energy, n, where):
    if energy is None:
        return None
    e = np.asarray(energy, dtype=np.float64)
    if e.shape != (n,):
        raise ValueError(f"{where}: energy must have shape ({n},), found {e.shape}")
    return np.clip(e, 0.0, None)


def ratio(num, den):
    """``num / den`` elementwise (float64), NaN where ``den <= 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def f1_score(tp, fp, fn):
    """F1 = 2 TP / (2 TP + FP + FN) from counts (or energy sums); NaN where the denominator is 0."""
    tp = np.asarray(tp, dtype=np.float64)
    return ratio(2 * tp, 2 * tp + np.asarray(fp, np.float64) + np.asarray(fn, np.float64))


def iou_score(tp, fp, fn):
    """IoU (Jaccard) = TP / (TP + FP + FN) from counts; NaN where the denominator is 0."""
    tp = np.asarray(tp, dtype=np.float64)
    return ratio(tp, tp + np.asarray(fp, np.float64) + np.asarray(fn, np.float64))


def _nanmean(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


def _scores_from_counts(tp, fp, fn, correct, n, e_correct=None, e_total=None) -> dict:
    out = {"n_cells": int(round(n)), "accuracy": float(correct / n) if n else float("nan"),
           "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
           "f1": f1_score(tp, fp, fn), "iou": iou_score(tp, fp, fn), "support": tp + fn}
    out["f1_macro"] = _nanmean(out["f1"])
    out["iou_macro"] = _nanmean(out["iou"])
    if e_correct is not None:
        out["energy_accuracy"] = float(e_correct / e_total) if e_total > 0 else float("nan")
    if len(tp) == 2:
        out["f1_positive"] = float(out["f1"][1])
        out["iou_positive"] = float(out["iou"][1])
    return out


# ---------------------------------------------------------------------------------------------------- hard labels
def hard_scores(y_true, y_pred, energy=None, n_classes: int | None = None) -> dict:
    """Per-cell scores of hard labels (binary or multi-class), see the module docstring.

    Returns a dict: ``accuracy``, ``energy_accuracy`` (when ``energy`` is given), per-class arrays ``precision``,
    ``recall``, ``f1``, ``iou``, ``support`` (true cells per class), ``f1_macro``, ``iou_macro``, ``n_cells`` and,
    for two classes, ``f1_positive`` / ``iou_positive`` (class 1).
    """
    yt = _labels(y_true, "hard_scores", "y_true", n_classes)
    yp = _labels(y_pred, "hard_scores", "y_pred", n_classes)
    if yt.shape != yp.shape:
        raise ValueError(f"hard_scores: y_true {yt.shape} and y_pred {yp.shape} differ in length")
    k = n_classes or int(max(yt.max(initial=0), yp.max(initial=0)) + 1)
    k = max(k, 2)
    w = _weights(energy, yt.size, "hard_scores")
    ok = yt == yp
    tp = np.bincount(yt[ok], minlength=k).astype(np.float64)
    fp = np.bincount(yp, minlength=k) - tp
    fn = np.bincount(yt, minlength=k) - tp
    e_ok = None if w is None else float(w[ok].sum())
    return _scores_from_counts(tp, fp, fn, float(ok.sum()), yt.size, e_ok, None if w is None else float(w.sum()))


# ---------------------------------------------------------------------------------------------------- soft labels
def _fractions(f, where, name):
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.stack([1.0 - f, f], axis=1)
    if f.ndim != 2:
        raise ValueError(f"{where}: {name} must be (M,) or (M, K) fractions, found shape {f.shape}")
    if not np.all(np.isfinite(f)) or f.min(initial=0) < -1e-9 or f.max(initial=0) > 1 + 1e-9:
        raise ValueError(f"{where}: {name} must hold finite fractions in [0, 1]")
    return f


def soft_scores(true_frac, pred_frac, energy) -> dict:
    """Energy-weighted overlap and soft IoU of per-cell energy fractions (see the module docstring).

    ``true_frac``/``pred_frac``: ``(M, K)`` fractions of each cell's energy per class/track, or ``(M,)`` binary
    fractions (focal track). ``energy``: cell energies (GeV). Returns ``overlap``, per-class ``iou``, ``iou_macro``,
    ``l1`` (energy-weighted mean of sum_k |t - p|), ``n_unlabelled``.
    """
    t = _fractions(true_frac, "soft_scores", "true_frac")
    p = _fractions(pred_frac, "soft_scores", "pred_frac")
    if t.shape != p.shape:
        raise ValueError(f"soft_scores: true_frac {t.shape} and pred_frac {p.shape} differ in shape")
    w = _weights(energy, t.shape[0], "soft_scores")
    labelled = t.sum(axis=1) > 0
    w = w * labelled
    wsum = w.sum()
    mn = np.minimum(t, p)
    mx = np.maximum(t, p)
    iou = ratio(w @ mn, w @ mx)
    return {"overlap": float((w @ mn).sum() / wsum) if wsum > 0 else float("nan"),
            "l1": float(w @ np.abs(t - p).sum(axis=1) / wsum) if wsum > 0 else float("nan"),
            "iou": iou, "iou_macro": _nanmean(iou), "n_unlabelled": int((~labelled).sum())}


# ---------------------------------------------------------------------------------------------------- per-track energy
def attributed_energy(energy, frac, group, n_groups: int | None = None) -> np.ndarray:
    """Energy (GeV) attributed to each group (cloud / event) and class: sum over its cells of E_c * frac_ck.

    ``frac`` (M,) gives ``(G,)``; (M, K) gives ``(G, K)``; ``group`` holds each cell's group id in [0, G)."""
    e = np.asarray(energy, dtype=np.float64)
    g = _labels(group, "attributed_energy", "group")
    f = np.asarray(frac, dtype=np.float64)
    if e.shape != g.shape or f.shape[0] != e.size:
        raise ValueError(f"attributed_energy: energy {e.shape}, group {g.shape} and frac {f.shape} must share M")
    n = n_groups or (int(g.max()) + 1 if g.size else 0)
    if f.ndim == 1:
        return np.bincount(g, weights=e * f, minlength=n)
    flat = g[:, None] * f.shape[1] + np.arange(f.shape[1])[None, :]
    return np.bincount(flat.ravel(), weights=(e[:, None] * f).ravel(), minlength=n * f.shape[1]).reshape(n, -1)


def track_energy_response(energy, true_frac, pred_frac, group, min_true_gev: float = 0.0) -> dict:
    """Per-track attributed-energy response E_pred / E_true and its spread.

    Attributed energies come from :func:`attributed_energy` (binary focal-track fractions per cloud, or (M, K)
    per-track fractions per event). Tracks with true attributed energy <= ``min_true_gev`` are dropped. Returns
    per-track ``e_true``/``e_pred`` (GeV) and ``response_median``, ``response_mean``, ``resolution`` (robust width
    of the response, see :func:`pcloud.metrics.regression.robust_width`), ``resolution_rms``, ``mae_gev``,
    ``n_tracks``.
    """
    g = _labels(group, "track_energy_response", "group")
    n = int(g.max()) + 1 if g.size else 0
    et = attributed_energy(energy, true_frac, g, n).ravel()
    ep = attributed_energy(energy, pred_frac, g, n).ravel()
    if et.shape != ep.shape:
        raise ValueError(f"track_energy_response: true {et.shape} and predicted {ep.shape} shapes differ")
    keep = et > min_true_gev
    et, ep = et[keep], ep[keep]
    if et.size == 0:
        raise ValueError(f"track_energy_response: no track with true attributed energy > {min_true_gev} GeV")
    r = ep / et
    return {"e_true": et, "e_pred": ep, "n_tracks": int(et.size), "response_median": float(np.median(r)),
            "response_mean": float(r.mean()), "resolution": robust_width(r), "resolution_rms": float(r.std()),
            "mae_gev": float(np.mean(np.abs(ep - et)))}


# ---------------------------------------------------------------------------------------------------- baselines
def _prior(y, prior, k):
    """Class frequencies q_k: from ``prior`` (integer training labels, or K float frequencies) or from ``y``."""
    if prior is None:
        q = np.bincount(y, minlength=k).astype(np.float64)
    else:
        pr = np.asarray(prior)
        if np.issubdtype(pr.dtype, np.floating):         # frequencies, one per class
            if pr.shape != (k,):
                raise ValueError(f"baseline: a float prior holds class frequencies and must have shape ({k},), "
                                 f"found {pr.shape}; pass integer training labels otherwise")
            q = pr.astype(np.float64)
        else:                                            # training labels
            q = np.bincount(_labels(pr, "baseline", "prior", k), minlength=k).astype(np.float64)
    if q.sum() <= 0 or q.min() < 0:
        raise ValueError(f"baseline: class prior must be non-negative with a positive sum, found {q}")
    return q / q.sum()


def trivial_baseline(y_true, energy=None, n_classes: int | None = None, prior=None) -> dict:
    """Scores of always predicting the majority class of ``prior`` (default: of ``y_true``); adds ``predicted``."""
    yt = _labels(y_true, "trivial_baseline", "y_true", n_classes)
    k = max(n_classes or int(yt.max(initial=0) + 1), 2)
    q = _prior(yt, prior, k)
    c = int(np.argmax(q))
    out = hard_scores(yt, np.full_like(yt, c), energy, k)
    out["predicted"] = c
    return out


def smart_random_baseline(y_true, energy=None, n_classes: int | None = None, prior=None) -> dict:
    """Expected scores of class-balanced random guessing (class k with probability q_k = prior frequency).

    Computed analytically from expected counts (module docstring), no sampling; adds ``prior`` (q).
    """
    yt = _labels(y_true, "smart_random_baseline", "y_true", n_classes)
    k = max(n_classes or int(yt.max(initial=0) + 1), 2)
    q = _prior(yt, prior, k)
    n_k = np.bincount(yt, minlength=k).astype(np.float64)
    n = float(yt.size)
    tp = n_k * q
    fp = (n - n_k) * q
    fn = n_k * (1 - q)
    e_ok = e_tot = None
    w = _weights(energy, yt.size, "smart_random_baseline")
    if w is not None:
        e_k = np.bincount(yt, weights=w, minlength=k)
        e_ok, e_tot = float(e_k @ q), float(w.sum())
    out = _scores_from_counts(tp, fp, fn, float(tp.sum()), n, e_ok, e_tot)
    out["prior"] = q
    return out


def smart_random_predictions(n_cells: int, prior, seed: int = 0) -> np.ndarray:
    """Random labels drawn with class probabilities ``prior`` (frequencies, length K), seeded."""
    q = np.asarray(prior, dtype=np.float64)
    q = q / q.sum()
    return np.random.default_rng(seed).choice(q.size, size=int(n_cells), p=q)


def report_with_baselines(y_true, y_pred, energy=None, n_classes: int | None = None, prior=None) -> dict:
    """``{"model": hard_scores(...), "trivial": ..., "smart_random": ...}`` on the same cells."""
    return {"model": hard_scores(y_true, y_pred, energy, n_classes),
            "trivial": trivial_baseline(y_true, energy, n_classes, prior),
            "smart_random": smart_random_baseline(y_true, energy, n_classes, prior)}


def format_report(report: dict) -> str:
    """A small fixed-width text table of :func:`report_with_baselines` (accuracy, energy accuracy, macro F1/IoU)."""
    cols = ("accuracy", "energy_accuracy", "f1_macro", "iou_macro")
    lines = [f"{'':14s}" + "".join(f"{c:>16s}" for c in cols)]
    for name, r in report.items():
        lines.append(f"{name:14s}" + "".join(f"{r.get(c, float('nan')):16.4f}" for c in cols))
    return "\n".join(lines)
