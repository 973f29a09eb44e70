"""Peak memory of ``pcloud train`` as the input grows: does streaming keep it flat?

Simulates CaloGAN e+ and pi+ files of N showers each (written in parts of at most 20 000 showers, so the generation
itself stays small), then runs ``pcloud train --model pointnet --epochs 1`` on them in a child process and reads
the child's peak resident memory (``ru_maxrss``) and wall time. ``--task pflow``: MLTree files of N gun events
(rho/Delta, ``pcloud generate gun``, parts of at most 500 events) and ``pcloud train --task pflow``. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_train_memory.py --n 10000 100000 --out out/train_memory
    OMP_NUM_THREADS=1 python scripts/bench_train_memory.py --task pflow --n 300 3000 --out out/train_memory_pflow

(N per class; 10 000 + 10 000 = 20k showers vs 100 000 + 100 000 = 200k showers.)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PART = 20_000


def make_files(folder: Path, n: int) -> list[str]:
    """CaloGAN files with ``n`` e+ and ``n`` pi+ showers, parts of at most PART showers; returns data specs."""
    from pcloud.geometry import get_geometry
    from pcloud.io.calogan import write_calogan
    from pcloud.sim.showers import simulate_showers

    folder.mkdir(parents=True, exist_ok=True)
    g = get_geometry("calogan")
    specs = []
    for particle, base in (("e+", 1), ("pi+", 2)):
        for k, start in enumerate(range(0, n, PART)):
            path = folder / f"{particle}_{k}.h5"
            if not path.exists():
                write_calogan(path, simulate_showers(g, particle, min(PART, n - start), energy_gev=(1, 100),
                                                     seed=1000 * base + k))
            specs.append(f"{path}:{particle}")
    return specs


PFLOW_PART = 500


def make_pflow_files(folder: Path, n: int) -> list[str]:
    """MLTree files of ``n`` gun events in parts of at most PFLOW_PART events; returns data specs."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for k, start in enumerate(range(0, n, PFLOW_PART)):
        path = folder / f"ev_{k}.root"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "pcloud.cli.main", "generate", "gun", "--n",
                            str(min(PFLOW_PART, n - start)), "--seed", str(100 + k), "-o", str(path)], check=True,
                           stdout=subprocess.DEVNULL)
        specs.append(str(path))
    return specs


def run_train(specs: list[str], out: Path, task: str = "id") -> dict:
    cmd = [sys.executable, "-m", "pcloud.cli.main", "train", "--model", "pointnet", "--epochs", "1", "--out",
           str(out), "--overwrite", "--set", "train.batch_size=256", "--task", task]
    for s in specs:
        cmd += ["--data", s]
    t0 = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (kB on Linux)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"pcloud train failed (exit {proc.returncode}); see {out.parent / (out.name + '.log')}")
    res = json.loads((out / "results.json").read_text())
    if task == "pflow":
        return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "n_test_events": res["n_events"],
                "test_f1_iterative": res["methods"]["iterative"]["f1"]}
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall,
            "test_auc": res["metrics"].get("auc"), "n_test_events": res["metrics"]["n_events"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000], help="showers per class")
    ap.add_argument("--out", default="out/train_memory")
    ap.add_argument("--task", default="id", choices=["id", "pflow"])
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for n in sorted(args.n):
        if args.task == "pflow":
            r = run_train(make_pflow_files(out / f"data_{n}", n), out / f"bundle_{n}", "pflow")
            r.update(n_events=n, n_total=n)
        else:
            r = run_train(make_files(out / f"data_{n}", n), out / f"bundle_{n}")
            r.update(n_per_class=n, n_total=2 * n)
        rows.append(r)
        print(json.dumps(r), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        score = (f"test F1 (iterative) {r['test_f1_iterative']:.3f}" if args.task == "pflow" else
                 f"test AUC {r['test_auc']:.4f}")
        print(f"{r['n_total']:>8} {'events' if args.task == 'pflow' else 'showers'}: peak RSS "
              f"{r['peak_rss_mb']:.0f} MB, {r['wall_s']:.0f} s, {score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
