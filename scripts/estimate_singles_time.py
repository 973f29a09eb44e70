#!/usr/bin/env python
"""Estimate the wall time of `pcloud bench singles` modes on this machine from measured training steps.

For each task and learned model it simulates a small sample of the task's showers, builds the model exactly as the
benchmark does (full widths, or ``--small-models``), and times ``--steps`` optimiser steps (forward, loss, backward,
Adam) on mini-batches of ``--batch`` events after one warm-up step. With ``n = n_classes * n_per_class`` events
split 70/15/15, the median step time ``t`` gives the time per epoch
``t * (ceil(0.70 n / batch) + ceil(0.15 n / batch) / 3)`` (the validation pass counted as a third of a training step),
and the mode's upper bound is ``epochs * that`` (early stopping can only shorten it).
Simulation and classical baselines are not included (they take seconds to minutes).

Prints one table per task plus the per-task and total hours; no asserts.

Usage: ``python scripts/estimate_singles_time.py [--tasks e_vs_gamma e_vs_pi] [--n-per-class 20000] [--epochs 40]
[--max-points 384] [--small-models] [--device cpu]``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch


def main() -> None:
    from pcloud.bench.singles.models import DENSE_MODEL_NAMES, POINT_MODEL_NAMES, build, image_tensors, point_tensors
    from pcloud.bench.singles.config import TASK_MODE
    from pcloud.bench.singles.run import _loss, _targets
    from pcloud.bench.singles.tasks import TASKS, build_dataset
    from pcloud.train.trainer import select_device, to_device

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--models", nargs="+", default=list(POINT_MODEL_NAMES + DENSE_MODEL_NAMES))
    ap.add_argument("--n-per-class", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--max-points", type=int, default=384)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--small-models", action="store_true")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    device = select_device(a.device)
    total_h = 0.0
    print(f"device {device}, threads {torch.get_num_threads()}, n_per_class {a.n_per_class}, epochs {a.epochs}, "
          f"max_points {a.max_points}, {'small' if a.small_models else 'full'} widths")
    for tname in a.tasks:
        task = TASKS[tname]
        n_sample = max(a.batch, 2 * a.batch // task.n_classes)
        showers = build_dataset(task, n_sample, seed=7, mode=TASK_MODE[task.geometry], log=lambda m: None)
        train = np.ones(showers.n_events, bool)
        targets, _ = _targets(showers, task, train)
        pts, _ = point_tensors(showers, train, 0.0, a.max_points)
        imgs = image_tensors(showers)
        n_classes = task.n_classes if task.kind != "regression" else 0
        n_train = math.ceil(0.70 * task.n_classes * a.n_per_class)
        n_val = math.ceil(0.15 * task.n_classes * a.n_per_class)
        steps_per_epoch = math.ceil(n_train / a.batch) + math.ceil(n_val / a.batch) / 3.0
        loss_fn = _loss(task)
        task_h = 0.0
        print(f"\n{tname}: {n_train} training events, {steps_per_epoch:.0f} step-equivalents per epoch")
        print(f"  {'model':<16} {'params':>9} {'s/step':>8} {'min/epoch':>10} {'h (max epochs)':>15}")
        for name in a.models:
            torch.manual_seed(1)
            model = build(name, showers.geometry, n_classes, task.kind == "id+energy", len(task.regression_targets),
                          len(showers.geometry.sections), a.small_models).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            data = {**targets, **(pts if name in POINT_MODEL_NAMES else imgs)}
            batch = to_device({k: v[:a.batch] for k, v in data.items()}, device)
            times = []
            for i in range(a.steps + 1):
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = loss_fn(model(batch), batch)
                loss = loss[0] if isinstance(loss, tuple) else loss
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            hours = t * steps_per_epoch * a.epochs / 3600.0
            task_h += hours
            n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f"  {name:<16} {n_params:>9,} {t:>8.3f} {t * steps_per_epoch / 60:>10.2f} {hours:>15.2f}")
        total_h += task_h
        print(f"  task total (upper bound, {a.epochs} epochs): {task_h:.1f} h")
    print(f"\nall tasks: {total_h:.1f} h upper bound for the learned models")


if __name__ == "__main__":
    main()
