#!/usr/bin/env python
"""Benchmark the dense CNN baselines (pcloud.nn.dense) on CPU: parameters, inference events/s, peak memory.

For every (geometry, model) a fresh subprocess builds the model with its defaults, makes one batch of random
sparse showers (about 10% of the cells hit, exponential energies, GeV) and measures

* ``params``: trainable parameters (``model.n_params``);
* ``events/s``: ``batch / median time`` of ``--reps`` ``torch.no_grad`` eval forward passes after one warm-up;
* ``peak MiB``: increase of the process' peak resident set (``resource.getrusage().ru_maxrss``, Linux KiB)
  over its resident set just before the first forward pass, i.e. the extra memory the first inference pass
  needed (activations, workspace). ``input MiB`` is the size of the input batch for reference.

Prints a table; no asserts. Usage: ``python scripts/bench_dense.py [--batch 128] [--threads 1] [--reps 5]
[--geometries calogan clic] [--models cnn3d densenet ...]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _rss_kib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def child(geometry: str, model: str, batch: int, threads: int, reps: int) -> dict:
    import resource

    import torch

    from pcloud.geometry import get_geometry
    from pcloud.nn.dense import build_dense_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    geo = get_geometry(geometry)
    m = build_dense_model(model, geo).eval()
    images = {}
    for s in geo.sections:
        hit = torch.rand(batch, *s.shape) < 0.1
        images[s.name] = torch.where(hit, torch.empty(batch, *s.shape).exponential_(10.0), torch.zeros(()))
    input_mib = sum(v.numel() * v.element_size() for v in images.values()) / 2**20
    r0 = _rss_kib()
    with torch.no_grad():
        m(images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = []
    with torch.no_grad():
        for _ in range(reps):
            t = time.perf_counter()
            m(images)
            times.append(time.perf_counter() - t)
    times.sort()
    return {"geometry": geometry, "model": model, "params": m.n_params, "events_per_s": batch / times[len(times) // 2],
            "peak_mib": max(peak - r0, 0.0) / 1024, "input_mib": input_mib}


def main(argv=None):
    from pcloud.nn.dense import DENSE_MODELS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--geometries", nargs="+", default=["calogan", "clic"])
    p.add_argument("--models", nargs="+", default=list(DENSE_MODELS))
    p.add_argument("--child", nargs=2, metavar=("GEOMETRY", "MODEL"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.batch, a.threads, a.reps)))
        return
    print(f"dense models, CPU, batch {a.batch}, {a.threads} thread(s), median of {a.reps} passes")
    print(f"{'geometry':<9} {'model':<16} {'params':>10} {'events/s':>10} {'peak MiB':>9} {'input MiB':>9}")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    for g in a.geometries:
        for name in a.models:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", g, name, "--batch", str(a.batch),
                   "--threads", str(a.threads), "--reps", str(a.reps)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                print(f"{g:<9} {name:<16} FAILED: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{g:<9} {name:<16} {r['params']:>10,d} {r['events_per_s']:>10.0f} {r['peak_mib']:>9.1f} "
                  f"{r['input_mib']:>9.1f}")


if __name__ == "__main__":
    main()
