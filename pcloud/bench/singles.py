"""``pcloud bench singles``: sparse point-cloud models against dense CNNs and shower-shape baselines.

For every task of :mod:`pcloud.bench.tasks` the same simulated showers are split by event number (seeded, saved as
``splits_<task>.json``) and every model is trained on the training split, early-stopped on the validation split and
measured on the test split:

* ID: ROC, AUC, background rejection 1/FPR (with binomial error) at the task's signal-efficiency working points,
  relative rejection change w.r.t. the shower-shape FCN (seed 004 Tables 3-4), accuracy vs energy and eta;
* energy (joint ID + energy tasks): bias and resolution vs true energy per particle type with the fit
  sigma/E = a/sqrt(E) (+) b (+) c/E;
* angles/position (regression task): MAE and RMSE per target;
* compute: trainable parameters, inference events/s and peak tensor memory for a batch of 128 test events,
  training time and time to reach a fixed validation loss (the loss every learned model of the task reaches).

A separate occupancy study measures inference cost of point vs dense models as the cell threshold (points per
event) and the ECAL granularity change (models untrained: cost does not depend on the weights).

Outputs in ``--out``: ``results.json``, ``report.md``, ``splits_<task>.json`` and PNG plots.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.splits import Splits
from ..metrics import classification as mc
from ..metrics import regression as mr
from ..showers import ShowerImages
from ..train.trainer import Trainer, select_device
from .compute import peak_memory_mb, throughput
from .models import DENSE_MODELS, POINT_MODELS, build, image_tensors, point_tensors
from .tasks import TASKS, SinglesTask, build_dataset

CLASSICAL_ID = ("ss_fcn", "ss_gbt")
CLASSICAL_ENERGY = ("linear", "tree_regression")
REFERENCE = "ss_fcn"


@dataclass
class SinglesConfig:
    out: str = "out/bench_singles"
    quick: bool = False
    device: str = "auto"
    seed: int = 1
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    models: list[str] = field(default_factory=lambda: list(POINT_MODELS + DENSE_MODELS))
    n_per_class: int | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 5
    threshold_mev: float = 0.0
    max_points: int | None = None
    occupancy_study: bool = True
    max_minutes_per_model: float | None = None
    split_seed: int | None = None
    #: continue every model from its ``runs/<task>/<model>/last.pt`` checkpoint (the data are regenerated
    #: identically from the seed)
    resume: bool = False
    #: CPU-sized model widths (default: on in quick mode); full widths follow the papers more closely
    small_models: bool | None = None

    def resolved(self) -> "SinglesConfig":
        c = SinglesConfig(**asdict(self))
        for k in ("n_per_class", "epochs", "max_points"):
            v = getattr(c, k)
            if v is not None and v <= 0:
                raise ValueError(f"{k} must be a positive integer, got {v}")
        c.n_per_class = c.n_per_class or (700 if c.quick else 20000)
        c.epochs = c.epochs or (8 if c.quick else 40)
        c.max_points = c.max_points or (96 if c.quick else 384)
        if c.max_minutes_per_model is None and c.quick:
            c.max_minutes_per_model = 1.5
        if c.small_models is None:
            c.small_models = c.quick
        unknown = [t for t in c.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
        bad = [m for m in c.models if m not in POINT_MODELS + DENSE_MODELS]
        if bad:
            raise ValueError(f"unknown model(s) {bad}; known: {list(POINT_MODELS + DENSE_MODELS)}")
        return c


TASK_MODE = {"calogan": "total", "clic": "visible", "cms": "visible"}

#: config keys (pcloud.train.config layout) -> SinglesConfig fields
_CONFIG_KEYS = {("seed",): "seed", ("device",): "device", ("train", "epochs"): "epochs",
                ("train", "batch_size"): "batch_size", ("train", "lr"): "lr", ("train", "patience"): "patience",
                ("split", "seed"): "split_seed"}


def config_from_dict(cfg: dict) -> SinglesConfig:
    """A :class:`SinglesConfig` from a nested config (``pcloud/configs/singles.yaml`` layout: top-level ``seed``,
    ``device``, ``train.*``, ``split.seed`` and the ``singles`` section with the remaining fields). Unknown keys in
    ``singles`` are an error naming the key; ``null`` values keep the mode's defaults."""
    out = SinglesConfig()
    fields = set(asdict(out))
    for path, name in _CONFIG_KEYS.items():
        node = cfg
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if node is not None and name in fields:
            setattr(out, name, node)
    for k, v in (cfg.get("singles") or {}).items():
        if k not in fields:
            raise ValueError(f"config: unknown key singles.{k}; known: {sorted(fields)}")
        if v is not None:
            setattr(out, k, list(v) if isinstance(v, (list, tuple)) else v)
    return out


