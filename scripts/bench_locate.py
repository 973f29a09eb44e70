"""Throughput of :meth:`Geometry.locate` (positions/s) and of the simulation that calls it (showers/s), before and
after the table-driven locate.

"Before" is the per-section implementation that locate used until the tables were introduced (copied below as
:func:`legacy_locate`: np.hypot depth, one mask + np.unique + float64 transforms per section, ``_bin_index`` per
axis); "after" is the current :meth:`Geometry.locate`. Both are run on the same positions and the number of
positions located differently is printed (expected 0 for random positions).

Run with ``OMP_NUM_THREADS=1 python scripts/bench_locate.py [--n N] [--repeat R] [--showers S]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import pcloud.sim.deposit as deposit
from pcloud.geometry import Geometry, get_geometry
from pcloud.io.calochallenge import example_binning, parse_binning
from pcloud.sim import deposit_particles, particle_gun, simulate_showers


def _legacy_bin_index(edges, values):
    n = edges.size - 1
    widths = np.diff(edges)
    if np.allclose(widths, widths[0], rtol=1e-9, atol=0):
        i = np.floor((values - edges[0]) / widths[0]).astype(np.int64)
    else:
        i = np.searchsorted(edges, values, side="right") - 1
    return np.where((i >= 0) & (i < n) & (values >= edges[0]) & (values < edges[-1]), i, -1)


def legacy_locate(g: Geometry, x, y, z) -> np.ndarray:
    """The pre-table algorithm of Geometry.locate (for the 'before' column)."""
    x, y, z = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                  np.asarray(z, dtype=np.float64))
    shape = x.shape
    x, y, z = x.ravel(), y.ravel(), z.ravel()
    d = np.hypot(x, y) if g.frame == "collider" else z
    gl = np.searchsorted(g.layer_fronts_mm, d, side="right") - 1
    inside = (gl >= 0) & (d < g.layer_backs_mm[np.clip(gl, 0, None)])
    out = np.full(d.shape, -1, dtype=np.int64)
    sec = np.where(inside, g.layer_section[np.clip(gl, 0, None)], -1)
    for si in np.unique(sec[sec >= 0]):
        s = g.sections[si]
        m = np.nonzero(sec == si)[0]
        if s.kind == "xy":
            u, v = x[m], y[m]
        elif s.kind == "etaphi":
            rt = np.hypot(x[m], y[m])
            u, v = np.arcsinh(z[m] / np.maximum(rt, 1e-9)), np.arctan2(y[m], x[m])
        else:
            u, v = np.hypot(x[m], y[m]), np.arctan2(y[m], x[m])
        if s.v_periodic:
            period = s.v_edges[-1] - s.v_edges[0]
            v = s.v_edges[0] + np.mod(v - s.v_edges[0], period)
        iu = _legacy_bin_index(s.u_edges, u)
        iv = _legacy_bin_index(s.v_edges, v)
        ok = (iu >= 0) & (iv >= 0)
        lay = gl[m] - g.layer_offsets[si]
        flat = g.section_offsets[si] + (lay * s.n_u + iu) * s.n_v + iv
        out[m[ok]] = flat[ok]
    return out.reshape(shape)


def _best(fn, repeat):
    """Best CPU time (s) of ``repeat`` calls: process time, so that other jobs on a shared machine count less."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _positions(g: Geometry, n: int, rng):
    """Random positions in and around the calorimeter (about half inside a cell for the windows), in the frame's
    natural coordinates: (depth, u, v) of a random section, drawn 10% beyond its ranges."""
    lo, hi = g.layer_fronts_mm.min(), g.layer_backs_mm.max()
    sec = rng.integers(0, len(g.sections), n)
    out = np.empty((3, n))
    for si, s in enumerate(g.sections):
        m = np.flatnonzero(sec == si)
        du, dv = np.ptp(s.u_edges), np.ptp(s.v_edges)
        d = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), m.size)
        u = rng.uniform(s.u_edges[0] - 0.1 * du, s.u_edges[-1] + 0.1 * du, m.size)
        v = rng.uniform(s.v_edges[0] - 0.1 * dv, s.v_edges[-1] + 0.1 * dv, m.size)
        if s.kind == "xy":
            out[:, m] = u, v, d
        elif s.kind == "etaphi":
            out[:, m] = d * np.cos(v), d * np.sin(v), d * np.sinh(u)
        else:
            out[:, m] = np.abs(u) * np.cos(v), np.abs(u) * np.sin(v), d
    return out


