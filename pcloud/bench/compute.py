"""Compute-cost measurements for models: parameter count, inference throughput and peak memory.

Peak memory on CPU is measured from PyTorch's own allocator events: the profiler (``profile_memory=True``) records
every tensor allocation and free with a timestamp; the running sum of bytes in time order gives the peak number of
bytes held by tensors during the call (weights, which exist before the call, are not included). On CUDA
``torch.cuda.max_memory_allocated`` is used instead (also excluding memory held before the call).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable

import numpy as np
import torch


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _allocation_records(prof) -> list[tuple[int, int]]:
    recs: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        n = stack.pop()
        ev = getattr(n, "extra_fields", None)
        if type(ev).__name__.endswith("Allocation"):
            recs.append((n.start_time_ns, int(ev.alloc_size)))
        stack.extend(n.children)
    return recs


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler back-end's start/stop lines, which its C++ side writes straight to file descriptor 2."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Peak tensor memory (MB = 1e6 bytes) allocated while ``fn()`` runs, above what was held before."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 1e6
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    recs = sorted(_allocation_records(prof))
    if not recs:
        return 0.0
    return float(max(0, np.cumsum([b for _, b in recs]).max())) / 1e6


def throughput(fn: Callable[[], object], n_events: int, device: torch.device | str = "cpu",
               min_seconds: float = 0.5, max_repeats: int = 50) -> float:
    """Events per second of ``fn`` (which processes ``n_events``), after one warm-up call."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    reps, t0 = 0, time.perf_counter()
    while reps < max_repeats:
        fn()
        sync()
        reps += 1
        if time.perf_counter() - t0 >= min_seconds:
            break
    return n_events * reps / (time.perf_counter() - t0)


def _to_device(batch: dict, device) -> dict:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def batch_events(batch: dict) -> int:
    """Events in a model batch: padded (the first tensor's leading axis) or ragged (``n_events``,
    :mod:`pcloud.nn.ragged`)."""
    if "n_events" in batch:
        return int(batch["n_events"])
    return int(next(v for v in batch.values() if hasattr(v, "shape")).shape[0])


def inference_cost(model, batch: dict, device) -> dict:
    """Inference events/s and peak tensor memory (MB) of ``model`` on one batch (dict of tensors), in eval mode."""
    model.eval()
    b = _to_device(batch, device)
    n = batch_events(batch)
    with torch.no_grad():
        eps = throughput(lambda: model(b), n, device=device, min_seconds=0.3, max_repeats=20)
        mem = peak_memory_mb(lambda: model(b), device=device)
    return {"events_per_s": float(eps), "peak_memory_mb": float(mem), "cost_batch": n}


def training_step_cost(model, batch: dict, device, loss_key: str = "logits") -> dict:
    """Seconds per training step (forward, backward of the summed squared ``loss_key`` output; no optimiser) and
    peak tensor memory (MB) of ``model`` on one batch, in training mode."""
    model.train()
    b = _to_device(batch, device)

    def step():
        model.zero_grad(set_to_none=True)
        out = model(b)
        out[loss_key].float().pow(2).sum().backward()

    steps_per_s = throughput(step, 1, device=device, min_seconds=0.3, max_repeats=10)
    mem = peak_memory_mb(step, device=device)
    model.zero_grad(set_to_none=True)
    return {"step_seconds": 1.0 / steps_per_s, "train_peak_memory_mb": float(mem)}