def _log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------------ tensors & loss
def _targets(showers: ShowerImages, task: SinglesTask, train: np.ndarray) -> tuple[dict, dict]:
    t = {"label": torch.as_tensor(showers.truth["label"], dtype=torch.int64),
         "energy_gev": torch.as_tensor(showers.truth["energy_gev"], dtype=torch.float32)}
    sec = showers.section_energy()
    t["g"] = torch.as_tensor(np.stack([sec[s.name] for s in showers.geometry.sections], 1), dtype=torch.float32)
    info = {}
    if task.regression_targets:
        r = np.stack([np.asarray(showers.truth[k], np.float64) for k in task.regression_targets], 1)
        mu, sd = r[train].mean(0), r[train].std(0) + 1e-12
        t["regression"] = torch.as_tensor((r - mu) / sd, dtype=torch.float32)
        info = {"mean": mu.tolist(), "std": sd.tolist(), "names": list(task.regression_targets)}
    return t, info


def _loss(task: SinglesTask):
    from ..nn.heads import MultiTaskLoss

    if task.kind == "regression":
        return MultiTaskLoss(w_id=0.0, w_energy=0.0, w_regression=1.0, regression_loss="mae")
    if task.kind == "id+energy":
        return MultiTaskLoss(w_id=1.0, w_energy=20.0, energy_loss="relative_mse")
    return MultiTaskLoss(w_id=1.0, w_energy=0.0)


def _select(d: dict, idx: np.ndarray) -> dict:
    it = torch.as_tensor(idx, dtype=torch.int64)
    return {k: v[it] for k, v in d.items()}


# ------------------------------------------------------------------------------------------------ metrics
def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def id_metrics(task: SinglesTask, label: np.ndarray, proba: np.ndarray, energy: np.ndarray, eta: np.ndarray) -> dict:
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
    res = mr.accuracy_in_bins(label, pred, x, bins)
    return {k: [float(v) for v in np.asarray(res[k]).ravel()] for k in res}


def energy_metrics(task: SinglesTask, label: np.ndarray, e_true: np.ndarray, e_pred: np.ndarray) -> dict:
    """Bias, resolution and the a/sqrt(E) (+) b (+) c/E fit, per particle class and for all test events."""
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
    sd, mu = np.asarray(info["std"]), np.asarray(info["mean"])
    t, p = true * sd + mu, pred * sd + mu
    return {n: {"mae": float(np.mean(np.abs(p[:, i] - t[:, i]))),
                "rmse": float(np.sqrt(np.mean((p[:, i] - t[:, i]) ** 2)))} for i, n in enumerate(names)}


# ------------------------------------------------------------------------------------------------ the run
def _cost(model, batch: dict, device: torch.device) -> dict:
    model.eval()
    b = {k: v.to(device) for k, v in batch.items()}
    n = int(next(iter(batch.values())).shape[0])
    with torch.no_grad():
        eps = throughput(lambda: model(b), n, device=device, min_seconds=0.3, max_repeats=20)
        mem = peak_memory_mb(lambda: model(b), device=device)
    return {"events_per_s": float(eps), "peak_memory_mb": float(mem), "cost_batch": n}


