"""``pcloud validate``: simulate showers as the reference was made, compare, write figures and tables.

:func:`validate` is the library entry point of the command: it simulates pcloud showers in the reference's
configuration (a card's geometry, particles, energy range and spectrum, beam at the origin along the calorimeter axis,
total or visible energy; or the incident energies of reference files), computes the CaloGAN quantities of both
(:mod:`pcloud.validation.quantities`), compares them (:mod:`pcloud.validation.compare`) and writes into ``out``:

* ``<quantity>.png``: reference and pcloud overlaid per particle (:mod:`pcloud.plots.validation`),
* ``summary.png``: median ratios of all rows with their tolerance bands,
* ``results.json``: configuration, every row (reference and pcloud statistics, median ratio, band overlap, distance,
  tolerance, pass/fail) and a summary,
* ``report.md``: the same as a Markdown table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..core.particles import particle_pdg
from .compare import compare_card, compare_samples, summary
from .quantities import QUANTITIES, calogan_quantities
from .reference import BUILTIN, Card, FileReference, ReferenceError, load_card, parse_file_specs


def _simulate(geometry, particle, n, seed, energy_gev, spectrum, mode):
    from ..sim.showers import simulate_showers

    return simulate_showers(geometry, particle, n, energy_gev=energy_gev, spectrum=spectrum, mode=mode, noise=False,
                            seed=seed)


def _read_reference_file(ref: FileReference, geometry: str, n: int | None):
    from ..io.detect import read_images

    showers = read_images(ref.path, stop=n)
    if showers.geometry.name != geometry:
        raise ReferenceError(f"{ref.path}: a {showers.geometry.name} file, but the validated geometry is {geometry}")
    if "energy_gev" not in showers.truth:
        raise ReferenceError(f"{ref.path}: no incident energies (truth 'energy_gev'); pcloud needs them to simulate "
                             f"the same spectrum")
    return showers


def is_card(reference) -> bool:
    """A reference given as one argument that is a built-in name or a .json file is a card; else file specs."""
    if isinstance(reference, (list, tuple)):
        if len(reference) != 1:
            return False
        reference = reference[0]
    s = str(reference)
    return s in BUILTIN or s.lower().endswith(".json")


def validate(geometry: str, reference, out, particles=None, n: int = 3000, seed: int = 1, log=print) -> dict:
    """Run the validation (see the module docstring); returns the results dict also written to results.json.

    ``reference``: a card (built-in name or JSON path) or a list of ``PATH:PARTICLE`` file specifications.
    ``particles``: subset of the card's particles (default all; for files the files' particles). ``n``: showers per
    particle (files: at most n events are read and as many simulated with their incident energies).
    Raises :class:`ReferenceError` (a ValueError) with one clear line for unusable input."""
    from ..geometry import get_geometry
    from ..plots.validation import quantity_figure, summary_figure

    if int(n) < 10:
        raise ReferenceError(f"--n: need at least 10 showers per particle, got {n}")
    t0 = time.perf_counter()
    out = Path(out)
    refs = [reference] if isinstance(reference, (str, Path)) else list(reference)
    card = load_card(refs[0]) if is_card(refs) else None
    g = get_geometry(geometry)
    if card is not None:
        if card.geometry != geometry:
            raise ReferenceError(f"{card.path}: a card for geometry {card.geometry!r}, but the validated geometry is "
                                 f"{geometry!r}")
        want = card.particles if particles is None else list(particles)
        for p in want:
            if p not in card.particles:
                raise ReferenceError(f"--particles: {p!r} is not in the card {card.path} (it has "
                                     f"{', '.join(card.particles)})")
    else:
        files = parse_file_specs(refs)
        want = [f.particle for f in files] if particles is None else list(particles)
        for p in want:
            if p not in [f.particle for f in files]:
                raise ReferenceError(f"--particles: {p!r} has no reference file (given: "
                                     f"{', '.join(f'{f.path}:{f.particle}' for f in files)})")
    for p in want:
        particle_pdg(p)
    out.mkdir(parents=True, exist_ok=True)
    values, energies, ref_values = {}, {}, {}
    for k, p in enumerate(want):
        if card is not None:
            sh = _simulate(g, p, int(n), seed + k, card.energy_gev, card.spectrum, card.mode)
        else:
            f = next(f for f in files if f.particle == p)
            ref_sh = _read_reference_file(f, geometry, int(n))
            ref_values[p] = calogan_quantities(ref_sh)
            e = np.asarray(ref_sh.truth["energy_gev"], dtype=np.float64)
            sh = _simulate(g, p, e.size, seed + k, e, "given", "total")
        values[p] = calogan_quantities(sh)
        energies[p] = np.asarray(sh.truth["energy_gev"], dtype=np.float64)
        log(f"[validate] {p}: {sh.n_events} pcloud showers simulated")
    if card is not None:
        windows = bool(card.geometry == "calogan")
        rows = compare_card(Card(**{**card.__dict__, "particles": want}), values, energies, windows=windows)
        ref_desc = {"kind": "card", "path": card.path, "source": card.source,
                    "configuration": {"geometry": card.geometry, "particles": card.particles,
                                      "energy_gev": list(card.energy_gev), "spectrum": card.spectrum,
                                      "mode": card.mode, "beam": card.beam}, "calogan_figure_windows": windows}
        definitions = card.definitions
    else:
        rows = compare_samples(ref_values, values)
        ref_desc = {"kind": "files", "files": [f"{f.path}:{f.particle}" for f in files]}
        definitions = {}
    figures = {}
    for q in QUANTITIES:
        q_rows = [r for r in rows if r["quantity"] == q]
        if not q_rows:
            continue
        figures[q] = Path(quantity_figure(q, q_rows, {p: values[p][q] for p in want}, out / f"{q}.png",
                                          reference=None if card is not None else {p: ref_values[p][q] for p in want},
                                          definition=definitions.get(q, ""), title=q)).name
    figures["summary"] = Path(summary_figure(rows, out / "summary.png")).name
    res = {"geometry": geometry, "reference": ref_desc, "n_per_particle": int(n), "seed": int(seed),
           "particles": want, "beam": "origin, normal incidence (the public CaloGAN configuration)",
           "simulator": "pcloud parametrised fast simulation (not Geant4)", "rows": rows, "summary": summary(rows),
           "figures": figures, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    (out / "report.md").write_text(report_markdown(res))
    s = res["summary"]
    log(f"[validate] {s['passed']}/{s['total']} rows pass; wrote {out}/results.json, report.md and "
        f"{len(figures)} figures")
    return res


def _fmt(x, digits=4):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not np.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


def report_markdown(res: dict) -> str:
    """Markdown report of a :func:`validate` result."""
    ref = res["reference"]
    lines = [f"# pcloud validate {res['geometry']}", "",
             f"Reference: {ref.get('path') or ', '.join(ref.get('files', []))}", ""]
    if ref.get("source"):
        lines += [f"Source: {ref['source']}", ""]
    s = res["summary"]
    lines += [f"{res['n_per_particle']} pcloud showers per particle (seed {res['seed']}), {res['beam']}; "
              f"{s['passed']}/{s['total']} rows pass.", ""]
    card = ref["kind"] == "card"
    dist = "quantile distance" if card else "KS / Wasserstein/std"
    lines += [f"| quantity | particle | reference p16 / median / p84 | pcloud p16 / median / p84 | median ratio | "
              f"bands overlap | {dist} | tolerance | pass |", "|---|---|---|---|---:|---|---:|---:|---|"]
    for r in res["rows"]:
        rf, pc = r.get("reference") or {}, r.get("pcloud") or {}
        if all(k in rf for k in ("p16", "median", "p84")):
            rtxt = " / ".join(_fmt(rf[k]) for k in ("p16", "median", "p84"))
            ptxt = " / ".join(_fmt(pc.get(k)) for k in ("p16", "median", "p84")) if pc else "-"
            ratio = _fmt(r.get("median_ratio"), 3)
        else:
            rtxt = ", ".join(f"{k} {_fmt(v)}" for k, v in rf.items())
            ptxt = ", ".join(f"{k} {_fmt(pc.get(k))}" for k in rf) if pc else "-"
            ratio = ", ".join(_fmt(v, 3) for v in (r.get("ratios") or {}).values())
        d = r.get("distance") or {}
        dtxt = _fmt(d.get("value"), 3)
        if "wasserstein_over_std" in d:
            dtxt += f" / {_fmt(d['wasserstein_over_std'], 3)}"
        lines.append(f"| {r['quantity']} | {r['particle']} | {rtxt} | {ptxt} | {ratio} | "
                     f"{_fmt(r.get('band_overlap'))} | {dtxt} | {int(round(100 * r['tolerance']))}% | "
                     f"{'pass' if r['passed'] else '**FAIL**'} |")
    if s["failed"]:
        lines += ["", "Failed: " + ", ".join(s["failed"])]
    if card and ref.get("calogan_figure_windows"):
        lines += ["", "pcloud's values are restricted to the ranges of the CaloGAN figures the card was read from "
                      "(pcloud.validation.quantities.CALOGAN_WINDOWS)."]
    lines += ["", "Figures: " + ", ".join(f"[{k}]({v})" for k, v in res["figures"].items()), ""]
    return "\n".join(lines)
