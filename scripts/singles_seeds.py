"""Several runs (seeds) of one ``pcloud bench singles`` task side by side: AUC per model as mean and sample standard
deviation over the runs, and the paired comparison best point model - best dense CNN at every working point
(``paired_point_vs_dense`` of each run: rejection difference on the run's own test events with its paired bootstrap
error) with the combined difference over the runs.

Combination: the runs are independent (each has its own simulated showers, splits and training), so the mean of the
per-run differences has the error sqrt(sum sigma_i^2) / n (sigma_i: the run's bootstrap standard deviation), and the
spread between the runs (sample std) is reported beside it; "at or above" at a working point means the combined
difference is > -1 of its errors. Usage::

    python scripts/singles_seeds.py out/large/seed*/e_vs_gamma/results.json [--task e_vs_gamma] [--out summary.md]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def load_runs(paths, task: str | None = None) -> tuple[str, list[dict]]:
    """The task results of every ``results.json`` (the task given, or the only one in the files)."""
    runs, name = [], task
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{p}: expected the results.json of a pcloud bench singles run: {err}") from None
        tasks = (r.get("tasks") if isinstance(r, dict) else None) or {}
        if name is None:
            if len(tasks) != 1:
                raise ValueError(f"{p}: holds tasks {sorted(tasks)}; choose one with --task")
            name = next(iter(tasks))
        if name not in tasks:
            raise ValueError(f"{p}: no task {name!r} (found {sorted(tasks)})")
        runs.append({"path": str(p), "seed": (r.get("config") or {}).get("seed"), "device": r.get("device"),
                     **tasks[name]})
    if len(runs) < 2:
        raise ValueError(f"need the results of at least 2 runs, found {len(runs)}")
    return name, runs


def _mean_std(values):
    n = len(values)
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan"))


def summarise(runs: list[dict]) -> dict:
    """AUC mean / std per model present in every run; per working point the per-run paired differences and their
    combination (mean, error of the mean from the bootstrap errors, sample std between runs)."""
    models = [m for m in runs[0]["models"] if all("auc" in r["models"].get(m, {}) for r in runs)]
    auc = {m: _mean_std([r["models"][m]["auc"] for r in runs]) for m in models}
    params = {m: runs[0]["models"][m].get("n_params") for m in models}
    paired = [r.get("paired_point_vs_dense") for r in runs]
    wps, combined = [], {}
    if all(paired):
        wps = list(paired[0]["difference"])
        for w in wps:
            d = [p["difference"][w] for p in paired]
            s = [p["bootstrap_std"][w] for p in paired]
            if any(v is None for v in d + s):
                combined[w] = None
                continue
            mean = sum(d) / len(d)
            err = math.sqrt(sum(x * x for x in s)) / len(s)
            combined[w] = {"per_run": d, "per_run_std": s, "mean": mean, "error": err,
                           "spread": _mean_std(d)[1], "pulls": mean / err if err > 0 else float("inf"),
                           "at_or_above": mean > -err}
    return {"n_runs": len(runs), "seeds": [r["seed"] for r in runs], "devices": [r["device"] for r in runs],
            "auc": {m: {"mean": v[0], "std": v[1]} for m, v in auc.items()}, "params": params,
            "best": [(p or {}).get("point") for p in paired], "best_dense": [(p or {}).get("dense") for p in paired],
            "paired": combined}


def markdown(task: str, s: dict) -> str:
    lines = [f"# {task}: {s['n_runs']} runs (seeds {s['seeds']})", "",
             "| model | AUC mean | AUC std | params |", "|---|---|---|---|"]
    for m, v in sorted(s["auc"].items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"| {m} | {v['mean']:.4f} | {v['std']:.4f} | {s['params'].get(m) or '-'} |")
    lines += ["", f"Best point / dense model per run: {list(zip(s['best'], s['best_dense']))}", "",
              "| efficiency | difference per run (± bootstrap std) | combined | spread between runs | at or above |",
              "|---|---|---|---|---|"]
    for w, c in s["paired"].items():
        if c is None:
            lines.append(f"| {w} | not resolved | - | - | - |")
            continue
        per = ", ".join(f"{d:+.3f} ± {e:.3f}" for d, e in zip(c["per_run"], c["per_run_std"]))
        lines.append(f"| {w} | {per} | {c['mean']:+.3f} ± {c['error']:.3f} | {c['spread']:.3f} | "
                     f"{'yes' if c['at_or_above'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="results.json of each run")
    ap.add_argument("--task", default=None)
    ap.add_argument("--out", default=None, help="also write the Markdown summary here")
    a = ap.parse_args(argv)
    task, runs = load_runs(a.results, a.task)
    text = markdown(task, summarise(runs))
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
