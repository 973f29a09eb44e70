"""The classical baselines of ``pcloud bench singles`` on the task's splits: shower-shape FCN and gradient-boosted
trees for identification, linear and tree energy regressions (one per particle type, seed 001 App. D), and
gradient-boosted regression of the photon angles and entry point."""
from __future__ import annotations

import time

import numpy as np

from ...baselines.linear import LinearEnergyRegression, linear_inputs
from ...baselines.shower_shape_models import FCNClassifier
from ...baselines.trees import EnergyTreeRegression, GBTClassifier, GBTRegressor
from ...features.shower_shapes import energy_regression_features, shower_shapes
from ...metrics.tasks import energy_metrics, fits_by_class, id_metrics, regression_metrics
from .report import headline


def run_classical(task, showers, idx, label, e_true, eta_test, res, scores, reg_info, targets, log=print):
    """Fit and measure the classical baselines of ``task``; entries go to ``res[\"models\"]``, ID scores to
    ``scores``."""
    tr, va, te = idx["train"], idx["val"], idx["test"]
    y = showers.truth["label"]
    if task.kind in ("id", "id+energy"):
        X, names = shower_shapes(showers, task.shape_set)
        for name, model in (("ss_fcn", FCNClassifier(seed=1, epochs=40)), ("ss_gbt", GBTClassifier(seed=1))):
            t0 = time.perf_counter()
            model.fit(X[tr], y[tr], X[va], y[va])
            fit_s = time.perf_counter() - t0
            proba = model.predict_proba(X[te])
            proba = np.column_stack([1 - proba, proba]) if proba.ndim == 1 else proba
            m = id_metrics(task, label, proba, e_true, eta_test)
            scores[name] = m.pop("_score", None)
            if name == "ss_gbt":
                scores["_ss_gbt_class"] = proba.argmax(1)
            t1 = time.perf_counter()
            model.predict_proba(X[te])
            eps = te.size / max(time.perf_counter() - t1, 1e-9)
            res["models"][name] = {"family": "classical", "inputs": f"{len(names)} shower shapes ({task.shape_set})",
                                   "n_params": int(getattr(model, "n_params", 0) or 0), "train_seconds": fit_s,
                                   "events_per_s": float(eps), **m}
            log(f"[{task.name}] {name:<16} {headline(res['models'][name])}")
    pred_class = scores.pop("_ss_gbt_class", None)
    if task.kind == "id+energy":
        XL, _ = linear_inputs(showers)
        XT, _ = energy_regression_features(showers)
        for name, make, X in (("linear", lambda: LinearEnergyRegression(), XL),
                              ("tree_regression", lambda: EnergyTreeRegression(seed=1), XT)):
            pred = np.zeros(te.size)
            n_params = 0
            t0 = time.perf_counter()
            cls_te = pred_class if pred_class is not None else y[te]
            for c in range(task.n_classes):  # seed 001 App. D: one regression per particle type
                # trained on true class c, applied to the test events *classified* as c (no truth at inference)
                mtr, mva, mte = tr[y[tr] == c], va[y[va] == c], cls_te == c
                model = make().fit(X[mtr], showers.truth["energy_gev"][mtr], X[mva], showers.truth["energy_gev"][mva])
                pred[mte] = model.predict(X[te][mte])
                n_params += int(getattr(model, "n_params", 0) or 0)
            en = energy_metrics(task, label, e_true, pred)
            entry = {"family": "classical", "n_params": n_params, "train_seconds": time.perf_counter() - t0,
                     "inputs": "one fit per particle type (seed 001 App. D), applied with the class predicted by "
                               "ss_gbt" if pred_class is not None else "one fit per particle type, true class",
                     "energy": en, "resolution_fit": fits_by_class(en)}
            res["models"][name] = entry
            log(f"[{task.name}] {name:<16} {headline(entry)}")
    if task.kind == "regression":
        X, names = shower_shapes(showers, "all")
        r = targets["regression"].numpy()
        pred = np.zeros((te.size, r.shape[1]))
        t0 = time.perf_counter()
        for j in range(r.shape[1]):
            pred[:, j] = GBTRegressor(seed=1).fit(X[tr], r[tr, j], X[va], r[va, j]).predict(X[te])
        res["models"]["ss_gbt"] = {"family": "classical", "inputs": f"{len(names)} shower shapes (all)",
                                   "train_seconds": time.perf_counter() - t0,
                                   "regression": regression_metrics(task.regression_targets, r[te], pred, reg_info)}
        log(f"[{task.name}] {'ss_gbt':<16} {headline(res['models']['ss_gbt'])}")
