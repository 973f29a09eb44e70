#!/usr/bin/env python
"""Time one DGCNN training step (forward, backward) with the fused EdgeConv fast path against the general path.

Both variants are built with the same seed and run on the same random padded batch (``--batch`` events of
``--points`` slots, 40-100% of them real, ``x`` standard normal, ``pos`` in mm); the steps alternate between the
two so that machine load affects both alike. Prints median seconds per step, the speed-up and the peak resident
memory added by one step of each (``VmHWM``, measured in separate subprocesses). No asserts.

Usage: ``python scripts/bench_edgeconv.py [--batch 128] [--points 128] [--k 10] [--widths 32 32 64] [--emb 128]
[--reps 5]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def _setup(a, fused: bool):
    from pcloud.nn import DGCNN

    g = torch.Generator().manual_seed(0)
    n = torch.randint(int(0.4 * a.points), a.points + 1, (a.batch,), generator=g)
    mask = torch.arange(a.points)[None] < n[:, None]
    batch = {"x": torch.randn(a.batch, a.points, 5, generator=g), "pos": torch.randn(a.batch, a.points, 3, generator=g) * 50,
             "mask": mask}
    torch.manual_seed(0)
    model = DGCNN(5, n_classes=2, k=a.k, edge_channels=tuple(a.widths), emb_dim=a.emb, head_hidden=(64,))
    for m in model.convs:
        m.fused = m.fused and fused
    return model, batch


def _hwm_kib() -> int:
    """Peak resident set of this process (``VmHWM``, KiB). Unlike ``ru_maxrss`` it is not inherited across
    fork + exec from a larger parent."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _step(model, batch):
    t = time.perf_counter()
    model(batch)["logits"].square().sum().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--points", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 32, 64])
    ap.add_argument("--emb", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory-of", choices=["fused", "general"], default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_of:
        model, batch = _setup(a, a.memory_of == "fused")
        base = _hwm_kib()
        _step(model, batch)
        print(json.dumps((_hwm_kib() - base) / 1024))
        return
    models = {name: _setup(a, name == "fused") for name in ("fused", "general")}
    times = {name: [] for name in models}
    for r in range(a.reps + 1):
        for name, (model, batch) in models.items():
            t = _step(model, batch)
            if r:
                times[name].append(t)
    mem = {}
    for name in models:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory-of", name], capture_output=True,
                             text=True, check=True)
        mem[name] = float(out.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"DGCNN train step, batch {a.batch} x {a.points} points, k={a.k}, widths {a.widths}, emb {a.emb}, "
          f"{torch.get_num_threads()} threads")
    for name in models:
        print(f"  {name:<8} {med[name]:.3f} s/step   peak +{mem[name]:.0f} MiB")
    print(f"  speed-up {med['general'] / med['fused']:.2f}x")


if __name__ == "__main__":
    main()
