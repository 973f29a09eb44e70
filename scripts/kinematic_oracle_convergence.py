"""The kinematic oracles of ``pcloud bench pflow`` (:mod:`pcloud.pflow.kinematic_oracle`) against the number of
noise-free replicas: are 16 replicas enough for the numbers the benchmark reports?

Makes the benchmark's events (the same as ``pcloud bench pflow --MODE --seed SEED``: generation, splits,
topo-clusters), then for each replica count runs both oracles with common inference and prints F1, energy-weighted
accuracy, the lost energy by kind, F1 by measured significance and the median effective number of replicas behind
the cell-energy estimate in each significance bin. Usage::

    OMP_NUM_THREADS=2 python scripts/kinematic_oracle_convergence.py --large --replicas 16 64 --json out/ko.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def run(mode: str, replicas, seed: int = 1, n_events: int | None = None, log=print) -> dict:
    from pcloud.bench.pflow import PflowConfig
    from pcloud.bench.pflow.events import generate_pflow_events
    from pcloud.core.attribution import truth_attribution
    from pcloud.core.events import select_events
    from pcloud.data.splits import Splits
    from pcloud.geometry import get_geometry
    from pcloud.metrics import particle_flow as pm
    from pcloud.metrics.particle_flow import DEFAULT_SIGNIFICANCE_EDGES, _dr_bins
    from pcloud.pflow.inference import common_inference
    from pcloud.pflow.kinematic_oracle import kinematic_oracle, replica_votes
    from pcloud.pflow.topocluster import topo_cluster_events

    cfg = PflowConfig(**{mode: True}, seed=seed, n_events=n_events).resolved()
    geometry = get_geometry("atlas")
    t0 = time.perf_counter()
    events = generate_pflow_events(geometry, cfg)
    number = np.arange(events.n_events, dtype=np.int64)
    test = select_events(events, Splits(dict(cfg.fractions), seed=cfg.seed).mask(number, "test"))
    mask = topo_cluster_events(geometry, test).cell_cluster >= 0
    voted = mask & (np.asarray(test.cells["energy_gev"]) > 0)
    truth = truth_attribution(test)
    layer = np.asarray(geometry.cells["layer"], np.int64)[test.cells["id"]]
    significance = (np.asarray(test.cells["energy_gev"]) / np.asarray(test.cells["noise_sigma_gev"]))[voted]
    log(f"{test.n_events} test events of --{mode} (seed {seed}), {int(voted.sum())} evaluated cells "
        f"({time.perf_counter() - t0:.0f} s)")
    out = {"mode": mode, "seed": seed, "n_test_events": int(test.n_events), "n_cells": int(voted.sum()),
           "replicas": {}}
    for k in replicas:
        t = time.perf_counter()
        votes = replica_votes(test, geometry, n_replicas=int(k), seed=cfg.seed + 7919, cell_mask=voted)
        seconds = time.perf_counter() - t
        row = {"seconds": seconds, "effective_replicas_median": {}}
        for name, lo, hi in _dr_bins(DEFAULT_SIGNIFICANCE_EDGES):  # the metrics' significance bins
            sel = (significance >= lo) & (significance < hi)
            row["effective_replicas_median"][name] = float(np.median(votes.effective_replicas[sel])) \
                if sel.any() else None
        for name, v in (("oracle_kinematic", votes.kinematic), ("oracle_kinematic_cell", votes.with_cell_energy)):
            a = common_inference(test, geometry, kinematic_oracle(test, v), dr_max=cfg.dr_max)
            r = pm.evaluate_attribution(test, a, truth, cell_mask=mask, dense_dr=cfg.dense_cut, cell_layer=layer)
            row[name] = {"f1": r["f1"], "energy_weighted_accuracy": r["energy_weighted_accuracy"],
                         "energy_lost": r["energy_lost"],
                         "f1_by_significance": {b: x["f1"] for b, x in r["by_significance"].items()}}
            lost = r["energy_lost"]
            log(f"K={k:3d} {name:22s} F1 {r['f1']:.3f}  E-acc {r['energy_weighted_accuracy']:.3f}  lost: "
                f"charged as neutral {lost['charged_as_neutral']:.3f}, neutral as charged "
                f"{lost['neutral_as_charged']:.3f}, wrong track {lost['wrong_track']:.3f}  F1 by E/sigma "
                + ", ".join(f"{b} {x['f1']:.3f}" for b, x in r["by_significance"].items()))
        log(f"K={k:3d} replicas in {seconds:.0f} s; median effective replicas (cell-energy weights) by E/sigma: "
            + ", ".join(f"{b} {v:.1f}" for b, v in row["effective_replicas_median"].items() if v is not None))
        out["replicas"][str(k)] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    for m in ("quick", "medium", "large"):
        g.add_argument(f"--{m}", dest="mode", action="store_const", const=m)
    ap.add_argument("--replicas", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--events", type=int, default=None, help="number of events (default: the mode's)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args(argv)
    if any(k < 1 for k in a.replicas):
        print(f"kinematic_oracle_convergence: --replicas must be >= 1, found {a.replicas}", file=sys.stderr)
        return 2
    res = run(a.mode or "large", a.replicas, seed=a.seed, n_events=a.events)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
