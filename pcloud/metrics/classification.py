"""Particle-identification metrics: ROC, AUC, background rejection at fixed signal efficiency (seed 004 §3.2).

Conventions: ``y_true`` is 1 for signal and 0 for background; a larger ``score`` means more signal-like; the cut is
``score >= threshold``. Signal efficiency = true-positive rate (TPR), background efficiency = false-positive rate
(FPR), background rejection = 1 / FPR (seed 004, Fig. 1 and Tables 3-4). Optional per-event weights are supported.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ROC(NamedTuple):
    """A ROC curve: ``tpr`` (signal efficiency), ``fpr`` (background efficiency) and the ``thresholds`` (cut
    ``score >= threshold``), ordered by decreasing threshold; the first point is (0, 0) at threshold +inf."""

    tpr: np.ndarray
    fpr: np.ndarray
    thresholds: np.ndarray


def _binary_inputs(y_true, score, sample_weight, where: str):
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"{where}: y_true and score must be 1-D of the same length, found {y.shape} and {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{where}: score holds NaN or inf")
    labels = np.unique(y)
    if not set(labels.tolist()) <= {0, 1, False, True}:
        raise ValueError(f"{where}: y_true must hold 0 (background) and 1 (signal), found labels {labels[:10]}")
    w = np.ones_like(s) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != s.shape:
        raise ValueError(f"{where}: sample_weight must have shape {s.shape}, found {w.shape}")
    y = y.astype(bool)
    if not (w[y].sum() > 0 and w[~y].sum() > 0):
        raise ValueError(f"{where}: need both signal (y=1) and background (y=0) events with positive weight; "
                         f"found {int(y.sum())} signal and {int((~y).sum())} background")
    return y, s, w


def roc_curve(y_true, score, sample_weight=None) -> ROC:
    """ROC curve with one point per distinct score value (ties are cut together), vectorised (sort + cumsum)."""
    y, s, w = _binary_inputs(y_true, score, sample_weight, "roc_curve")
    order = np.argsort(-s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    tp = np.cumsum(w * y)
    fp = np.cumsum(w * ~y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]     # last index of each distinct score
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return ROC(tpr, fpr, np.r_[np.inf, s[last]])


def auc(y_true, score, sample_weight=None) -> float:
    """Area under the ROC curve (trapezoidal, ties count one half; equals the Mann-Whitney U / (n_s n_b))."""
    r = roc_curve(y_true, score, sample_weight)
    return float(np.sum(np.diff(r.fpr) * 0.5 * (r.tpr[1:] + r.tpr[:-1])))


def fpr_at_tpr(roc: ROC, signal_efficiency) -> np.ndarray:
    """Background efficiency at the given signal efficiencies, linearly interpolated between the two ROC points
    that bracket each efficiency (the first point with tpr >= eff and the one before it)."""
    eff = np.atleast_1d(np.asarray(signal_efficiency, dtype=np.float64))
    if np.any((eff < 0) | (eff > 1)):
        raise ValueError(f"signal efficiencies must lie in [0, 1], found {eff}")
    tpr, fpr = roc.tpr, roc.fpr
    hi = np.clip(np.searchsorted(tpr, eff, side="left"), 1, tpr.size - 1)
    lo = hi - 1
    dt = tpr[hi] - tpr[lo]
    t = np.where(dt > 0, (eff - tpr[lo]) / np.where(dt > 0, dt, 1.0), 1.0)
    return fpr[lo] + t * (fpr[hi] - fpr[lo])


def background_rejection(y_true, score, signal_efficiency=(0.6, 0.7, 0.8, 0.9, 0.99),
                         sample_weight=None) -> dict[str, np.ndarray]:
    """Background rejection 1/FPR at fixed signal efficiencies (seed 004 working points by default).

    Returns a dict of arrays, one entry per efficiency:

    * ``signal_efficiency``, ``background_efficiency`` (interpolated FPR), ``rejection`` = 1/FPR. **When no
      background passes (FPR = 0) the rejection is ``inf``**; then ``rejection_lower_limit_95`` gives the 95% CL
      lower limit n_b/3 ("rule of three": 0 events seen out of n_b means FPR < 3/n_b at 95% CL).
    * ``rejection_err``: binomial uncertainty. With FPR = k/n (n = effective number of background events
      (sum w)^2 / sum w^2), sigma_FPR = sqrt(FPR (1 - FPR) / n) and, propagating R = 1/FPR,
      sigma_R = sigma_FPR / FPR^2 = R sqrt((R - 1) / n) (``inf`` where R is inf).
    * ``n_background_effective``: n above (scalar, repeated).
    """
    y, s, w = _binary_inputs(y_true, score, sample_weight, "background_rejection")
    roc = roc_curve(y, s, w)
    eff = np.atleast_1d(np.asarray(signal_efficiency, dtype=np.float64))
    fpr = fpr_at_tpr(roc, eff)
    wb = w[~y]
    n_eff = wb.sum() ** 2 / np.sum(wb ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rej = np.where(fpr > 0, 1.0 / fpr, np.inf)
        err = np.where(fpr > 0, rejection_uncertainty(rej, n_eff), np.inf)
    return {"signal_efficiency": eff, "background_efficiency": fpr, "rejection": rej, "rejection_err": err,
            "rejection_lower_limit_95": np.where(fpr > 0, np.nan, n_eff / 3.0),
            "n_background_effective": np.full(eff.shape, n_eff)}


def rejection_uncertainty(rejection, n_background) -> np.ndarray:
    """Binomial uncertainty of a rejection R = 1/FPR measured on ``n_background`` events: R sqrt((R - 1) / n)."""
    r = np.asarray(rejection, dtype=np.float64)
    return r * np.sqrt(np.clip(r - 1.0, 0.0, None) / np.asarray(n_background, dtype=np.float64))


def relative_rejection(rejection, reference_rejection) -> np.ndarray:
    """Relative change of rejection with respect to a reference model, R / R_ref - 1 (seed 004 Tables 3-4 print it
    in percent). Where both are inf the change is 0; where only the model's is inf it is +inf; where only the
    reference's is inf it is -1."""
    r = np.asarray(rejection, dtype=np.float64)
    ref = np.asarray(reference_rejection, dtype=np.float64)
    both = np.isinf(r) & np.isinf(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r / ref - 1.0
    return np.where(both, 0.0, out)


def paired_rejection_difference(y_true, score_a, score_b, signal_efficiency=(0.6, 0.7, 0.8, 0.9, 0.99),
                                n_boot: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Difference of background rejections ``R_a - R_b`` of two classifiers scored on the **same** events, with
    a paired bootstrap uncertainty (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 6).

    Both models are evaluated on each of ``n_boot`` resamples (events drawn with replacement, the same draw for
    both), so the correlation of their errors (they see the same, sometimes hard, background events) and the
    uncertainty of the cut that fixes the signal efficiency are both included; the binomial errors of
    :func:`background_rejection` combined as independent include neither. The bootstrap spread is checked
    against the spread over independent Monte-Carlo samples in the tests.

    Returns ``difference`` (on the nominal sample), ``bootstrap_std`` (standard deviation over resamples where
    both rejections are finite; NaN if fewer than 90% are), ``fraction_a_better`` (share of those resamples with
    ``R_a > R_b``) and ``n_boot``; one entry per efficiency. Resamples are one vectorised ROC each (a loop over
    resamples, not over events).
    """
    y, sa, _ = _binary_inputs(y_true, score_a, None, "paired_rejection_difference")
    _, sb, _ = _binary_inputs(y_true, score_b, None, "paired_rejection_difference")
    if not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"paired_rejection_difference: n_boot must be an int >= 2, found {n_boot!r}")
    eff = np.atleast_1d(np.asarray(signal_efficiency, dtype=np.float64))

    def rej(idx=None):
        yy, a, b = (y, sa, sb) if idx is None else (y[idx], sa[idx], sb[idx])
        if yy.all() or not yy.any():
            return np.full(eff.shape, np.nan), np.full(eff.shape, np.nan)
        with np.errstate(divide="ignore"):
            return tuple(1.0 / fpr_at_tpr(roc_curve(yy, sc), eff) for sc in (a, b))

    ra, rb = rej()
    rng = np.random.default_rng(seed)
    diffs = np.empty((n_boot, eff.size))
    for i in range(n_boot):
        a, b = rej(rng.integers(0, y.size, y.size))
        with np.errstate(invalid="ignore"):  # inf - inf: that resample is dropped below
            diffs[i] = a - b
    ok = np.isfinite(diffs)
    n_ok = ok.sum(0)
    with np.errstate(invalid="ignore"):
        std = np.array([np.std(diffs[ok[:, j], j], ddof=1) if n_ok[j] >= max(2, 0.9 * n_boot) else np.nan
                        for j in range(eff.size)])
        frac = np.where(n_ok > 0, ((diffs > 0) & ok).sum(0) / np.maximum(n_ok, 1), np.nan)
    with np.errstate(invalid="ignore"):  # both rejections infinite (no background passes): NaN difference
        diff = ra - rb
    return {"signal_efficiency": eff, "difference": diff, "bootstrap_std": std, "fraction_a_better": frac,
            "n_boot": n_boot}


def relative_rejection_table(models: dict[str, tuple], reference: str,
                             signal_efficiency=(0.6, 0.7, 0.8, 0.9, 0.99)) -> dict[str, np.ndarray]:
    """Seed 004 Table 3/4 in one call: ``models`` maps a name to ``(y_true, score)``; returns, per model, the
    relative rejection change in percent w.r.t. ``reference`` at each signal efficiency."""
    if reference not in models:
        raise KeyError(f"relative_rejection_table: reference {reference!r} not among models {sorted(models)}")
    rej = {k: background_rejection(y, s, signal_efficiency)["rejection"] for k, (y, s) in models.items()}
    return {k: 100.0 * relative_rejection(v, rej[reference]) for k, v in rej.items()}


# ---------------------------------------------------------------------------------------------------- multi-class
def accuracy(y_true, y_pred_or_proba) -> float:
    """Fraction of correct predictions; a 2-D input is read as class probabilities and arg-maxed."""
    y = np.asarray(y_true)
    p = np.asarray(y_pred_or_proba)
    if p.ndim == 2:
        p = np.argmax(p, axis=1)
    if p.shape != y.shape:
        raise ValueError(f"accuracy: y_true {y.shape} and predictions {p.shape} differ in shape")
    if y.size == 0:
        raise ValueError("accuracy: no events")
    return float(np.mean(p == y))


def one_vs_rest_auc(y_true, proba, classes=None) -> dict:
    """One-vs-rest AUC of each class (column k of ``proba`` as the score of class ``classes[k]``, default 0..K-1),
    and their unweighted mean ``macro`` (as sklearn ``roc_auc_score(multi_class="ovr", average="macro")``)."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"one_vs_rest_auc: proba must be (N, K) with N = {y.shape[0]}, found {p.shape}")
    classes = np.arange(p.shape[1]) if classes is None else np.asarray(classes)
    if classes.size != p.shape[1]:
        raise ValueError(f"one_vs_rest_auc: {classes.size} classes for {p.shape[1]} probability columns")
    per = {c.item(): auc(y == c, p[:, k]) for k, c in enumerate(classes)}
    return {"per_class": per, "macro": float(np.mean(list(per.values())))}


def best_threshold(y_true, score, sample_weight=None, metric: str = "f1") -> tuple[float, float]:
    """The decision threshold ``t`` that maximises ``metric`` of the decision ``score > t`` (binary ``y_true``),
    and that maximum: ``(t, value)``.

    ``metric``: ``"f1"`` (2 TP / (2 TP + FP + FN)) or ``"accuracy"``, optionally weighted per sample. Every cut
    between two consecutive distinct scores is tried (exact, one sort): ``t`` is the midpoint between the lowest
    score predicted positive and the next lower score (``score.min() - 1`` when all are positive; ``score.max()`` when
    none are). Ties in the metric go to the higher threshold.
    """
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"best_threshold: metric must be 'f1' or 'accuracy', found {metric!r}")
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(score, np.float64).ravel()
    if y.shape != s.shape or s.size == 0:
        raise ValueError(f"best_threshold: y_true and score must be non-empty and of equal length, found {y.shape} "
                         f"and {s.shape}")
    w = np.ones(s.size) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    if w.shape != s.shape:
        raise ValueError(f"best_threshold: sample_weight must have {s.size} values, found {w.shape}")
    o = np.argsort(-s, kind="stable")
    s, y, w = s[o], y[o], w[o]
    last = np.r_[s[1:] != s[:-1], True]  # the last sample of each group of equal scores
    tp = np.cumsum(w * y)[last]
    fp = np.cumsum(w * ~y)[last]
    pos, neg = float((w * y).sum()), float((w * ~y).sum())
    tp, fp = np.r_[0.0, tp], np.r_[0.0, fp]  # first entry: nothing predicted positive
    if metric == "f1":
        den = 2 * tp + fp + (pos - tp)
        val = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
    else:
        val = (tp + neg - fp) / max(pos + neg, 1e-300)
    i = int(np.argmax(val))  # first maximum = highest threshold
    distinct = s[last]
    if i == 0:
        t = float(distinct[0])
    elif i == distinct.size:
        t = float(distinct[-1] - 1.0)
    else:
        t = float(0.5 * (distinct[i - 1] + distinct[i]))
    return t, float(val[i])