def run_task(task: SinglesTask, cfg: SinglesConfig, device: torch.device, out: Path) -> dict:
    t0 = time.perf_counter()
    mode = TASK_MODE[task.geometry]
    _log(f"[{task.name}] simulating {cfg.n_per_class} showers per class ({task.geometry}, {mode} mode)")
    showers = build_dataset(task, cfg.n_per_class, cfg.seed, mode=mode, log=_log)
    splits = Splits({"train": 0.7, "val": 0.15, "test": 0.15},
                    seed=cfg.seed if cfg.split_seed is None else cfg.split_seed)
    ev = showers.truth["event_number"]
    splits.save(out / f"splits_{task.name}.json", ev)
    idx = {k: np.nonzero(splits.mask(ev, k))[0] for k in ("train", "val", "test")}
    train_mask = splits.mask(ev, "train")
    sim_s = time.perf_counter() - t0
    res: dict = {"description": task.description, "geometry": task.geometry, "mode": mode,
                 "classes": task.class_names, "selection": task.selection_text, "kind": task.kind,
                 "energy_gev": list(task.energy_gev), "n_events": {k: int(v.size) for k, v in idx.items()},
                 "simulation_seconds": sim_s, "models": {}}
    targets, reg_info = _targets(showers, task, train_mask)
    thr = cfg.threshold_mev / 1000.0
    pts, pinfo = point_tensors(showers, train_mask, thr, cfg.max_points)
    res["point_cloud"] = pinfo
    imgs = image_tensors(showers)
    test = idx["test"]
    label = showers.truth["label"][test]
    e_true = showers.truth["energy_gev"][test]
    eta_test = -np.log(np.tan(0.5 * showers.truth["theta_rad"][test]))
    regress_energy = task.kind == "id+energy"
    n_targets = len(task.regression_targets)
    n_classes = task.n_classes if task.kind != "regression" else 0
    histories = {}
    scores = {}
    for name in cfg.models:
        tm = time.perf_counter()
        torch.manual_seed(cfg.seed)
        model = build(name, showers.geometry, n_classes, regress_energy, n_targets, len(showers.geometry.sections),
                      cfg.small_models)
        data = {**targets, **(pts if name in POINT_MODELS else imgs)}
        trainer = Trainer(model, _loss(task), run_dir=out / "runs" / task.name / name, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience, device=str(device),
                          seed=cfg.seed, max_minutes=cfg.max_minutes_per_model, log=None)
        result = trainer.fit(_select(data, idx["train"]), _select(data, idx["val"]), resume=cfg.resume)
        pred = trainer.predict(_select(data, test))
        entry: dict = {"family": "point" if name in POINT_MODELS else "dense",
                       "n_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                       "train_seconds": float(result.seconds), "epochs": int(result.epochs_run),
                       "best_epoch": int(result.best_epoch), "best_val_loss": float(result.best_val_loss)}
        if n_classes:
            m = id_metrics(task, label, _softmax(pred["logits"]), e_true, eta_test)
            scores[name] = m.pop("_score", None)
            entry.update(m)
        if regress_energy:
            en = energy_metrics(task, label, e_true, pred["energy"])
            entry["energy"] = en
            entry["resolution_fit"] = _fits_by_class(en)
        if n_targets:
            entry["regression"] = regression_metrics(task.regression_targets, targets["regression"][test].numpy(),
                                                     pred["regression"], reg_info)
        entry.update(_cost(model, _select(data, test[:cfg.batch_size]), device))
        histories[name] = result.history
        res["models"][name] = entry
        _log(f"[{task.name}] {name:<16} {_headline(entry)}  ({time.perf_counter() - tm:.0f} s)")
    # time to a validation loss that every learned model reached
    if histories:
        target = max(min(h["val_loss"] for h in hist) for hist in histories.values())
        res["target_val_loss"] = float(target)
        for name, hist in histories.items():
            hit = [h["seconds"] for h in hist if h["val_loss"] <= target + 1e-12]
            res["models"][name]["time_to_target_s"] = float(hit[0]) if hit else None
    _classical(task, showers, idx, label, e_true, eta_test, res, scores, reg_info, targets)
    if n_classes == 2 and REFERENCE in res["models"] and task.working_points:
        ref = res["models"][REFERENCE]["rejection"]
        for name, entry in res["models"].items():
            if "rejection" in entry:  # only where both rejections are measured (finite, resolved)
                entry["relative_rejection_pct"] = {
                    w: (float(100.0 * mc.relative_rejection(entry["rejection"][w], ref[w]))
                        if entry["rejection"][w] is not None and ref[w] is not None
                        and math.isfinite(entry["rejection"][w]) and math.isfinite(ref[w]) else None) for w in ref}
    if n_classes == 2 and task.working_points:
        res["paired_point_vs_dense"] = paired_point_vs_dense(task, res["models"], scores, label)
        np.savez_compressed(out / f"scores_{task.name}.npz", label=label, energy_gev=e_true,
                            event_number=showers.truth["event_number"][test],
                            **{f"score_{k}": v for k, v in scores.items() if v is not None})
    res["_scores"] = scores
    res["_test_label"] = label
    res["_test_energy"] = e_true
    res["seconds"] = time.perf_counter() - t0
    return res


