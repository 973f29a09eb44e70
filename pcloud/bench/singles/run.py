"""The run of ``pcloud bench singles`` (see :mod:`pcloud.bench.singles`)."""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.splits import Splits
from ...metrics import classification as mc
from ...metrics.tasks import energy_metrics, fits_by_class, id_metrics, regression_metrics, softmax
from ...core.jsonable import to_jsonable
from ...core.showers import ShowerImages
from ...train.trainer import Trainer, select_device
from ..compute import inference_cost
from .classical import run_classical
from .config import REFERENCE, TASK_MODE, SinglesConfig
from .models import POINT_MODEL_NAMES, build, image_tensors, point_tensors
from .granularity import granularity_summary, granularity_tasks
from .occupancy import occupancy_study
from .report import headline
from .tasks import TASKS, SinglesTask, build_dataset, data_task

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
    from ...nn.losses import MultiTaskLoss

    if task.kind == "regression":
        return MultiTaskLoss(w_id=0.0, w_energy=0.0, w_regression=1.0, regression_loss="mae")
    if task.kind == "id+energy":
        return MultiTaskLoss(w_id=1.0, w_energy=20.0, energy_loss="relative_mse")
    return MultiTaskLoss(w_id=1.0, w_energy=0.0)


def _select(d: dict, idx: np.ndarray) -> dict:
    it = torch.as_tensor(idx, dtype=torch.int64)
    return {k: v[it] for k, v in d.items()}


# ------------------------------------------------------------------------------------------------ the run
def run_task(task: SinglesTask, cfg: SinglesConfig, device: torch.device, out: Path) -> dict:
    """One task: data and splits, the learned models, the classical baselines, the comparisons."""
    t0 = time.perf_counter()
    d = _prepare_task(task, cfg, out)
    res = d.res
    histories, scores = _learned_models(task, cfg, device, out, d)
    _time_to_target(res, histories)
    run_classical(task, d.showers, d.idx, d.label, d.e_true, d.eta_test, res, scores, d.reg_info, d.targets, log=_log)
    if d.n_classes == 2 and task.working_points:
        _relative_rejections(res)
        res["paired_point_vs_dense"] = paired_point_vs_dense(task, res["models"], scores, d.label)
        np.savez_compressed(out / f"scores_{task.name}.npz", label=d.label, energy_gev=d.e_true,
                            event_number=d.showers.truth["event_number"][d.test],
                            **{f"score_{k}": v for k, v in scores.items() if v is not None})
    res["_scores"] = scores
    res["_test_label"] = d.label
    res["_test_energy"] = d.e_true
    res["seconds"] = time.perf_counter() - t0
    return res


@dataclass
class _TaskData:
    """The showers of a task, their splits and the tensors every model of the task trains on."""

    showers: ShowerImages
    idx: dict
    targets: dict
    reg_info: dict
    points: dict
    images: dict
    res: dict
    n_classes: int

    @property
    def test(self) -> np.ndarray:
        return self.idx["test"]

    @property
    def label(self) -> np.ndarray:
        return self.showers.truth["label"][self.test]

    @property
    def e_true(self) -> np.ndarray:
        return self.showers.truth["energy_gev"][self.test]

    @property
    def eta_test(self) -> np.ndarray:
        return -np.log(np.tan(0.5 * self.showers.truth["theta_rad"][self.test]))


def _prepare_task(task: SinglesTask, cfg: SinglesConfig, out: Path) -> _TaskData:
    """Simulate (or select) the task's showers, split them by event number (saved), build the tensors."""
    t0 = time.perf_counter()
    if task.showers is not None:
        mode, showers = "file", task.showers
        _log(f"[{task.name}] {showers.n_events} showers given ({task.description})")
    else:
        mode = TASK_MODE[task.geometry]
        _log(f"[{task.name}] simulating {cfg.n_per_class} showers per class ({task.geometry}, {mode} mode)")
        showers = build_dataset(task, cfg.n_per_class, cfg.seed, mode=mode, log=_log)
    splits = Splits({"train": 0.7, "val": 0.15, "test": 0.15},
                    seed=cfg.seed if cfg.split_seed is None else cfg.split_seed)
    ev = showers.truth["event_number"]
    splits.save(out / f"splits_{task.name}.json", ev)
    idx = {k: np.nonzero(splits.mask(ev, k))[0] for k in ("train", "val", "test")}
    train_mask = splits.mask(ev, "train")
    res: dict = {"description": task.description, "geometry": task.geometry, "mode": mode,
                 "classes": task.class_names, "selection": task.selection_text, "kind": task.kind,
                 "energy_gev": list(task.energy_gev), "n_events": {k: int(v.size) for k, v in idx.items()},
                 "simulation_seconds": time.perf_counter() - t0, "models": {}}
    targets, reg_info = _targets(showers, task, train_mask)
    pts, pinfo = point_tensors(showers, train_mask, cfg.threshold_mev / 1000.0, cfg.max_points)
    res["point_cloud"] = pinfo
    return _TaskData(showers=showers, idx=idx, targets=targets, reg_info=reg_info, points=pts,
                     images=image_tensors(showers), res=res,
                     n_classes=task.n_classes if task.kind != "regression" else 0)


