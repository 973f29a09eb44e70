"""Speed and parity of exported models: torch (eager, eval) vs TorchScript vs onnxruntime on the CPU.

Every model is built at the widths of ``pcloud train``'s default recipe (CPU-sized; ``--full-widths`` for the
papers'), exported with :func:`pcloud.nn.export.export_onnx` / ``export_torchscript`` (the paths of ``pcloud
export``) and run on the same batch of real CaloGAN e+ clouds (the singles benchmark's features, ``--points`` per
event, highest energy first) or images. Reported per model and runtime: events/s (best of ``--repeats`` timed
calls, after one warm-up), and the largest absolute difference of any output from torch. Threads: ``--threads``
for torch (``torch.set_num_threads``) and onnxruntime (``intra_op_num_threads``) alike. Usage::

    python scripts/bench_export.py [--models pointnet,dgcnn,cnn3d] [--events 128] [--points 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def batch_for(name: str, n_events: int, n_points: int):
    from pcloud.bench.singles.models import point_tensors
    from pcloud.geometry import get_geometry
    from pcloud.pipeline.models import family, image_tensors
    from pcloud.sim.showers import simulate_showers

    g = get_geometry("calogan")
    sh = simulate_showers(g, "e+", n_events, energy_gev=(1.0, 100.0), seed=5)
    if family(name) == "dense":
        return g, image_tensors(sh)
    pts, _ = point_tensors(sh, np.ones(n_events, bool), 0.0, n_points)
    sec = sh.section_energy()
    pts["g"] = torch.as_tensor(np.stack([sec[s.name] for s in g.sections], 1), dtype=torch.float32)
    return g, pts


def best_rate(fn, n_events: int, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_events / best


def bench(name: str, args) -> dict:
    import onnxruntime as ort

    from pcloud.nn.export import export_onnx, export_torchscript
    from pcloud.pipeline.models import build

    g, batch = batch_for(name, args.events, args.points)
    torch.manual_seed(0)
    model = build(name, g, 2, True, 0, 3, small=not args.full_widths).eval()
    dense = "x" not in batch
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = export_onnx(model, Path(tmp) / "m.onnx")
        t_onnx = time.perf_counter() - t0
        export_torchscript(model, Path(tmp) / "m.pt")
        ts = torch.jit.load(str(Path(tmp) / "m.pt"))
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(Path(tmp) / "m.onnx"), so, providers=["CPUExecutionProvider"])
        names = info["outputs"]
        feeds = ({k.replace("img:", "img_", 1): v.numpy() for k, v in batch.items()} if dense
                 else {k: batch[k].numpy() for k in info["inputs"]})
        ts_args = [torch.as_tensor(feeds[k]) for k in info["inputs"]]

        def run_torch():
            with torch.no_grad():
                return model(batch)

        def run_ts():
            with torch.no_grad():
                return ts(*ts_args)

        def run_ort():
            return sess.run(names, feeds)

        ref = run_torch()
        ref = [ref[n].numpy() for n in names]
        got_ts = [t.numpy() for t in run_ts()]
        got_ort = run_ort()
        diff = {"torchscript": max(float(np.abs(a - b).max()) for a, b in zip(got_ts, ref)),
                "onnxruntime": max(float(np.abs(a - b).max()) for a, b in zip(got_ort, ref))}
        rates = {"torch": best_rate(run_torch, args.events, args.repeats),
                 "torchscript": best_rate(run_ts, args.events, args.repeats),
                 "onnxruntime": best_rate(run_ort, args.events, args.repeats)}
    return {"model": name, "params": int(sum(p.numel() for p in model.parameters())), "events": args.events,
            "points": None if dense else int(batch["x"].shape[1]), "export_onnx_s": t_onnx,
            "events_per_s": rates, "max_abs_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="pointnet,dgcnn,cnn3d,densenet")
    ap.add_argument("--events", type=int, default=128)
    ap.add_argument("--points", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full-widths", action="store_true")
    ap.add_argument("--out", default=None, help="write the rows as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| model | params | torch ev/s | TorchScript ev/s | onnxruntime ev/s | ort / torch | max abs diff TS / ORT |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = bench(name, args)
        rows.append(r)
        e, d = r["events_per_s"], r["max_abs_diff"]
        print(f"| {name} | {r['params']:,} | {e['torch']:,.0f} | {e['torchscript']:,.0f} | {e['onnxruntime']:,.0f} | "
              f"{e['onnxruntime'] / e['torch']:.2f} | {d['torchscript']:.1e} / {d['onnxruntime']:.1e} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
