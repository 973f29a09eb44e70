"""``report.md`` of ``pcloud bench pflow``: a pure function of ``results.json`` (:func:`render_report`)."""
from __future__ import annotations

from pathlib import Path



def _binned_table(m: dict, main: list, field: str, keys: tuple, count_label: str, count_key: str) -> list[str]:
    """Markdown rows (method x metric) of the per-bin metrics ``m[method][field][bin][key]``, plus a count row."""
    lines, bins = [], None
    for name in main:
        by = m[name].get(field) or {}
        if bins is None and by:
            bins = list(by)
            lines += ["| method | metric | " + " | ".join(bins) + " |", "|" + "---|" * (len(bins) + 2)]
        for key in keys:
            lines.append(f"| {name} | {key} | " + " | ".join(_fmt(by[b].get(key)) for b in bins) + " |")
    if bins:
        first = m[main[0]][field]
        lines.append(f"| {count_label} | n | " + " | ".join(str(first[b][count_key]) for b in bins) + " |")
    return lines


def _fmt(v, nd=3):
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


HEADLINE_KEYS = ("f1", "iou", "accuracy", "energy_weighted_accuracy", "f1_track_macro", "soft_overlap",
                 "track_energy_response", "track_energy_resolution", "neutral_energy_recovered")


def _fmt_spread(r: dict, key: str) -> str:
    """``mean +- std`` over the training seeds when the method has a spread for ``key``, else the value."""
    sp = (r.get("spread") or {}).get(key)
    if sp:
        return f"{sp['mean']:.3f} ± {sp['std']:.3f}"
    return _fmt(r.get(key))


def headline_table(methods: dict, names=None, keys=HEADLINE_KEYS) -> list[str]:
    names = list(methods) if names is None else [n for n in names if n in methods]
    lines = ["| method | seeds | " + " | ".join(keys) + " | charged share | conserves |",
             "|" + "---|" * (len(keys) + 4)]
    for name in names:
        r = methods[name]
        lines.append(f"| {name} | {r.get('n_seeds', 1)} | " + " | ".join(_fmt_spread(r, k) for k in keys) +
                     f" | {_fmt_spread(r, 'charged_fraction_pred')} (true {_fmt(r.get('charged_fraction_true'))}) "
                     f"| {'yes' if r.get('conservation_ok') else 'NO'} |")
    return lines


def goal_section(res: dict) -> list[str]:
    """Issue 11's particle-flow goal, evaluated on the measured numbers (``results["goal"]``)."""
    g = res.get("goal") or {}
    if not g:
        return []
    t = g["targets"]
    yn = (lambda ok: "**yes**" if ok else "**NO**")
    lines = ["## Goal (issue 11)", "",
             f"Best learned per-track method (highest F1 + E-acc, seed means): **{g['best_method']}**.", "",
             f"- F1 >= {t['f1']}: {yn(g['f1_ok'])} ({g['f1']:.3f})",
             f"- energy-weighted accuracy >= {t['energy_weighted_accuracy']}: "
             f"{yn(g['energy_weighted_accuracy_ok'])} ({g['energy_weighted_accuracy']:.3f})",
             f"- predicted charged cell share within {t['charged_share_abs_diff']} of the true one: "
             f"{yn(g['charged_share_ok'])} ({g['charged_share_pred']:.3f} vs {g['charged_share_true']:.3f})"]
    for model, c in (g.get("iterative_vs_common_dense") or {}).items():
        lines.append(f"- {model}: iterative beats common for tracks with DeltaR < 0.1: {yn(c['iterative_better'])} "
                     f"(track F1 {c['iterative_track_f1']:.3f} vs {c['common_track_f1']:.3f}, track E-acc "
                     f"{c['iterative_track_ewa']:.3f} vs {c['common_track_ewa']:.3f})")
    return lines + [""]


