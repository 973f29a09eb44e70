"""Throughput of pcloud's parametrised fast simulation (showers per second, one core).

Run with ``OMP_NUM_THREADS=1 python scripts/bench_sim.py [--n N] [--repeat R]``. Prints a table; the CaloGAN goal
(the project's speed goal) is >= 10k showers/s per core for 1..100 GeV e+ in total mode.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pcloud.geometry import get_geometry
from pcloud.sim import deposit_particles, particle_gun, simulate_showers, simulate_sparse


def _best(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def law_table(n=300):
    """Measured laws on the CaloGAN stack (the numbers of datasets/SIMULATION.md)."""
    from scipy.optimize import curve_fit

    from pcloud.sim import em
    from pcloud.sim.deposit import DEFAULT_SPOTS
    from pcloud.sim.media import depth_media, em_sampling_fraction, em_sampling_term

    g = get_geometry("calogan")
    med = depth_media(g)
    z, ec = float(med.z_eff[0]), float(med.ec_mev[0])
    rng = np.random.default_rng(0)
    print(f"CaloGAN Pb/LAr stack: Z_eff {z:.1f}, E_c {ec:.2f} MeV, X0 {med.x0_mm[0]:.2f} mm, R_M "
          f"{med.moliere_mm[0]:.2f} mm, lambda_I {med.lambda_mm[0]:.1f} mm")
    print(f"{'E GeV':>6s} {'ln y':>5s} {'tmax e':>7s} {'C e':>6s} {'tmax g':>7s} {'C g':>6s} {'L95 e':>6s} "
          f"{'PDG L95':>7s} {'f(<1RM)':>7s}")
    for e in (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0):
        ln_y = np.log(e * 1000 / ec)
        out = []
        for photon in (False, True):
            n_depth = np.maximum(em.spot_counts(np.full(n, e), DEFAULT_SPOTS["em_per_gev"], rng),
                                 DEFAULT_SPOTS["em_min"])                                # production budget
            sp = em.em_spots(np.full(n, e), z, ec, n_depth, rng, photon=photon, n_lateral=DEFAULT_SPOTS["em_lateral"],
                             n_core=DEFAULT_SPOTS["em_core"])
            t = sp["t_x0"].ravel()
            w = np.broadcast_to(sp["weight"], sp["t_x0"].shape).ravel()
            h, edges = np.histogram(t, bins=np.arange(0, 40, 0.25), weights=w)
            c = 0.5 * (edges[1:] + edges[:-1])
            hs = np.convolve(h, np.ones(5) / 5, mode="same")
            i = int(np.argmax(hs))
            sl = slice(max(i - 6, 0), i + 7)
            p = np.polyfit(c[sl], hs[sl], 2)
            order = np.argsort(t)
            l95 = t[order][np.searchsorted(np.cumsum(w[order]) / w.sum(), 0.95)]
            frac = float(np.sum((sp["r_rm"] < 1) * np.broadcast_to(sp["weight"], sp["r_rm"].shape)) / (n * 1.0))
            out.append((-p[1] / (2 * p[0]), l95, frac))
        (te, le, fe), (tg, _, _) = out
        print(f"{e:6.0f} {ln_y:5.2f} {te:7.2f} {te - ln_y:6.2f} {tg:7.2f} {tg - ln_y:6.2f} {le:6.1f} "
              f"{te + 0.08 * z + 9.6:7.1f} {fe:7.3f}")
    energies = np.array([2.0, 5.0, 10.0, 25.0, 50.0, 100.0])
    res, pi_e = [], []
    for e in energies:
        v = simulate_showers(g, "e+", n, energy_gev=e, mode="visible", seed=int(e)).total_energy()
        res.append(v.std() / v.mean())
        p_ = simulate_showers(g, "pi+", n, energy_gev=e, mode="total", seed=int(e) + 1).total_energy().mean()
        e_ = simulate_showers(g, "e+", n, energy_gev=e, mode="total", seed=int(e) + 2).total_energy().mean()
        pi_e.append(p_ / e_)
    (a, b), _ = curve_fit(lambda x, a, b: np.sqrt(a**2 / x + b**2), energies, np.array(res), p0=[0.1, 0.01])
    print("visible e+ sigma/E:", " ".join(f"{e:.0f}:{r:.4f}" for e, r in zip(energies, res)))
    print(f"fit a = {a:.4f} (stack sampling term {em_sampling_term(g.sections[0].stack):.4f}), b = {abs(b):.4f}; "
          f"EM sampling fraction {em_sampling_fraction(g.sections[0].stack):.4f}")
    print("pi+/e+ total response (calogan, 1.28 lambda_I deep):", " ".join(f"{e:.0f}:{r:.3f}" for e, r in
                                                                       zip(energies, pi_e)))


#: Published test-beam energy resolutions sigma/E = a/sqrt(E) (+) b for electrons (a, b in %) and their sources.
TEST_BEAMS = {
    "calogan": (None, None, "no test beam: the Pb(2 mm)/LAr(4 mm) stack of the CaloGAN Geant4 set"),
    "atlas": (10.0, 0.17, "ATLAS LAr EM barrel module test beam, Aharrouche et al., NIM A 568 (2006) 601"),
    "cms": (2.8, 0.3, "CMS ECAL test beam (noise 12%/E apart), JINST 2 (2007) P04004"),
    "clic": (16.6, 1.1, "CALICE Si/W ECAL prototype (0.525 mm Si, 1.4-4.2 mm W), NIM A 608 (2009) 372"),
}


def resolution_table(n=300, energies=(2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0)):
    """Visible-mode electron (photon for cms) resolution of every geometry, calibrated to the EM scale, no noise:
    fitted sigma/E = a/sqrt(E) (+) b with the RMS and with the 1.4826 MAD (leakage tails excluded)."""
    from scipy.optimize import curve_fit

    from pcloud.sim.media import em_sampling_fraction, em_sampling_term

    print(f"{'geometry':8s} {'a rms %':>8s} {'b rms %':>8s} {'a mad %':>8s} {'b mad %':>8s} {'a stack %':>9s} "
          f"{'test beam a / b %':>18s}  source")
    out = {}
    for geo in ("calogan", "clic", "cms", "atlas"):
        g = get_geometry(geo)
        fem = np.array([em_sampling_fraction(s.stack) for s in g.sections])
        rms, mad = [], []
        for e in energies:
            if geo == "atlas":
                _, ev, cell, en = simulate_sparse(g, "e-", n, energy_gev=e, mode="visible", noise=False,
                                                  seed=int(e), eta_range=(-0.1, 0.1))
                v = np.bincount(ev, weights=en / fem[g.cells["section"][cell]], minlength=n)
            else:
                part = {"calogan": "e+", "clic": "e-", "cms": "gamma"}[geo]
                s = simulate_showers(g, part, n, energy_gev=e, mode="visible", noise=False, seed=int(e))
                v = sum(s.images[sec.name].reshape(n, -1).sum(1) / f for sec, f in zip(g.sections, fem))
            rms.append(v.std() / v.mean())
            med = np.median(v)
            mad.append(1.4826 * np.median(np.abs(v - med)) / med)
        fits = []
        for r in (rms, mad):
            (a, b), _ = curve_fit(lambda x, a, b: np.sqrt(a**2 / x + b**2), np.array(energies), np.array(r),
                                  p0=[0.1, 0.01])
            fits += [abs(a) * 100, abs(b) * 100]
        a_stack = em_sampling_term(g.sections[0].stack) * 100 or float(g.info.get("stochastic_term", 0)) * 100
        ta, tb, src = TEST_BEAMS[geo]
        tb_txt = "-" if ta is None else f"{ta:.1f} / {tb:.2f}"
        print(f"{geo:8s} {fits[0]:8.2f} {fits[1]:8.2f} {fits[2]:8.2f} {fits[3]:8.2f} {a_stack:9.2f} "
              f"{tb_txt:>18s}  {src}")
        out[geo] = fits
    return out


def occupancy_table(n=1000, particles=("e+",), energies=((1.0, 100.0), 2.0, 10.0, 50.0, 100.0), mode="total"):
    """Mean number of calogan cells per shower with E > 0, > 0.1 MeV and > 1 MeV per layer (``mode``), the
    sparsity (fraction of non-zero cells, seed 004 Table 2) and the fraction of non-zero cells below 1 MeV."""
    g = get_geometry("calogan")
    layer = g.cells["layer"]
    print(f"{'particle':8s} {'E GeV':>10s} " + " ".join(f"{'L' + str(k) + ' >0/>0.1/>1 MeV (sparsity)':>30s}"
                                                         for k in range(3)) + f" {'total':>6s} {'<1MeV':>6s}")
    rows = []
    for part in particles:
        for e in energies:
            flat = simulate_showers(g, part, n, energy_gev=e, seed=5, mode=mode).flat()
            cols = []
            for k in range(3):
                img = flat[:, layer == k]
                cols.append(((img > 0).sum(1).mean(), (img > 1e-4).sum(1).mean(), (img > 1e-3).sum(1).mean(),
                             (img > 0).mean()))
            v = flat[flat > 0]
            tot, low = (flat > 0).sum(1).mean(), float((v < 1e-3).mean())
            label = f"{e[0]:g}-{e[1]:g}" if isinstance(e, tuple) else f"{e:g}"
            print(f"{part:8s} {label:>10s} " + " ".join(f"{a:9.1f}/{b:5.1f}/{c:5.1f} ({d:4.2f})      "
                                                      for a, b, c, d in cols) + f" {tot:6.1f} {low:6.2f}")
            rows.append((part, e, cols, tot, low))
    return rows


def pair_table(n=400, cases=(("calogan", 20.0), ("clic", 100.0))):
    """Collinear-limit check (the spot-count artifact): one physical photon shower of energy E deposited through
    one spot set vs through two spot sets of energy shares z, 1 - z on the same axis (tests/sim/test_spot_budget.py);
    prints the relative excess of non-zero cells per layer group of the split version (0 = no artifact)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))
    from test_spot_budget import collinear_split

    for name, e in cases:
        for mode in ("total", "visible"):
            c1, _ = collinear_split(name, e, mode, seed=21, n=n, split=False)
            c2, _ = collinear_split(name, e, mode, seed=22, n=n, split=True)
            ratio = [f"{c2[:, k].mean():.1f}/{c1[:, k].mean():.1f}" for k in range(c1.shape[1])]
            print(f"{name} {e:g} GeV {mode}: non-zero cells split/single per layer group: " + " ".join(ratio))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000, help="showers per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--laws", action="store_true", help="also print the measured law table")
    ap.add_argument("--occupancy", action="store_true", help="also print the calogan cell-occupancy table")
    ap.add_argument("--only-calogan-eplus", action="store_true", help="time only the goal case (calogan e+ total)")
    ap.add_argument("--resolution", action="store_true",
                    help="also print the sampling / constant terms of every geometry next to test beams")
    args = ap.parse_args(argv)
    if args.laws:
        law_table()
    if args.resolution:
        resolution_table()
    if args.occupancy:
        occupancy_table(particles=("e+", "gamma", "pi+"))
        occupancy_table(particles=("e+",), energies=((1.0, 100.0), 10.0), mode="visible")
        pair_table()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: set OMP_NUM_THREADS=1 for per-core numbers")
    n = args.n
    rows = []
    cases = [("calogan", "e+", "total", n), ("calogan", "e+", "visible", n), ("calogan", "gamma", "total", n),
             ("calogan", "pi+", "total", n), ("calogan", "pi0", "total", n), ("clic", "e-", "total", n // 4),
             ("clic", "pi-", "total", n // 4), ("cms", "gamma", "total", n)]
    if args.only_calogan_eplus:
        cases = cases[:1]
    for geo, part, mode, m in cases:
        g = get_geometry(geo)
        dt = _best(lambda: simulate_showers(g, part, m, energy_gev=(1.0, 100.0), mode=mode, seed=1), args.repeat)
        rows.append((f"simulate_showers {geo}", part, mode, m, m / dt))
    if args.only_calogan_eplus:
        print(f"simulate_showers calogan e+ total: {rows[0][4]:.0f} showers/s (goal >= 10 000)")
        return rows
    g = get_geometry("atlas")
    m = n // 4
    rng = np.random.default_rng(1)
    gun = particle_gun(g, "pi+", m, rng)
    dt = _best(lambda: deposit_particles(g, gun["pdg"], gun["energy_gev"], gun["origin_mm"], gun["direction"],
                                         np.random.default_rng(2)), args.repeat)
    rows.append(("deposit_particles atlas", "pi+", "total", m, m / dt))
    gun = particle_gun(g, "e-", m, rng)
    dt = _best(lambda: deposit_particles(g, gun["pdg"], gun["energy_gev"], gun["origin_mm"], gun["direction"],
                                         np.random.default_rng(2)), args.repeat)
    rows.append(("deposit_particles atlas", "e-", "total", m, m / dt))
    dt = _best(lambda: simulate_sparse(g, "e-", m, seed=1, noise=False), args.repeat)
    rows.append(("simulate_sparse atlas (no noise)", "e-", "total", m, m / dt))
    print(f"{'what':34s} {'particle':8s} {'mode':8s} {'n':>7s} {'showers/s':>11s}")
    for what, part, mode, m, rate in rows:
        print(f"{what:34s} {part:8s} {mode:8s} {m:7d} {rate:11.0f}")
    return rows


if __name__ == "__main__":
    main()
