"""Summaries of whole tasks on test events: particle identification (ROC, AUC, rejection at working points,
accuracy vs energy and eta), energy regression (bias, resolution, sigma/E fit per particle class) and auxiliary
regression (MAE, RMSE). Used by ``pcloud bench singles`` and ``pcloud evaluate``.
"""
from __future__ import annotations

import numpy as np

from . import classification as mc
from . import regression as mr


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)`` logits (numerically stable)."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def id_metrics(task, label: np.ndarray, proba: np.ndarray, energy: np.ndarray, eta: np.ndarray) -> dict:
    """Particle-identification summary of class probabilities ``proba`` (N, K) against ``label`` (N,): accuracy,
    accuracy in five bins of true energy (GeV) and of eta, and for two classes (signal = class 0) the AUC, the
    background rejection 1/FPR with binomial errors at ``task.working_points`` (None where the signal statistics
    cannot resolve the efficiency: fewer than 2 signal events beyond it) and 95% CL lower limits; for more classes
    the one-vs-rest AUCs. ``task`` needs ``energy_gev`` (range), ``n_classes``, ``class_names`` and
    ``working_points`` (a :class:`pcloud.bench.singles.tasks.SinglesTask` or anything with those attributes). The
    signal score is returned under ``"_score"``."""
    out: dict = {}
    pred = proba.argmax(1)
    out["accuracy"] = float((pred == label).mean())
    e_bins = np.linspace(task.energy_gev[0], task.energy_gev[1], 6) if task.energy_gev[1] > task.energy_gev[0] \
        else np.array([task.energy_gev[0] - 1, task.energy_gev[0] + 1])
    acc_e = mc_bins(label, pred, energy, e_bins)
    eta_bins = np.quantile(eta, np.linspace(0, 1, 6)) if np.ptp(eta) > 0 else np.array([eta.min() - 1, eta.max() + 1])
    eta_bins = np.unique(eta_bins)
    out["accuracy_vs_energy"] = acc_e
    out["accuracy_vs_eta"] = mc_bins(label, pred, eta, eta_bins) if eta_bins.size > 1 else {}
    if task.n_classes == 2:
        sig = label == 0
        score = proba[:, 0]
        out["auc"] = float(mc.auc(sig, score))
        if task.working_points:
            br = mc.background_rejection(sig, score, task.working_points)
            n_sig = int(sig.sum())
            # a working point needs signal events beyond it: with n_sig (1 - eff) < 2 the efficiency is not resolved
            resolved = {f"{w:g}": n_sig * (1.0 - w) >= 2.0 for w in task.working_points}
            out["rejection"] = {k: (float(r) if resolved[k] else None)
                                for k, r in zip(resolved, br["rejection"])}
            out["rejection_err"] = {k: (float(r) if resolved[k] else None)
                                    for k, r in zip(resolved, br["rejection_err"])}
            out["rejection_lower_limit_95"] = {k: float(v) for k, v in zip(resolved, br["rejection_lower_limit_95"])
                                               if resolved[k] and np.isfinite(v)}
            out["n_signal_test"] = n_sig
            out["n_background_test"] = int((~sig).sum())
        out["_score"] = score
    else:
        ovr = mc.one_vs_rest_auc(label, proba, classes=np.arange(task.n_classes))
        out["auc_one_vs_rest"] = {task.class_names[int(k)]: float(v) for k, v in ovr["per_class"].items()}
        out["auc"] = float(ovr["macro"])
    return out


def mc_bins(label, pred, x, bins) -> dict:
    """:func:`pcloud.metrics.regression.accuracy_in_bins` as JSON-friendly lists."""
    res = mr.accuracy_in_bins(label, pred, x, bins)
    return {k: [float(v) for v in np.asarray(res[k]).ravel()] for k in res}


def energy_metrics(task, label: np.ndarray, e_true: np.ndarray, e_pred: np.ndarray) -> dict:
    """Bias, resolution and the a/sqrt(E) (+) b (+) c/E fit (GeV), per particle class and for all test events, in 8
    bins over ``task.energy_gev``; classes with fewer than 30 events are skipped (``task`` needs ``energy_gev`` and
    ``class_names``)."""
    lo, hi = task.energy_gev
    bins = np.linspace(lo, hi, 9)
    out: dict = {}
    groups = {"all": np.ones(label.size, bool)}
    groups.update({name: label == i for i, name in enumerate(task.class_names)})
    for name, m in groups.items():
        if m.sum() < 30:
            continue
        br = mr.binned_response(e_true[m], e_pred[m], bins, min_events=8)
        entry = {"e_true_mean": br["e_true_mean"].tolist(), "bias": br["bias"].tolist(),
                 "resolution": br["resolution"].tolist(), "resolution_err": br["resolution_err"].tolist(),
                 "n": br["n"].tolist()}
        try:
            fit = mr.fit_resolution(br["e_true_mean"], br["resolution"], br["resolution_err"])
            entry["fit"] = {k: float(fit[k]) for k in ("a", "b", "c", "a_err", "b_err", "c_err", "chi2")} | \
                {"ndf": int(fit["ndf"])}
        except (ValueError, RuntimeError) as e:  # too few bins with events
            entry["fit"] = {"error": str(e)}
        entry["median_relative_bias"] = float(np.median((e_pred[m] - e_true[m]) / e_true[m]))
        entry["relative_resolution_robust"] = float(mr.robust_width((e_pred[m] - e_true[m]) / e_true[m]))
        out[name] = entry
    return out


def regression_metrics(names, true: np.ndarray, pred: np.ndarray, info: dict) -> dict:
    """MAE and RMSE per auxiliary regression target, after undoing the standardisation ``info`` (``mean``, ``std``)
    of the targets (so in the targets' own units)."""
    sd, mu = np.asarray(info["std"]), np.asarray(info["mean"])
    t, p = true * sd + mu, pred * sd + mu
    return {n: {"mae": float(np.mean(np.abs(p[:, i] - t[:, i]))),
                "rmse": float(np.sqrt(np.mean((p[:, i] - t[:, i]) ** 2)))} for i, n in enumerate(names)}


def fits_by_class(en: dict) -> dict:
    """{particle: {a, b, c}} of the resolution fits that converged (pooled classes have no physical meaning)."""
    return {k: {p: v["fit"][p] for p in ("a", "b", "c")} for k, v in en.items()
            if k != "all" and "a" in v.get("fit", {})}
