"""Markdown report of the singles benchmark (``report.md``), written from ``results.json`` content."""
from __future__ import annotations

import math
from pathlib import Path


def _f(v, fmt="{:.3g}"):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return fmt.format(v)


def _pct(v):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:+.1f}%"


def _rej_cell(r, err, lower) -> str:
    if r is None:
        return "n/a"  # working point not resolved by the test statistics
    if isinstance(r, str) or (isinstance(r, float) and math.isinf(r)):
        if not lower:
            return "> n_b/3"
        # no background passed: 95% CL lower limit n_b / 3 (no exponent notation)
        return f"> {lower:.0f}" if lower >= 100 else f"> {lower:.3g}"
    return value_pm(float(r), float(err))


def value_pm(v: float, err: float) -> str:
    """``v ± err`` with the error rounded to two significant digits and the value to the same decimal place
    (``7.0 ± 1.7``, ``105 ± 105``, ``3.11 ± 0.21``); no exponent notation."""
    if not (math.isfinite(v) and math.isfinite(err)) or err <= 0:
        return f"{_f(v)} ± {_f(err, '{:.2g}')}"
    nd = max(0, 1 - int(math.floor(math.log10(err))))
    return f"{v:.{nd}f} ± {err:.{nd}f}"


def _id_table(task: dict) -> list[str]:
    models = task["models"]
    wps = next((list(m["rejection"]) for m in models.values() if "rejection" in m), [])
    head = ["model", "family", "AUC", "accuracy"] + [f"rej@{float(w):.4g}" for w in wps] + \
        [f"vs ss_fcn @{float(w):.4g}" for w in wps] + ["params", "events/s", "peak MB", "train s", "t->target s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(models, key=lambda k: -(models[k].get("auc") or 0))
    for name in order:
        m = models[name]
        if "auc" not in m:
            continue
        rej = m.get("rejection", {})
        err = m.get("rejection_err", {})
        rel = m.get("relative_rejection_pct", {})
        row = [name, m.get("family", ""), _f(m.get("auc"), "{:.4f}"), _f(m.get("accuracy"), "{:.3f}")]
        row += [_rej_cell(rej.get(w), err.get(w), m.get("rejection_lower_limit_95", {}).get(w)) for w in wps]
        row += [_pct(rel.get(w)) for w in wps]
        row += [_f(m.get("n_params"), "{:,}"), _f(m.get("events_per_s"), "{:,.0f}"), _f(m.get("peak_memory_mb"), "{:.1f}"),
                _f(m.get("train_seconds"), "{:.0f}"), _f(m.get("time_to_target_s"), "{:.0f}")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _multiclass_table(task: dict) -> list[str]:
    models = task["models"]
    names = task["classes"]
    head = ["model", "family", "accuracy", "mean one-vs-rest AUC"] + [f"AUC {c}" for c in names] + \
        ["params", "events/s", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(models, key=lambda k: -(models[k].get("accuracy") or 0)):
        m = models[name]
        if "accuracy" not in m:
            continue
        ovr = m.get("auc_one_vs_rest", {})
        row = [name, m.get("family", ""), _f(m["accuracy"], "{:.3f}"), _f(m.get("auc"), "{:.4f}")]
        row += [_f(ovr.get(c), "{:.4f}") for c in names]
        row += [_f(m.get("n_params"), "{:,}"), _f(m.get("events_per_s"), "{:,.0f}"), _f(m.get("peak_memory_mb"), "{:.1f}")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _fit_cell(v: float, err: float, nd: int) -> str:
    """A fitted parameter; one pinned at its bound 0 has a meaningless (huge) error and is shown as such."""
    if not math.isfinite(err) or err > 10 * max(abs(v), 10 ** -nd):
        return f"{v:.{nd}f} (at bound)" if v < 10 ** -nd else f"{v:.{nd}f} (unconstrained)"
    return f"{v:.{nd}f} ± {err:.{nd}f}"


def _energy_table(task: dict) -> list[str]:
    lines = ["| model | particle | a (GeV^1/2) | b | c (GeV) | median bias | robust sigma/E |", "|---|---|---|---|---|---|---|"]
    for name, m in task["models"].items():
        for grp, en in m.get("energy", {}).items():
            if grp == "all":
                continue
            fit = en.get("fit", {})
            ab = tuple(_fit_cell(fit[p], fit[f"{p}_err"], nd) for p, nd in (("a", 3), ("b", 3), ("c", 2))) \
                if "a" in fit else ("fit failed",) * 3
            lines.append(f"| {name} | {grp} | {ab[0]} | {ab[1]} | {ab[2]} | {_pct(100 * en['median_relative_bias'])} |"
                         f" {_f(en['relative_resolution_robust'], '{:.3f}')} |")
    return lines


def _regression_table(task: dict) -> list[str]:
    names = None
    lines = []
    for name, m in task["models"].items():
        reg = m.get("regression")
        if not reg:
            continue
        if names is None:
            names = list(reg)
            head = ["model"] + [f"{n} MAE / RMSE" for n in names] + ["params", "events/s"]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        row = [name] + [f"{reg[n]['mae']:.3g} / {reg[n]['rmse']:.3g}" for n in names]
        row += [_f(m.get("n_params"), "{:,}"), _f(m.get("events_per_s"), "{:,.0f}")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _granularity(gr: dict) -> list[str]:
    """AUC, rejection at 80% signal efficiency and inference rate per model and ECAL cell size."""
    names = list(gr)
    models = list(next(iter(gr.values()))["models"]) if gr else []
    L = ["The gamma / pi0 showers of the CLIC task with the ECAL re-binned (energy conserved exactly); "
         "AUC / pi0 rejection at 80% photon efficiency / inference events per second.", "",
         "| model | " + " | ".join(f"{n} ({gr[n]['meaning']}, {gr[n]['points_per_event'] or 0:.0f} points/event)"
                                   for n in names) + " |", "|" + "---|" * (len(names) + 1)]
    for m in models:
        cells = []
        for n in names:
            e = gr[n]["models"].get(m, {})
            rej = (e.get("rejection") or {}).get("0.8")
            eps = e.get("events_per_s")
            cells.append(f"{e.get('auc', float('nan')):.3f} / {'n/a' if rej is None else f'{rej:.2f}'} / "
                         f"{'-' if eps is None else f'{eps:,.0f}'}")
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    return L


def _occupancy(occ: dict) -> list[str]:
    lines = ["### Inference cost vs occupancy (batch of 128 CaloGAN e+ showers, untrained models)", ""]
    scan = occ["threshold_scan"]
    names = sorted({n for r in scan for n in r["models"]})
    head = ["threshold (MeV)", "points/event"] + [f"{n} ev/s / MB" for n in names]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in scan:
        row = [f"{r['threshold_mev']:g}", f"{r['points_per_event_mean']:.0f}"]
        row += [f"{r['models'][n]['events_per_s']:,.0f} / {r['models'][n]['peak_memory_mb']:.1f}" if n in r["models"]
                else "-" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    if any(r.get("ragged") for r in scan):
        lines += ["", "### Padded vs ragged batches (same events; inference ev/s and peak MB, training step s and "
                  "peak MB)", "", "| threshold (MeV) | points/event (mean / max) | model | padded infer ev/s / MB | "
                  "ragged infer ev/s / MB | padded train step s / MB | ragged train step s / MB |",
                  "|---|---|---|---|---|---|---|"]
        for r in scan:
            for n, rg in (r.get("ragged") or {}).items():
                pd = r["models"][n]
                lines.append(f"| {r['threshold_mev']:g} | {r['points_per_event_mean']:.0f} / "
                             f"{r.get('points_per_event_max', '?')} | {n} | {pd['events_per_s']:,.0f} / "
                             f"{pd['peak_memory_mb']:.1f} | {rg['events_per_s']:,.0f} / {rg['peak_memory_mb']:.1f} | "
                             f"{pd.get('step_seconds', float('nan')):.3f} / {pd.get('train_peak_memory_mb', float('nan')):.1f} | "
                             f"{rg.get('step_seconds', float('nan')):.3f} / {rg.get('train_peak_memory_mb', float('nan')):.1f} |")
    lines += ["", "### Inference cost vs ECAL granularity (CLIC-like, 64 e- showers 10-100 GeV, visible mode)", ""]
    gr = occ["granularity"]
    names = sorted({n for r in gr for n in r["models"]})
    head = ["ECAL cells", "cells in window", "points/event"] + [f"{n} ev/s / MB" for n in names]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in gr:
        row = [f"{r['ecal_cells']}x{r['ecal_cells']}x25", f"{r['n_cells']:,}", f"{r['points_per_event_mean']:.0f}"]
        row += [f"{r['models'][n]['events_per_s']:,.0f} / {r['models'][n]['peak_memory_mb']:.1f}" if n in r["models"]
                else "-" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    if len(gr) == 2:
        lines += ["", "Ratio fine/coarse granularity (events/s): " + ", ".join(
            f"{n} {gr[1]['models'][n]['events_per_s'] / gr[0]['models'][n]['events_per_s']:.2f}"
            for n in names if n in gr[0]["models"] and n in gr[1]["models"])]
    return lines


def _point_vs_dense(results: dict) -> list[str]:
    lines = ["| task | best point model (AUC) | best dense model (AUC) | events/s point/dense | peak memory point/dense |",
             "|---|---|---|---|---|"]
    for tname, t in results["tasks"].items():
        ms = t["models"]
        pts = {k: v for k, v in ms.items() if v.get("family") == "point" and "auc" in v}
        dns = {k: v for k, v in ms.items() if v.get("family") == "dense" and "auc" in v}
        if not pts or not dns:
            continue
        bp = max(pts, key=lambda k: pts[k]["auc"])
        bd = max(dns, key=lambda k: dns[k]["auc"])
        r_eps = pts[bp]["events_per_s"] / dns[bd]["events_per_s"]
        r_mem = pts[bp]["peak_memory_mb"] / max(dns[bd]["peak_memory_mb"], 1e-9)
        lines.append(f"| {tname} | {bp} ({pts[bp]['auc']:.4f}) | {bd} ({dns[bd]['auc']:.4f}) | {r_eps:.2f} |"
                     f" {r_mem:.2f} |")
    return lines


def _paired(results: dict) -> list[str]:
    """Best point minus best dense rejection per working point, paired bootstrap error (same test events)."""
    rows = []
    for tname, t in results["tasks"].items():
        pr = t.get("paired_point_vs_dense")
        if not pr:
            continue
        cells = []
        for w, d in pr["difference"].items():
            sd, fr = pr["bootstrap_std"].get(w), pr["fraction_point_better"].get(w)
            if d is None or sd is None:
                cells.append(f"@{float(w):.4g}: n/a")
            else:
                cells.append(f"@{float(w):.4g}: {value_pm(d, sd) if sd > 0 else f'{d:+.3g}'} ({100 * fr:.0f}%)")
        rows.append(f"| {tname} | {pr['point']} − {pr['dense']} | " + "; ".join(cells) + " |")
    if not rows:
        return []
    n_boot = next(t["paired_point_vs_dense"]["n_boot"] for t in results["tasks"].values()
                  if t.get("paired_point_vs_dense"))
    return ["Rejection difference best point − best dense model on the same test events (± paired bootstrap "
            f"standard deviation, {n_boot} resamples; in brackets: share of resamples where the point model is "
            "ahead; n/a = not resolved, or a rejection is unbounded in too many resamples):", "",
            "| task | models | difference at each signal efficiency |", "|---|---|---|"] + rows + [""]


def write_singles_report(results: dict, path: Path) -> None:
    cfg = results["config"]
    L = ["# pcloud bench singles", "",
         f"Mode: **{'quick' if cfg['quick'] else 'full'}**; device: {results['device']}; total time "
         f"{results.get('seconds', 0) / 60:.1f} min; seed {cfg['seed']}; {cfg['n_per_class']} showers per class "
         f"before the 70/15/15 split by event number; up to {cfg['epochs']} epochs (early stopping, patience "
         f"{cfg['patience']}); point clouds: cells with E > {cfg['threshold_mev']:g} MeV, at most "
         f"{cfg['max_points']} points per event (highest energy kept).",
         "",
         "All showers come from pcloud's parametrised fast simulation (not Geant4): absolute numbers are not comparable "
         "with the papers', relative comparisons between models on the same showers are the point. "
         + ("Quick mode uses small data sets and few epochs: it checks the pipeline end to end; its numbers carry "
            "large statistical errors and models are not converged." if cfg["quick"] else ""),
         "", "Columns: rejection = 1/FPR of the background at the given signal efficiency (± binomial error); "
         "'vs ss_fcn' = relative change of rejection w.r.t. the FCN on shower shapes (seed 004 Tables 3-4); "
         "'> X' = no test background event passed (95% CL lower limit n_b/3); n/a = the working point is not resolved by "
         "the number of signal test events; "
         "events/s and peak MB = inference on a batch of 128 test events (peak tensor memory during the call); "
         "t->target = training time until the validation loss first reached the loss every learned model of the task "
         "reached.", ""]
    L += ["## Sparse vs dense at a glance", ""] + _point_vs_dense(results) + [""] + _paired(results)
    for tname, t in results["tasks"].items():
        L += [f"## {tname}", "", f"{t['description']}. Geometry `{t['geometry']}` ({t['mode']} energy), classes "
              f"{' / '.join(t['classes'])}, energies {t['energy_gev'][0]:g}-{t['energy_gev'][1]:g} GeV, selection: "
              f"{t['selection']}. Events train/val/test: {t['n_events']['train']}/{t['n_events']['val']}/"
              f"{t['n_events']['test']}. Points per event (mean/max): "
              f"{t['point_cloud']['points_per_event_mean']:.0f}/{t['point_cloud']['points_per_event_max']}, "
              f"energy dropped by the point limit: {100 * t['point_cloud']['truncated_energy_fraction']:.2f}%.", ""]
        if t["kind"] in ("id", "id+energy"):
            L += (_id_table(t) if len(t["classes"]) == 2 else _multiclass_table(t)) + [""]
        if t["kind"] == "id+energy":
            L += ["Energy regression (joint with ID; resolution fit sigma/E = a/sqrt(E) ⊕ b ⊕ c/E per particle):", ""]
            L += _energy_table(t) + [""]
        if t["kind"] == "regression":
            L += _regression_table(t) + [""]
    if results.get("granularity"):
        L += ["## Granularity (seed 001 section 5.4)", ""] + _granularity(results["granularity"]) + [""]
    if results.get("occupancy"):
        L += ["## Sparse vs dense compute", ""] + _occupancy(results["occupancy"]) + [""]
    if results.get("plots"):
        L += ["## Plots", ""] + [f"- [{Path(p).name}]({Path(p).name})" for p in results["plots"]] + [""]
    Path(path).write_text("\n".join(L) + "\n")


def headline(e: dict) -> str:
    """One log line of a model's results: AUC, accuracy, resolution fits, regression MAE, speed, memory."""
    parts = []
    if "auc" in e:
        parts.append(f"AUC {e['auc']:.4f}")
    if "accuracy" in e:
        parts.append(f"acc {e['accuracy']:.3f}")
    for cls, f in e.get("resolution_fit", {}).items():
        parts.append(f"{cls} sigma/E: a={f['a']:.3f} b={f['b']:.3f} c={f['c']:.2f}")
    if "regression" in e:
        parts.append(" ".join(f"{k}:MAE={v['mae']:.3g}" for k, v in e["regression"].items()))
    if "events_per_s" in e:
        parts.append(f"{e['events_per_s']:.0f} ev/s")
    if "peak_memory_mb" in e:
        parts.append(f"{e['peak_memory_mb']:.1f} MB")
    return ", ".join(parts)
