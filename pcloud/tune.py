"""``pcloud tune CONFIG --trials N``: hyper-parameter scans of ``pcloud train`` with optuna.

The scan file (``pcloud/configs/tune.yaml`` documents every key) names a base recipe, a search space over recipe
keys (``train.lr``, ``model.options.k``, ``data.max_points``...), the objective (the best validation loss, or a
metric of the test-split results such as ``auc``) and the pruner. Each trial trains a bundle in
``OUT/trial_<n>`` (``OUT/trial_<n>/seed_<s>`` with ``--repeat K``: K seeds, the objective is their mean and the
spread is kept in the trial's attributes ``values``/``std``, seed 001 §5's "every number with its spread").

* Sampler: optuna's TPE, seeded (``--seed``), so a scan is reproducible.
* Pruning: after every epoch of the first seed the validation loss is reported to optuna; the median pruner stops
  trials worse than the median of earlier trials at the same epoch (after 3 complete trials and one epoch).
* Resumable: the study lives in a sqlite file (``OUT/study.sqlite3`` or ``--study``); running the command again
  adds ``--trials`` trials to it (the study's name is fixed, its settings are checked against the file's).

Results: ``OUT/summary.json`` and ``OUT/summary.md`` (best parameters and value, every trial with its state).
Needs the ``tune`` extra (optuna).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import yaml

from .core.atomic import atomic_output

STUDY_NAME = "pcloud-tune"


def load_scan(path) -> dict:
    scan = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(scan, dict) or not isinstance(scan.get("space"), dict) or not scan["space"]:
        raise ValueError(f"{path}: a scan file needs a 'space' mapping (recipe key -> {{type, low, high...}})")
    scan.setdefault("base", [])
    scan.setdefault("metric", "val_loss")
    scan.setdefault("direction", "minimize")
    scan.setdefault("pruner", "median")
    if scan["direction"] not in ("minimize", "maximize"):
        raise ValueError(f"{path}: direction must be minimize or maximize, found {scan['direction']!r}")
    for key, spec in scan["space"].items():
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise ValueError(f"{path}: space.{key}: expected {{type: float|int|categorical, ...}}, found {spec!r}")
    return scan


def suggest(trial, space: dict) -> dict:
    """Parameters of one trial from the search space."""
    out = {}
    for key, s in space.items():
        if s["type"] == "float":
            out[key] = trial.suggest_float(key, float(s["low"]), float(s["high"]), log=bool(s.get("log", False)))
        elif s["type"] == "int":
            out[key] = trial.suggest_int(key, int(s["low"]), int(s["high"]), log=bool(s.get("log", False)))
        else:
            out[key] = trial.suggest_categorical(key, list(s["choices"]))
    return out


def _metric(res: dict, bundle_dir: Path, metric: str) -> float:
    if metric == "val_loss":
        return float(json.loads((bundle_dir / "bundle.json").read_text())["training"]["best_val_loss"])
    node = res.get("metrics", {})
    for part in metric.split("."):
        node = node[part]
    return float(node)


def tune(config, trials: int, data=(), study=None, out="scan", repeat: int = 1, overrides=(), timeout_min=None,
         seed: int = 1, log=print) -> dict:
    """Run ``trials`` more trials of the scan ``config`` (module docstring); returns the summary."""
    try:
        import optuna
    except ImportError as err:
        raise ImportError("pcloud tune needs the tune extra: pip install 'pcloud[tune]' (optuna)") from err
    from .pipeline.config import run_config
    from .pipeline.train import train

    scan = load_scan(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{Path(study or out / 'study.sqlite3').resolve()}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if scan["pruner"] == "median" \
        else optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True,
                             direction=scan["direction"], sampler=optuna.samplers.TPESampler(seed=seed),
                             pruner=pruner)
    if st.direction.name.lower() != scan["direction"]:
        raise ValueError(f"{storage}: the stored study minimises/maximises otherwise ({st.direction.name}); use "
                         f"another --study")

    def objective(trial):
        params = suggest(trial, scan["space"])
        sets = list(scan["base"]) + list(overrides) + [f"{k}={v}" for k, v in params.items()]
        values = []
        base_seed = None
        for r in range(repeat):
            cfg = run_config(scan.get("recipe"), sets, data=list(data))
            base_seed = cfg.seed if base_seed is None else base_seed
            cfg.seed = base_seed + r
            folder = out / f"trial_{trial.number}" / (f"seed_{cfg.seed}" if repeat > 1 else "")

            def report(rec, first=(r == 0)):
                if first:
                    trial.report(float(rec["val_loss"]), int(rec["epoch"]))
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            res = train(cfg, folder, log=lambda s: None, on_epoch=report)
            values.append(_metric(res, folder, scan["metric"]))
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) if len(values) > 1 else 0.0
        trial.set_user_attr("values", values)
        trial.set_user_attr("std", std)
        log(f"[tune] trial {trial.number}: {scan['metric']} {mean:.4g}" + (f" +- {std:.2g}" if repeat > 1 else "")
            + f" {params}")
        return mean

    t0 = time.perf_counter()
    st.optimize(objective, n_trials=int(trials), timeout=None if timeout_min is None else 60 * timeout_min,
                catch=())
    return write_summary(st, out, scan, time.perf_counter() - t0, storage)


def write_summary(st, out: Path, scan: dict, seconds: float, storage: str) -> dict:
    import optuna

    done = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in st.trials if t.state == optuna.trial.TrialState.PRUNED]
    best = st.best_trial if done else None
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "std": t.user_attrs.get("std"),
             "params": t.params, "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
             if t.datetime_complete and t.datetime_start else None} for t in st.trials]
    summary = {"study": storage, "metric": scan["metric"], "direction": scan["direction"],
               "n_trials": len(st.trials), "n_complete": len(done), "n_pruned": len(pruned),
               "best_trial": None if best is None else best.number,
               "best_value": float("nan") if best is None else best.value,
               "best_std": None if best is None else best.user_attrs.get("std"),
               "best_params": {} if best is None else best.params, "seconds_this_run": seconds, "trials": rows}
    with atomic_output(out / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    keys = list(scan["space"])
    lines = [f"# pcloud tune: {scan['metric']} ({scan['direction']})", "",
             f"{len(st.trials)} trials ({len(done)} complete, {len(pruned)} pruned); best trial "
             f"{summary['best_trial']}: {summary['best_value']:.4g} with {summary['best_params']}", "",
             "| trial | state | value | " + " | ".join(keys) + " |", "|" + "---|" * (3 + len(keys))]
    for r in rows:
        v = "" if r["value"] is None else f"{r['value']:.4g}"
        lines.append(f"| {r['trial']} | {r['state']} | {v} | " + " | ".join(
            f"{r['params'].get(k):.3g}" if isinstance(r["params"].get(k), float) else str(r["params"].get(k))
            for k in keys) + " |")
    with atomic_output(out / "summary.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return summary