def paired_point_vs_dense(task: SinglesTask, models: dict, scores: dict, label: np.ndarray,
                          n_boot: int = 500) -> dict | None:
    """Rejection difference best point model - best dense model (by AUC) at the task's working points, with the
    paired bootstrap error of :func:`pcloud.metrics.classification.paired_rejection_difference` (same test events
    for both). None when either family is missing."""
    best = {}
    for fam in ("point", "dense"):
        cand = [k for k, m in models.items() if m.get("family") == fam and "auc" in m and scores.get(k) is not None]
        if not cand:
            return None
        best[fam] = max(cand, key=lambda k: models[k]["auc"])
    sig = label == 0
    r = mc.paired_rejection_difference(sig, scores[best["point"]], scores[best["dense"]], task.working_points,
                                       n_boot=n_boot, seed=0)
    keys = [f"{w:g}" for w in task.working_points]
    resolved = {k: models[best["point"]]["rejection"].get(k) is not None for k in keys}

    out: dict = {"point": best["point"], "dense": best["dense"], "n_boot": n_boot}
    for name, src in (("difference", "difference"), ("bootstrap_std", "bootstrap_std"),
                      ("fraction_point_better", "fraction_a_better")):
        out[name] = {k: float(v) if resolved[k] and np.isfinite(v) else None for k, v in zip(keys, r[src])}
    return out


def _classical(task, showers, idx, label, e_true, eta_test, res, scores, reg_info, targets):
    from ..baselines.linear import LinearEnergyRegression, linear_inputs
    from ..baselines.shower_shape_models import FCNClassifier
    from ..baselines.trees import EnergyTreeRegression, GBTClassifier, GBTRegressor
    from ..features.shower_shapes import energy_regression_features, shower_shapes

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
            _log(f"[{task.name}] {name:<16} {_headline(res['models'][name])}")
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
                     "energy": en, "resolution_fit": _fits_by_class(en)}
            res["models"][name] = entry
            _log(f"[{task.name}] {name:<16} {_headline(entry)}")
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
        _log(f"[{task.name}] {'ss_gbt':<16} {_headline(res['models']['ss_gbt'])}")


def _fits_by_class(en: dict) -> dict:
    """{particle: {a, b, c}} of the resolution fits that converged (pooled classes have no physical meaning)."""
    return {k: {p: v["fit"][p] for p in ("a", "b", "c")} for k, v in en.items()
            if k != "all" and "a" in v.get("fit", {})}


def _headline(e: dict) -> str:
    parts = []
    if "auc" in e:
        parts.append(f"AUC {e['auc']:.4f}")
    if "accuracy" in e:
        parts.append(f"acc {e['accuracy']:.3f}")
    for cls, f in e.get("resolution_fit", {}).items():
        parts.append(f"{cls} sigma/E: a={f['a']:.3f} b={f['b']:.3f} c={f['c']:.2f}")
    if "regression" in e:
        parts.append(" ".join(f"{k}:MAE={v['mae']:.3g}" for k, v in e["regression"].items()))
    if "events_per_s" in e:
        parts.append(f"{e['events_per_s']:.0f} ev/s")
    if "peak_memory_mb" in e:
        parts.append(f"{e['peak_memory_mb']:.1f} MB")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------ occupancy study
