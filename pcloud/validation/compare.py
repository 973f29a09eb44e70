"""Comparison of pcloud's per-shower quantities with a reference card or with reference showers.

One row per (quantity, particle). A row **passes** when

* the median of pcloud's distribution is within the tolerance of the reference median: 10% for e+-, gamma
  (EM showers), 20% for other particles, and 20% for any median below 0.01 (read off log-scale figures), and
* the p16-p84 bands overlap (pcloud's p16 <= the reference's p84 and the reference's p16 <= pcloud's p84).

Statistics given as a mean only (``total_energy_over_E``) pass when the means agree within the tolerance;
``median_total_gev`` and ``fraction_below_<X>_gev`` (total deposited energy in GeV) likewise.

Distances: against a card, the *quantile distance* mean_k |q_k - q_k,ref| / (p84_ref - p16_ref) over k = p16, median,
p84 (0: identical quantiles; 1: off by a whole reference band); against files, the two-sample Kolmogorov-Smirnov
statistic and p-value and the Wasserstein (earth mover's) distance divided by the reference's standard deviation
(scipy.stats). Against a card from the CaloGAN figures, pcloud's values are first restricted to the ranges of those
figures (:data:`pcloud.validation.quantities.CALOGAN_WINDOWS`), as the card's quantiles were read off them.
"""
from __future__ import annotations

import numpy as np

from .quantities import CALOGAN_WINDOWS, QUANTITIES, window_mask

EM_PARTICLES = ("e+", "e-", "gamma")


def tolerance(particle: str, ref_median: float | None) -> float:
    """Allowed relative deviation of the median (see the module docstring)."""
    if ref_median is not None and abs(ref_median) < 0.01:
        return 0.2
    return 0.1 if particle in EM_PARTICLES else 0.2


def _quantiles(v):
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    p16, med, p84 = np.percentile(v, [16, 50, 84])
    return {"p16": float(p16), "median": float(med), "p84": float(p84), "mean": float(v.mean()), "n": int(v.size)}


def _ratio(a, b):
    return float(a / b) if b not in (0, None) and a is not None and np.isfinite(a) else float("nan")


def _band_overlap(pc, ref) -> bool:
    return bool(pc["p16"] <= ref["p84"] and ref["p16"] <= pc["p84"])


def _total_energy_extras(stats: dict, e_tot_gev: np.ndarray) -> dict:
    out = {}
    for k in stats:
        if k == "median_total_gev":
            out[k] = float(np.median(e_tot_gev))
        elif k.startswith("fraction_below_"):
            x = float(k[len("fraction_below_"):-len("_gev")])
            out[k] = float(np.mean(e_tot_gev < x))
    return out


def compare_card(card, values: dict, energies: dict, windows: bool = True) -> list[dict]:
    """Rows comparing pcloud ``values`` ({particle: {quantity: (N,) array}}, from
    :func:`pcloud.validation.quantities.calogan_quantities`) and incident ``energies`` ({particle: (N,) GeV}) with a
    :class:`pcloud.validation.reference.Card`."""
    rows = []
    for qname in QUANTITIES:
        for particle in card.particles:
            ref = card.stats(qname, particle)
            if not ref or particle not in values:
                continue
            v = np.asarray(values[particle][qname], dtype=np.float64)
            row = {"quantity": qname, "particle": particle, "reference": dict(ref)}
            if all(k in ref for k in ("p16", "median", "p84")):
                inside = window_mask(qname, v) if windows else np.isfinite(v)
                pc = _quantiles(v[inside])
                row["window"] = list(CALOGAN_WINDOWS[qname][:2]) if windows else None
                row["fraction_in_window"] = float(inside.mean()) if v.size else 0.0
                if pc is None:
                    row.update(pcloud=None, median_ratio=float("nan"), band_overlap=False, passed=False,
                               tolerance=tolerance(particle, ref["median"]),
                               distance={"kind": "quantile", "value": float("nan")})
                    rows.append(row)
                    continue
                tol = tolerance(particle, ref["median"])
                width = max(ref["p84"] - ref["p16"], 1e-12)
                dist = float(np.mean([abs(pc[k] - ref[k]) for k in ("p16", "median", "p84")]) / width)
                ratio = _ratio(pc["median"], ref["median"])
                overlap = _band_overlap(pc, ref)
                row.update(pcloud=pc, median_ratio=ratio, band_overlap=overlap, tolerance=tol,
                           distance={"kind": "quantile", "value": dist},
                           passed=bool(abs(ratio - 1.0) <= tol and overlap))
            else:
                vf = v[np.isfinite(v)]
                pc = {"mean": float(vf.mean()) if vf.size else float("nan"), "n": int(vf.size)}
                if qname == "total_energy_over_E":
                    e_tot = vf * np.asarray(energies[particle], dtype=np.float64)[np.isfinite(v)]
                    pc.update(_total_energy_extras(ref, e_tot))
                tol = tolerance(particle, None)
                ratios = {k: _ratio(pc.get(k), ref[k]) for k in ref}
                row.update(pcloud=pc, ratios=ratios, tolerance=tol,
                           median_ratio=ratios.get("median", float("nan")), band_overlap=None,
                           distance={"kind": "relative", "value": float(max(abs(r - 1.0) for r in ratios.values()))},
                           passed=bool(all(np.isfinite(r) and abs(r - 1.0) <= tol for r in ratios.values())))
            rows.append(row)
    return rows


def compare_samples(reference: dict, values: dict) -> list[dict]:
    """Rows comparing pcloud ``values`` with reference showers, both {particle: {quantity: (N,) array}} computed the
    same way (full distributions, no figure windows): median ratio, band overlap, KS and Wasserstein distances."""
    from scipy import stats

    rows = []
    for qname in QUANTITIES:
        for particle, ref_q in reference.items():
            if particle not in values:
                continue
            r = np.asarray(ref_q[qname], dtype=np.float64)
            v = np.asarray(values[particle][qname], dtype=np.float64)
            r, v = r[np.isfinite(r)], v[np.isfinite(v)]
            row = {"quantity": qname, "particle": particle}
            if r.size < 2 or v.size < 2:
                row.update(reference=None, pcloud=None, passed=False, median_ratio=float("nan"), band_overlap=False,
                           tolerance=tolerance(particle, None), distance={"kind": "ks", "value": float("nan")})
                rows.append(row)
                continue
            ref, pc = _quantiles(r), _quantiles(v)
            tol = tolerance(particle, ref["median"])
            ks = stats.ks_2samp(r, v)
            sd = float(np.std(r)) or 1.0
            ratio = _ratio(pc["median"], ref["median"])
            overlap = _band_overlap(pc, ref)
            row.update(reference=ref, pcloud=pc, median_ratio=ratio, band_overlap=overlap, tolerance=tol,
                       distance={"kind": "ks", "value": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                                 "wasserstein_over_std": float(stats.wasserstein_distance(r, v) / sd)},
                       passed=bool(abs(ratio - 1.0) <= tol and overlap))
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    n_pass = sum(bool(r["passed"]) for r in rows)
    by_particle = {}
    for r in rows:
        p = by_particle.setdefault(r["particle"], [0, 0])
        p[0] += bool(r["passed"])
        p[1] += 1
    return {"passed": n_pass, "total": len(rows), "all_passed": n_pass == len(rows),
            "by_particle": {k: {"passed": a, "total": b} for k, (a, b) in by_particle.items()},
            "failed": [f"{r['quantity']} ({r['particle']})" for r in rows if not r["passed"]]}