def locate_table(n: int, repeat: int):
    geoms = {name: get_geometry(name) for name in ("calogan", "clic", "atlas", "cms")}
    geoms["calochallenge photon5"] = parse_binning(example_binning("photon5")).geometry
    rng = np.random.default_rng(0)
    print(f"{'geometry':22s} {'cells':>7s} {'inside':>6s} {'before Mpos/s':>13s} {'after Mpos/s':>12s} "
          f"{'speed-up':>8s} {'differ':>6s}")
    rows = []
    for name, g in geoms.items():
        x, y, z = _positions(g, n, rng)
        g.locate(x[:10], y[:10], z[:10])                       # build the tables outside the timing
        with np.errstate(invalid="ignore"):
            before = legacy_locate(g, x, y, z)
            t_before = _best(lambda: legacy_locate(g, x, y, z), repeat)
        after = g.locate(x, y, z)
        t_after = _best(lambda: g.locate(x, y, z), repeat)
        rows.append((name, n / t_before, n / t_after))
        print(f"{name:22s} {g.n_cells:7d} {np.mean(after >= 0):6.2f} {n / t_before / 1e6:13.2f} "
              f"{n / t_after / 1e6:12.2f} {t_before / t_after:8.1f} {int(np.sum(before != after)):6d}")
    return rows


class _LegacyLocate:
    """Context manager: Geometry.locate -> legacy_locate (and a fresh simulation cache) for the 'before' runs."""

    def __enter__(self):
        self.saved = Geometry.locate
        Geometry.locate = legacy_locate
        deposit._MEDIA_CACHE.clear()

    def __exit__(self, *exc):
        Geometry.locate = self.saved
        deposit._MEDIA_CACHE.clear()


def shower_table(n_showers: int, repeat: int):
    def cms():
        simulate_showers("cms", "gamma", n_showers, seed=1)

    atlas = get_geometry("atlas")
    guns = {p: particle_gun(atlas, p, n_showers, np.random.default_rng(1)) for p in ("e-", "pi+")}

    def dep(p):
        gun = guns[p]
        return lambda: deposit_particles(atlas, gun["pdg"], gun["energy_gev"], gun["origin_mm"], gun["direction"],
                                         np.random.default_rng(2))

    cases = [("simulate_showers cms gamma", cms), ("deposit_particles atlas e-", dep("e-")),
             ("deposit_particles atlas pi+", dep("pi+"))]
    print(f"\n{'showers/s (' + str(n_showers) + ' per call, best of ' + str(repeat) + ')':40s} "
          f"{'before':>9s} {'after':>9s} {'speed-up':>8s}")
    rows = []
    for label, fn in cases:
        with _LegacyLocate(), np.errstate(invalid="ignore"):
            fn()
            t_before = _best(fn, repeat)
        deposit._MEDIA_CACHE.clear()
        fn()
        t_after = _best(fn, repeat)
        rows.append((label, n_showers / t_before, n_showers / t_after))
        print(f"{label:40s} {n_showers / t_before:9.0f} {n_showers / t_after:9.0f} {t_before / t_after:8.2f}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000, help="positions per geometry")
    ap.add_argument("--showers", type=int, default=5000, help="showers per simulation call")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: set OMP_NUM_THREADS=1 for per-core numbers")
    locate_table(args.n, args.repeat)
    shower_table(args.showers, args.repeat)


if __name__ == "__main__":
    main()