def dense_table(methods: dict, names=None, which: str = "dense") -> list[str]:
    """Markdown rows of the DeltaR < cut (``which="dense"``) or >= cut (``"isolated"``) summary."""
    names = list(methods) if names is None else [n for n in names if n in methods]
    tk, ek = ("tracks", "events") if which == "dense" else ("isolated_tracks", "isolated_events")
    lines = ["| method | tracks | track F1 | track E-acc | response | resolution | events | cell F1 | cell E-acc | "
             "neutral recovered (events) |", "|" + "---|" * 10]
    for name in names:
        d = methods[name].get("dense") or {}
        t, e = d.get(tk) or {}, d.get(ek) or {}
        lines.append(f"| {name} | {t.get('n_tracks')} | {_fmt(t.get('f1'))} | "
                     f"{_fmt(t.get('energy_weighted_accuracy'))} | {_fmt(t.get('response_median'))} | "
                     f"{_fmt(t.get('resolution'))} | {e.get('n_events')} | {_fmt(e.get('f1'))} | "
                     f"{_fmt(e.get('energy_weighted_accuracy'))} | {_fmt(e.get('neutral_energy_recovered'))} "
                     f"({e.get('n_events_neutral')}) |")
    return lines


def failure_notes(methods: dict, names=None) -> list[str]:
    """One line per method: how its numbers change from isolated (DeltaR >= cut) to dense (DeltaR < cut) tracks /
    events, and its weakest point in the dense bin (compared with the best non-oracle method there)."""
    names = list(methods) if names is None else [n for n in names if n in methods]
    keys = (("tracks", "f1", "track F1"), ("tracks", "energy_weighted_accuracy", "track E-acc"),
            ("events", "energy_weighted_accuracy", "cell E-acc"))
    best = {}
    for grp, k, _ in keys:
        vals = [methods[n]["dense"][grp].get(k) for n in names if not n.startswith("oracle") and
                methods[n].get("dense") and methods[n]["dense"][grp].get(k) is not None]
        best[(grp, k)] = max(vals) if vals else None
    out = []
    for n in names:
        d = methods[n].get("dense")
        if not d:
            continue
        parts = []
        for grp, k, label in keys:
            a, b = d[grp].get(k), d[f"isolated_{grp}"].get(k)
            if a is not None and b is not None:
                parts.append(f"{label} {b:.3f} -> {a:.3f} ({a - b:+.3f})")
        t, ti = d["tracks"], d["isolated_tracks"]
        r, ri = t.get("response_median"), ti.get("response_median")
        w, wi = t.get("resolution"), ti.get("resolution")
        if None not in (r, ri, w, wi):
            parts.append(f"response {ri:.2f} -> {r:.2f}, resolution {wi:.2f} -> {w:.2f}")
        nr, nri = d["events"].get("neutral_energy_recovered"), d["isolated_events"].get("neutral_energy_recovered")
        if None not in (nr, nri):
            parts.append(f"neutral recovered {nri:.2f} -> {nr:.2f}")
        issues = []
        if r is not None and abs(r - 1) > 0.15:
            issues.append(f"track energy {'over' if r > 1 else 'under'}-attributed by {abs(r - 1):.0%} (median)")
        if w is not None and w > 0.3:
            issues.append(f"resolution {w:.2f}")
        if nr is not None and abs(nr - 1) > 0.2:
            issues.append("neutral energy " + ("eaten by tracks" if nr < 1 else "over-estimated (track energy "
                                                                             "left behind)") + f" ({nr:.2f})")
        for grp, k, label in keys:
            a, bb = d[grp].get(k), best[(grp, k)]
            if a is not None and bb is not None and not n.startswith("oracle") and a < bb - 0.1:
                issues.append(f"{label} {a:.3f} vs best {bb:.3f}")
        drops = [(d[grp][k] - d[f"isolated_{grp}"][k], label) for grp, k, label in keys
                 if d[grp].get(k) is not None and d[f"isolated_{grp}"].get(k) is not None]
        worst = min(drops) if drops else None
        tail = f" Largest loss in the dense bin: {worst[1]} ({worst[0]:+.3f})." if worst and worst[0] < 0 else ""
        out.append(f"- **{n}**: isolated -> dense: " + "; ".join(parts) + "." + tail +
                   (" Flags: " + "; ".join(issues) + "." if issues else " No absolute flag."))
    return out