def _learned_models(task: SinglesTask, cfg: SinglesConfig, device: torch.device, out: Path, d: _TaskData):
    """Train and measure every learned model on the task's splits; returns (histories, test scores)."""
    regress_energy = task.kind == "id+energy"
    n_targets = len(task.regression_targets)
    histories, scores = {}, {}
    test = d.test
    for name in cfg.models:
        tm = time.perf_counter()
        torch.manual_seed(cfg.seed)
        model = build(name, d.showers.geometry, d.n_classes, regress_energy, n_targets,
                      len(d.showers.geometry.sections), cfg.small_models)
        data = {**d.targets, **(d.points if name in POINT_MODEL_NAMES else d.images)}
        trainer = Trainer(model, _loss(task), run_dir=out / "runs" / task.name / name, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience, device=str(device),
                          seed=cfg.seed, max_minutes=cfg.max_minutes_per_model, log=None,
                          settings=_run_settings(task, cfg, name), optimizer=cfg.optimizer, schedule=cfg.schedule,
                          warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                          schedule_time=cfg.max_minutes_per_model is not None)
        result = trainer.fit(_select(data, d.idx["train"]), _select(data, d.idx["val"]), resume=cfg.resume)
        pred = trainer.predict(_select(data, test))
        entry: dict = {"family": "point" if name in POINT_MODEL_NAMES else "dense",
                       "n_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                       "train_seconds": float(result.seconds), "epochs": int(result.epochs_run),
                       "best_epoch": int(result.best_epoch), "best_val_loss": float(result.best_val_loss)}
        if d.n_classes:
            m = id_metrics(task, d.label, softmax(pred["logits"]), d.e_true, d.eta_test)
            scores[name] = m.pop("_score", None)
            entry.update(m)
        if regress_energy:
            en = energy_metrics(task, d.label, d.e_true, pred["energy"])
            entry["energy"] = en
            entry["resolution_fit"] = fits_by_class(en)
        if n_targets:
            entry["regression"] = regression_metrics(task.regression_targets,
                                                     d.targets["regression"][test].numpy(), pred["regression"],
                                                     d.reg_info)
        entry.update(inference_cost(model, _select(data, test[:cfg.batch_size]), device))
        histories[name] = result.history
        d.res["models"][name] = entry
        _log(f"[{task.name}] {name:<16} {headline(entry)}  ({time.perf_counter() - tm:.0f} s)")
    return histories, scores


def _run_settings(task: SinglesTask, cfg: SinglesConfig, name: str) -> dict:
    """What a checkpoint of this model must have been trained with to be resumed (``--resume``)."""
    return {"task": task.name, "model_name": name, "n_per_class": cfg.n_per_class, "threshold_mev": cfg.threshold_mev,
            "max_points": cfg.max_points, "small_models": bool(cfg.small_models), "split_seed": cfg.split_seed,
            "data": list(cfg.data), "quick": bool(cfg.quick)}


def _time_to_target(res: dict, histories: dict) -> None:
    """Training time to a validation loss that every learned model reached."""
    if not histories:
        return
    target = max(min(h["val_loss"] for h in hist) for hist in histories.values())
    res["target_val_loss"] = float(target)
    for name, hist in histories.items():
        hit = [h["seconds"] for h in hist if h["val_loss"] <= target + 1e-12]
        res["models"][name]["time_to_target_s"] = float(hit[0]) if hit else None


def _relative_rejections(res: dict) -> None:
    """Rejection change (%) relative to the shower-shape FCN, where both rejections are measured."""
    if REFERENCE not in res["models"]:
        return
    ref = res["models"][REFERENCE]["rejection"]
    for entry in res["models"].values():
        if "rejection" in entry:  # only where both rejections are measured (finite, resolved)
            entry["relative_rejection_pct"] = {
                w: (float(100.0 * mc.relative_rejection(entry["rejection"][w], ref[w]))
                    if entry["rejection"][w] is not None and ref[w] is not None
                    and math.isfinite(entry["rejection"][w]) and math.isfinite(ref[w]) else None) for w in ref}


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


# ------------------------------------------------------------------------------------------------ entry point
def run_singles(cfg: SinglesConfig) -> dict:
    from ...plots import performance as pp
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
    tasks = {"data": data_task(cfg.data, cfg.xml, cfg.n_per_class, log=_log)} if cfg.data else TASKS
    for name in cfg.tasks:
        r = run_task(tasks[name], cfg, device, out)
        raw[name] = {k: r.pop(k) for k in ("_scores", "_test_label", "_test_energy")}
        results["tasks"][name] = r
        _write_json(out / "results.json", results)  # partial results survive an interruption
    if cfg.granularity_study:
        n = cfg.granularity_n_per_class or min(cfg.n_per_class or 4000, 4000)
        for task in granularity_tasks(n, cfg.seed, log=_log):
            r = run_task(task, cfg, device, out)
            raw[task.name] = {k: r.pop(k) for k in ("_scores", "_test_label", "_test_energy")}
            results["tasks"][task.name] = r
            _write_json(out / "results.json", results)
        results["granularity"] = granularity_summary(results["tasks"])
    if cfg.occupancy_study:
        results["occupancy"] = occupancy_study(cfg, device, log=_log)
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


def _write_json(path: Path, obj) -> None:
    from ...core.atomic import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(to_jsonable(obj, nonfinite="string"), indent=1))
