#!/usr/bin/env python
"""Benchmark the pure-torch blocked kNN (pcloud.nn.knn.knn): throughput and peak memory vs points per event.

Each configuration runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) can be measured
on CPU; the table reports the increase of the peak over the memory held just before the kNN call (inputs and
torch already loaded), next to the size of one ``B x block x N`` float32 distance buffer. On CUDA
(``--device cuda``) the peak is ``torch.cuda.max_memory_allocated`` instead.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_knn.py --ns 512 1024 2048 4096 --batch 4 --k 16
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(n: int, batch: int, k: int, channels: int, block: int, device: str, reps: int, threads: int) -> dict:
    import torch

    from pcloud.nn.knn import auto_block_size, knn

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    feats = (torch.randn(batch, n, channels, generator=gen) * 100.0).to(device)
    mask = (torch.rand(batch, n, generator=gen) < 0.9).to(device)
    block_size = None if block == 0 else block
    used_block = auto_block_size(batch, n) if block_size is None else min(block_size, n)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    knn(feats[:, :64], k, mask[:, :64], block_size)  # warm-up (allocator, kernels)
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        # touch the current RSS so that the baseline peak includes the inputs
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        knn(feats, k, mask, block_size)
        sync()
        times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    t = sorted(times)[len(times) // 2]
    return {"n": n, "block": used_block, "time_s": t, "queries_per_s": batch * n / t, "peak_mib": peak / 2**20,
            "buffer_mib": batch * used_block * n * 4 / 2**20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192],
                    help="points per event")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--channels", type=int, default=3, help="feature width (3 = coordinates)")
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, 128, -1],
                    help="query block sizes; 0 = automatic, -1 = unblocked (block = N)")
    ap.add_argument("--max-unblocked-mib", type=float, default=600.0,
                    help="skip unblocked runs whose distance buffer would exceed this")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(**json.loads(args.child))))
        return
    print(f"kNN benchmark: B={args.batch} k={args.k} C={args.channels} device={args.device} "
          f"threads={args.threads} (median of {args.reps})")
    header = f"{'N':>6} {'block':>6} {'time [ms]':>10} {'queries/s':>11} {'peak +MiB':>10} {'buffer MiB':>11}"
    print(header)
    print("-" * len(header))
    for n in args.ns:
        for block in args.blocks:
            b = n if block == -1 else block
            if block == -1 and args.batch * n * n * 4 / 2**20 > args.max_unblocked_mib:
                print(f"{n:>6} {'N':>6} {'skipped (buffer > --max-unblocked-mib)':>40}")
                continue
            cfg = dict(n=n, batch=args.batch, k=args.k, channels=args.channels, block=b, device=args.device,
                       reps=args.reps, threads=args.threads)
            res = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            label = "auto" if block == 0 else ("N" if block == -1 else str(block))
            print(f"{n:>6} {label + '=' + str(r['block']) if block == 0 else label:>6} {1e3 * r['time_s']:>10.1f} "
                  f"{r['queries_per_s']:>11.3g} {r['peak_mib']:>10.1f} {r['buffer_mib']:>11.1f}")


if __name__ == "__main__":
    main()