def _generated_sample(res: dict, cfg: dict, smp: dict, gen: str) -> str:
    """The description of a generated event sample."""
    return (f"Mode **{res.get('mode')}**. Generator **{gen}**{'' if gen == 'gun' else ' (gun settings unused)'}. "
             f"Events: {cfg['n_events']} ({', '.join(cfg['parents'])}; E "
             f"{cfg['energy_gev'][0]}-{cfg['energy_gev'][1]} GeV): standard component {cfg['n_parents'][0]}-"
             f"{cfg['n_parents'][1]} parents at DeltaR {cfg['parent_dr'][0]}-{cfg['parent_dr'][1]} from the first; "
             f"dense component ({cfg['dense_fraction']:.0%} of the events, {smp.get('n_dense_events_generated')} "
             f"events) {cfg['dense_n_parents'][0]}-{cfg['dense_n_parents'][1]} parents at DeltaR "
             f"{cfg['dense_dr'][0]}-{cfg['dense_dr'][1]}. Splits {res['splits']['counts']} (seed {cfg['seed']}). "
             f"Geometry {cfg['geometry']} (pcloud parametrised fast simulation, not Geant4).")


def _header(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """Title, sample description and the headline table."""
    smp = res.get("sample") or {}
    gen = cfg.get("generator", "gun")
    if cfg.get("data"):
        sample = (f"Mode **{res.get('mode')}**. Events read from MLTree files {', '.join(cfg['data'])} (cells "
                  f"re-clustered 4/2/0 by pcloud; generator settings unused). Splits {res['splits']['counts']} "
                  f"(seed {cfg['seed']}). Geometry {cfg['geometry']}.")
    else:
        sample = _generated_sample(res, cfg, smp, gen)
    lines = ["# pcloud bench pflow", "", sample,
             f"Test sample: {smp.get('test_events')} events, {smp.get('test_tracks')} tracks; "
             f"{smp.get('test_tracks_dr_lt_cut')} tracks with another particle within DeltaR < {cut} "
             f"({smp.get('test_tracks_dr_lt_0.05')} within 0.05; {smp.get('test_tracks_other_parent_dr_lt_cut')} "
             f"with a particle from *another* parent decay within {cut}), {smp.get('test_events_dr_lt_cut')} events "
             f"whose densest track is below {cut}. The nearest other particle is often the track's own decay partner "
             "(rho -> pi pi0 opening angle ~ 2m/E).",
             f"Evaluated cells: {cfg['evaluated_cells']}. Learned per-track models: target `{cfg['target']}`, loss "
             f"`{cfg['loss']}`, widths `{cfg.get('widths', 'small')}`, {cfg['epochs']} epochs max, max_points "
             f"{cfg['max_points'] or 'all'}, batch {cfg['batch_size']}, dr_max {cfg['dr_max']}; recipe `{cfg.get('recipe', 'legacy')}` (clouds of "
             f"`{cfg.get('cells', 'all')}` cells, optimizer {cfg.get('optimizer', 'adam')}, schedule "
             f"{cfg.get('schedule', 'constant')}, threshold {cfg.get('threshold')}); training seeds "
             f"{cfg.get('seeds', 1)} (mean ± sample std over the seeds; events and splits fixed); `event_pointnet` = "
             f"whole-event ChargedFractionSegmenter (charged energy fraction per cell, given to the nearest track at "
             f"the cell's layer).", "",
             "## Methods (test split)", ""]
    lines += headline_table(m, main)
    lines += ["", "F1/IoU: charged vs neutral cells (dominant contribution); accuracy: right track or neutral; "
              "energy_weighted_accuracy weights cells by E; f1_track_macro: per-track focal F1 averaged; "
              "soft_overlap: energy overlap of per-cell fractions; response/resolution: median and robust width of "
              "E_attributed/E_true per track; neutral_energy_recovered: median per-event predicted/true neutral "
              "energy. oracle_iterative / oracle_common: true fractions inside the dr_max cone (upper bound of the "
              "inference algorithms); oracle_kinematic: the label most likely given the true kinematics of every "
              "particle (noise-free re-simulations of the test events, common inference), oracle_kinematic_cell: "
              "the same given also the cell's own measured energy; neither bounds a model that reads the "
              "neighbouring cells (`pcloud.pflow.kinematic_oracle`).",
              ""]
    return lines


def _acceptance_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """The acceptance checks evaluated on the measured numbers."""
    acc = res.get("acceptance") or {}
    lines = []
    if acc:
        lines += ["## Acceptance", ""]
        for name, chk in acc.get("learned_beats_baselines", {}).items():
            if name in abl:
                continue
            r, d, q = m[name], m.get("dr_nearest", {}), m.get("random", {})
            lines.append(f"- {name} beats dr_nearest and random on F1 and energy-weighted accuracy: "
                         f"**{'yes' if chk['all'] else 'NO'}** (F1 {_fmt(r.get('f1'))} vs {_fmt(d.get('f1'))} / "
                         f"{_fmt(q.get('f1'))}; E-acc {_fmt(r.get('energy_weighted_accuracy'))} vs "
                         f"{_fmt(d.get('energy_weighted_accuracy'))} / {_fmt(q.get('energy_weighted_accuracy'))})")
        worst = max(acc.get("inference_conservation", {}).values(), default=float("nan"))
        lines.append(f"- iterative and common inference conserve energy to {res['conservation_tolerance_gev']:g} "
                     f"GeV: **{'yes' if acc.get('inference_conserves') else 'NO'}** (largest violation "
                     f"{worst:.1e} GeV over {len(acc.get('inference_conservation', {}))} inference runs)")
        if "rule_based" in m:
            r = m["rule_based"]
            lines.append(f"- rule-based (topo-clusters + E/p cell subtraction): F1 {_fmt(r.get('f1'))}, E-acc "
                         f"{_fmt(r.get('energy_weighted_accuracy'))}, response {_fmt(r.get('track_energy_response'))}"
                         f", resolution {_fmt(r.get('track_energy_resolution'))}")
        lines.append(f"- MLTree round trip: **{'ok' if acc.get('mltree_roundtrip_ok') else 'FAILED'}** (details "
                     "under Checks)")
        lines.append("")
    return lines


def _dense_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """Dense vs isolated summaries, failure notes and the DeltaR-binned tables."""
    lines = [f"## Dense environments: DeltaR(track, nearest other particle) < {cut}", "",
              f"Tracks with another truth particle within DeltaR < {cut} at the calorimeter, and events whose "
              f"densest track is below {cut}. Track columns: focal F1 averaged over the tracks, energy-weighted "
              "accuracy of their cells, median and robust width of E_attributed/E_true; event columns: cell-level "
              "charged-vs-neutral F1 and energy-weighted accuracy over the events' cells, median neutral energy "
              "recovered (number of events with > 1 GeV true neutral energy in brackets).", ""]
    lines += dense_table(m, main, "dense")
    lines += ["", f"Isolated reference (DeltaR >= {cut}):", ""]
    lines += dense_table(m, main, "isolated")
    lines += ["", "Where each method fails (isolated -> dense; flags: |response - 1| > 0.15, resolution > 0.3, "
              "|neutral recovered - 1| > 0.2, or more than 0.1 below the best non-oracle method):", ""]
    lines += failure_notes(m, main)
    lines += ["", "## By DeltaR(track, nearest other truth particle)", ""]
    lines += _binned_table(m, main, "by_dr", ("f1", "energy_weighted_accuracy", "soft_iou", "response_median",
                                                 "resolution"), "tracks", "n_tracks")
    lines += ["", "Events binned by their densest track (cell-level metrics, neutral energy):", ""]
    lines += _binned_table(m, main, "by_event_dr", ("f1", "energy_weighted_accuracy", "neutral_energy_recovered"),
                           "events", "n_events")
    return lines


def _error_budget_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """Where the labels and the energy go wrong: lost energy by kind, and the cell metrics by measured significance
    and by layer (``energy_lost``, ``by_significance``, ``by_layer`` of the metrics; older results: nothing)."""
    have = [n for n in main if m[n].get("energy_lost")]
    if not have:
        return []
    lines = ["", "## Error budget", "",
             "Evaluated energy on cells with the wrong label, by kind (fractions of the evaluated energy; the three "
             "add up to 1 - energy-weighted accuracy):", "",
             "| method | E-acc | charged as neutral | neutral as charged | wrong track |", "|---|---|---|---|---|"]
    for n in have:
        lo = m[n]["energy_lost"]
        lines.append(f"| {n} | {_fmt(m[n].get('energy_weighted_accuracy'))} | {_fmt(lo['charged_as_neutral'])} | "
                     f"{_fmt(lo['neutral_as_charged'])} | {_fmt(lo['wrong_track'])} |")
    keys = ("f1", "energy_weighted_accuracy", "charged_share_true", "charged_share_pred", "lost_neutral_as_charged",
            "lost_wrong_track")
    # the binned tables: the goal's best method, each learned model's iterative inference and the oracle
    best = (res.get("goal") or {}).get("best_method")
    refs = ("oracle_kinematic", "oracle_kinematic_cell", "oracle_iterative")
    shown = [n for n in have if n == best or n in refs
             or (n.endswith("_iterative") and "_ensemble" not in n and not n.startswith("oracle"))]
    shown = sorted(shown, key=lambda n: (n != best, n in refs, refs.index(n) if n in refs else 0, have.index(n)))
    lines += ["", "By measured cell significance E / sigma_noise (cells below ~1 sigma are mostly noise: their true "
              "label is that of a small true deposit the measured energy barely constrains); `energy_share`: share "
              "of the evaluated energy in the bin, `lost_*`: lost energy of the bin as a fraction of all evaluated "
              "energy:", ""]
    lines += _binned_table(m, shown, "by_significance", ("energy_share",) + keys, "cells", "n_cells")
    if all(m[n].get("by_layer") for n in shown):
        lines += ["", "By calorimeter layer:", ""]
        lines += _binned_table(m, shown, "by_layer", ("energy_share",) + keys, "cells", "n_cells")
    return lines


def _ablation_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """The PointNet target / loss ablation table."""
    lines = []
    if abl:
        lines += ["", "## Target / loss ablation (PointNet, iterative inference)", "",
                  "Same data, architecture and inference; only the target and the loss change (default: "
                  f"`{cfg['target']}` target + `{cfg['loss']}` loss). The variants train for at most the epochs the "
                  "default PointNet ran, within their time budget; the epochs actually run are listed. Dense columns: "
                  f"tracks / events with DeltaR < {cut}.", "",
                  "| variant | target | loss | epochs (best) | F1 | E-acc | f1_track_macro | response | resolution | "
                  "neutral recovered | dense track F1 | dense track E-acc | dense cell E-acc |", "|" + "---|" * 13]
        tr = res.get("training") or {}
        for name in [n for n in ("pointnet_iterative",) if n in m] + sorted(abl):
            r, t = m[name], tr.get(name[:-len("_iterative")], {})
            d = r.get("dense") or {}
            lines.append(f"| {name} | {t.get('target')} | {t.get('loss')} | {t.get('epochs_run')} "
                         f"({t.get('best_epoch')}) | {_fmt(r.get('f1'))} | {_fmt(r.get('energy_weighted_accuracy'))} | "
                         f"{_fmt(r.get('f1_track_macro'))} | {_fmt(r.get('track_energy_response'))} | "
                         f"{_fmt(r.get('track_energy_resolution'))} | {_fmt(r.get('neutral_energy_recovered'))} | "
                         f"{_fmt((d.get('tracks') or {}).get('f1'))} | "
                         f"{_fmt((d.get('tracks') or {}).get('energy_weighted_accuracy'))} | "
                         f"{_fmt((d.get('events') or {}).get('energy_weighted_accuracy'))} |")
    return lines


def _checks_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """Energy conservation and the MLTree round trip."""
    lines = ["", "## Checks", "",
              f"Energy conservation (|charged + neutral - measured| per event, cell excess, cross-event links) "
              f"within {res['conservation_tolerance_gev']:g} GeV for every method: "
              f"**{'yes' if res['all_conserve'] else 'NO'}**."]
    for name, c in res["conservation"].items():
        v = c.get("max_violation_gev")
        lines.append(f"- {name}: max violation {'n/a' if v is None else f'{v:.1e}'} GeV, "
                     f"cross-event links {c.get('n_cross_event')}")
    rt = res.get("mltree_roundtrip")
    if rt:
        if "error" in rt:
            lines.append(f"\nMLTree round trip: FAILED ({rt['error']})")
        else:
            lines.append(f"\nMLTree round trip ({Path(rt['file']).name}, {rt.get('container', 'ttree')}, "
                         f"{rt['bytes']} bytes): "
                         f"{'ok' if rt['ok'] else 'FAILED'}; events {rt['n_events']}, tracks {rt['n_tracks']}, "
                         f"clustered cells >= 5 MeV {rt['n_clustered_cells']} ({rt.get('n_cells_below_threshold')} "
                         f"below, not stored as in Athena), clusters {rt['n_clusters']} (written, read); "
                         f"max |dE| per event {rt['max_event_energy_diff_gev']:.2e} GeV, per-track truth "
                         f"{rt['max_track_truth_energy_diff_gev']:.2e} GeV (tolerance {rt['tolerance_gev']:.1e}).")
    return lines


def _training_section(res: dict, m: dict, main: list, abl: set, cut, cfg: dict) -> list[str]:
    """Training summaries, timings and plots."""
    lines = ["", "## Training", ""]
    for model, t0 in (res.get("training") or {}).items():
        if "members_seeds" in t0:
            thr = t0.get("threshold")
            lines.append(f"- {model}: mean fraction of the {t0.get('model')} models of seeds {t0['members_seeds']}, "
                         f"decision threshold {'0.5' if thr is None else _fmt(thr)}"
                         f"{' (chosen on the validation events)' if t0.get('threshold_info') else ''}")
            continue
        for t in (t0.get("seeds") or [t0]):
            budget = t.get("budget_minutes")
            thr = t.get("threshold")
            lines.append(f"- {model} seed {t.get('seed', '?')} ({t.get('model')}, target {t.get('target')}, loss "
                         f"{t.get('loss')}): {t.get('n_params')} parameters, {t.get('epochs_run')} epochs (best "
                         f"{t.get('best_epoch')}; budget {'none' if budget is None else f'{budget:g} min'}), "
                         f"{_fmt(t.get('seconds'), 1)} s, {t.get('n_train_clouds')} training clouds, truncated energy "
                         f"fraction {_fmt(t.get('truncated_energy_fraction'))}, decision threshold "
                         f"{'0.5' if thr is None else _fmt(thr)}")
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {_fmt(v, 2)}" for k, v in res["timings"].items()]
    if res.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in res["plots"]]
    return lines


def render_report(res: dict) -> str:
    """``report.md`` from the content of ``results.json`` (a pure function: ``scripts/pflow_report.py`` re-renders
    the report of an earlier run)."""
    cfg = res["config"]
    m = res["methods"]
    abl = set(res.get("ablation") or [])
    main = [n for n in m if n not in abl]
    cut = cfg.get("dense_cut", 0.1)
    lines = []
    for section in (_header, _acceptance_section, _dense_section, _error_budget_section, _ablation_section,
                    _checks_section,
                    _training_section):
        lines += section(res, m, main, abl, cut, cfg)
        if section is _header:
            lines += goal_section(res)
    return "\n".join(lines) + "\n"
