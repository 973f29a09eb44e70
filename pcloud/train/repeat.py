"""``pcloud train ... --repeat K``: the same recipe trained with K seeds, every metric reported with its spread.

Seed 001 §5 quotes its results as mean and standard deviation over repeated trainings. Here the seeds are
``seed, seed + 1, ..., seed + K - 1`` (the recipe's seed, or ``--seed``); each run is a full ``pcloud train`` into
``OUT/seed_<s>`` (its own bundle, splits and results: the data split seed is the recipe's ``split.seed``, shared by
all runs, so only the initialisation and the batch order change). ``OUT/repeat.json`` holds every numeric result
of ``results.json`` as ``{"mean", "std", "values"}`` (std with ``ddof=1``) and ``OUT/repeat.md`` a table of the
scalar metrics.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from ..core.atomic import atomic_output


def _leaves(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix[:-1], float(d)


def spread(results: list[dict]) -> dict:
    """Per numeric key (dotted path) of the runs' results: mean, std (ddof=1) and values."""
    keys: dict[str, list] = {}
    for r in results:
        for k, v in _leaves(r):
            keys.setdefault(k, []).append(v)
    out = {}
    for k, vals in keys.items():
        if len(vals) != len(results):
            continue
        m = sum(vals) / len(vals)
        s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out[k] = {"mean": m, "std": s, "values": vals}
    return out


def repeat_training(args, k: int, train_cmd) -> dict:
    """Run ``train_cmd`` (the ``pcloud train`` command function) ``k`` times with consecutive seeds."""
    from ..pipeline.config import run_config

    base_seed = args.seed if args.seed is not None else run_config(
        args.config, args.set or [], data=args.data or ["?"], task=args.task, model=args.model).seed
    out = Path(args.out)
    results = []
    for i in range(k):
        a = copy.copy(args)
        a.seed, a.repeat, a.out = base_seed + i, 1, str(out / f"seed_{base_seed + i}")
        train_cmd(a)
        results.append(json.loads((Path(a.out) / "results.json").read_text()))
    s = spread(results)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "repeat.json") as tmp:
        Path(tmp).write_text(json.dumps({"seeds": [base_seed + i for i in range(k)], "metrics": s}, indent=1) + "\n")
    lines = [f"# pcloud train --repeat {k} (seeds {base_seed}..{base_seed + k - 1})", "", "| metric | mean | std |",
             "|---|---|---|"]
    for key, v in s.items():
        if key.startswith("metrics.") and key.count(".") <= 2:
            lines.append(f"| {key[8:]} | {v['mean']:.4g} | {v['std']:.2g} |")
    with atomic_output(out / "repeat.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    print(f"{k} trainings: {out / 'repeat.md'}")
    return s