def occupancy_study(cfg: SinglesConfig, device: torch.device) -> dict:
    """Inference cost vs points per event (threshold scan, CaloGAN e+) and vs ECAL granularity (CLIC 25 vs 51)."""
    from ..geometry import get_geometry
    from ..sim.showers import simulate_showers

    n = 128
    out: dict = {"threshold_scan": [], "granularity": []}
    g = get_geometry("calogan")
    sh = simulate_showers(g, "e+", n, energy_gev=(1.0, 100.0), seed=cfg.seed + 7, spread=True)   # as the e_vs_* tasks
    sh.truth["label"] = np.zeros(n, np.int64)
    train = np.ones(n, bool)
    dense_cost = {}
    for name in DENSE_MODELS:
        if name in cfg.models:
            m = build(name, g, 2, False, 0, 3, cfg.small_models).to(device)
            dense_cost[name] = _cost(m, image_tensors(sh), device)
    for thr_mev in (0.0, 1.0, 10.0, 100.0):
        pts, info = point_tensors(sh, train, thr_mev / 1000.0, 100000)
        row = {"threshold_mev": thr_mev, "points_per_event_mean": info["points_per_event_mean"],
               "points_per_event_max": info["points_per_event_max"], "models": {}}
        for name in POINT_MODELS:
            if name in cfg.models:
                m = build(name, g, 2, False, 0, 3, cfg.small_models).to(device)
                row["models"][name] = _cost(m, {**pts, "g": torch.zeros(n, 3)}, device)
        row["models"].update(dense_cost)
        out["threshold_scan"].append(row)
        _log(f"[occupancy] threshold {thr_mev:g} MeV: {info['points_per_event_mean']:.0f} points/event")
    for cells in (25, 51):
        gc = get_geometry("clic", ecal_cells=cells)
        sc = simulate_showers(gc, "e-", 64, energy_gev=(10.0, 100.0), mode="visible", seed=cfg.seed + 11)
        pts, info = point_tensors(sc, np.ones(64, bool), 0.0, 100000)
        row = {"ecal_cells": cells, "n_cells": gc.n_cells, "points_per_event_mean": info["points_per_event_mean"],
               "models": {}}
        for name in cfg.models:
            if name == "upsample_cnn":
                continue  # its common grid is capped (max_cells), so it does not follow the granularity
            m = build(name, gc, 2, False, 0, 2, cfg.small_models).to(device)
            data = {**pts, "g": torch.zeros(64, 2)} if name in POINT_MODELS else image_tensors(sc)
            row["models"][name] = _cost(m, data, device)
        out["granularity"].append(row)
        _log(f"[occupancy] clic ECAL {cells}x{cells}: {info['points_per_event_mean']:.0f} points/event")
    return out


# ------------------------------------------------------------------------------------------------ entry point
def run_singles(cfg: SinglesConfig) -> dict:
    from ..plots import performance as pp
    from .report import write_singles_report

    cfg = cfg.resolved()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(cfg.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    _log(f"pcloud bench singles: {'quick' if cfg.quick else 'full'} mode on {device}, tasks {cfg.tasks}, "
         f"output {out}")
    results: dict = {"tasks": {}, "config": asdict(cfg), "device": _device_text(device)}
    raw: dict = {}
    for name in cfg.tasks:
        r = run_task(TASKS[name], cfg, device, out)
        raw[name] = {k: r.pop(k) for k in ("_scores", "_test_label", "_test_energy")}
        results["tasks"][name] = r
        _write_json(out / "results.json", results)  # partial results survive an interruption
    if cfg.occupancy_study:
        results["occupancy"] = occupancy_study(cfg, device)
    results["seconds"] = time.perf_counter() - t0
    results["plots"] = pp.singles_plots(results, raw, out)
    _write_json(out / "results.json", results)
    write_singles_report(results, out / "report.md")
    _log(f"wrote {out / 'report.md'}, {out / 'results.json'} and {len(results['plots'])} plots "
         f"in {results['seconds'] / 60:.1f} min")
    return results


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(o, np.integer):
        return int(o)
    return o


def _write_json(path: Path, obj) -> None:
    from ..io.atomic import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(_clean(obj), indent=1))
