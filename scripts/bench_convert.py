"""Throughput of the point-cloud conversions and of the native store (one core).

Run with ``OMP_NUM_THREADS=1 python scripts/bench_convert.py [--n N] [--repeat R] [--random]``. Showers come from
the fast simulation (CaloGAN geometry, 1-100 GeV e+, with a window_eta per event) when ``pcloud.sim`` is
importable, otherwise (or with ``--random``) from random images with ~30 % occupied cells. Goal (issue
"Foundation"): >= 1M CaloGAN showers/min for images -> clouds.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _best(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _showers(g, n, random: bool):
    from pcloud.core.showers import ShowerImages

    rng = np.random.default_rng(0)
    if not random:
        try:
            from pcloud.sim import simulate_showers

            sh = simulate_showers(g, "e+", n, energy_gev=(1.0, 100.0), seed=1)
            sh.truth["window_eta"] = rng.uniform(-1.4, 1.4, n)
            return sh, "fast simulation (e+, 1-100 GeV)"
        except Exception as err:  # noqa: BLE001 - the bench must run without pcloud.sim
            print(f"note: pcloud.sim unavailable ({err}); using random images")
    images = {s.name: ((rng.random((n, *s.shape)) < 0.3) * rng.exponential(0.5, (n, *s.shape))).astype(np.float32)
              for s in g.sections}
    truth = {"energy_gev": rng.uniform(1, 100, n), "pdg": np.full(n, -11, np.int32),
             "window_eta": rng.uniform(-1.4, 1.4, n)}
    return ShowerImages(g, images, truth), "random images (30 % occupancy)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50000, help="showers per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--random", action="store_true", help="use random images instead of the simulation")
    args = ap.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: set OMP_NUM_THREADS=1 for per-core numbers")

    from pcloud.data import clouds_to_images, images_to_clouds, to_padded, to_pyg_batch
    from pcloud.geometry import get_geometry
    from pcloud.io.native import read_clouds, write_clouds

    g = get_geometry("calogan")
    n = args.n
    sh, source = _showers(g, n, args.random)
    print(f"input: {n} CaloGAN showers from {source}")
    rows = []
    t, clouds = _best(lambda: images_to_clouds(sh), args.repeat)
    pts = float(np.mean(np.asarray(clouds.points.energy.layout.offsets)[1:] -
                        np.asarray(clouds.points.energy.layout.offsets)[:-1]))
    rows.append(("images_to_clouds (window_eta per event)", n / t))
    sh0 = sh.select(np.arange(n))
    sh0.truth.pop("window_eta", None)
    t0, _ = _best(lambda: images_to_clouds(sh0), args.repeat)
    rows.append(("images_to_clouds (no window_eta)", n / t0))
    t1, _ = _best(lambda: images_to_clouds(sh, threshold_gev=0.001), args.repeat)
    rows.append(("images_to_clouds (threshold 1 MeV)", n / t1))
    t2, _ = _best(lambda: clouds_to_images(clouds, g), args.repeat)
    rows.append(("clouds_to_images", n / t2))
    b = min(n, 10000)
    t3, _ = _best(lambda: to_padded(clouds[:b], ["x", "y", "z", "log_energy", "layer"]), args.repeat)
    rows.append(("to_padded (5 features)", b / t3))
    t4, _ = _best(lambda: to_pyg_batch(clouds[:b], ["x", "y", "z", "log_energy", "layer"]), args.repeat)
    rows.append(("to_pyg_batch (5 features)", b / t4))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bench.parquet"
        t5, _ = _best(lambda: write_clouds(p, clouds), 1)
        size = p.stat().st_size
        t6, _ = _best(lambda: read_clouds(p), 1)
    rows.append(("write_clouds (zstd Parquet)", n / t5))
    rows.append(("read_clouds", n / t6))

    print(f"mean points per shower: {pts:.1f}; store size {size / n:.0f} bytes/shower")
    print(f"{'operation':<42} {'showers/s':>12} {'showers/min':>14}")
    for name, rate in rows:
        print(f"{name:<42} {rate:>12.0f} {rate * 60:>14.3g}")
    ok = rows[0][1] * 60 >= 1e6
    print(f"goal >= 1M showers/min for images_to_clouds: {'met' if ok else 'NOT met'} ({rows[0][1] * 60:.3g}/min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
