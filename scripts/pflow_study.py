"""The particle-flow study of issue 11: where the learned per-track segmentation stands against the goal (F1 >= 0.80,
energy-weighted accuracy >= 0.93, charged cell share within 0.02 of the truth, iterative better than common below
DeltaR 0.1) and why.

Sub-commands (each writes JSON and PNG files into ``--out``; CPU-sized defaults, ``OMP_NUM_THREADS=2`` recommended):

* ``events``  generate one event sample of the benchmark's generator (``--events``, ``--seed``) and its
  train / val / test splits once (``events.pkl``), so the other sub-commands share them;
* ``curve``   learning curve in the amount of training data: the same model and recipe trained on the first
  ``--sizes`` events of the training split (validation and test splits fixed), evaluated with iterative and common
  inference on the test events (``curve_<size>_s<seed>.json``; ``--plot`` draws ``learning_curve_events.png`` from
  all of them, with the per-epoch losses);
  ``--visible-sigma K`` trains the visible-truth oracle instead (:mod:`pcloud.pflow.visible_oracle`: the same
  model told the true focal fraction of every cell above K sigma; files ``curve_<size>_s<seed>_vis<K>.json``);
  every record holds F1 and energy-weighted accuracy by cell significance;
  ``--residual-from M`` trains on the untouched clouds plus the residual clouds of the saved segmenter M's own
  iterative subtractions on the training events (one round of data aggregation, DAgger:
  :func:`pcloud.pflow.residual_clouds.residual_track_clouds` with ``subtracted``);
* ``losses``  train and validation loss per epoch of every ``curve`` record in ``--out`` (``losses.png``);
* ``errors``  which cells are wrong for a trained segmenter (``--model-file``; several comma-separated files: the
  ensemble of their mean fraction, its threshold chosen on the validation events): error energy by category (neutral
  given to a track, charged left neutral, the wrong track) and by the true dominant share, cell F1 / recall by
  cell significance E / sigma_noise and by layer, and for iterative inference the share of each later track's true
  energy that the tracks of higher pT had already taken at its turn (``taken_before_turn``, dense and isolated
  tracks; :func:`pcloud.pflow.residual_clouds.share_taken_before_turn`) (``errors<tag>.json``);
  ``--device`` (curve, errors) runs the segmenters on a GPU (``scripts/gpu_pflow_study.sh`` drives ``curve`` there);
* ``all``     the benchmark runs the lead re-measures after the simulation retune, then the two studies:
  ``pcloud bench pflow --medium`` (3 seeds), ``--large`` (3 seeds), ``--medium --recipe legacy`` (the recipe before
  issue 11, 3 seeds), the learning curve and the error breakdown; every command is printed before it runs.
"""
from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _events(args):
    from pcloud.bench.pflow.config import PflowConfig
    from pcloud.bench.pflow.events import generate_pflow_events
    from pcloud.core.events import select_events
    from pcloud.data.splits import Splits
    from pcloud.geometry import get_geometry

    cfg = PflowConfig(n_events=args.events, seed=args.seed).resolved()
    t = time.perf_counter()
    ev = generate_pflow_events(get_geometry("atlas"), cfg)
    en = np.arange(ev.n_events)
    sp = Splits(dict(cfg.fractions), seed=cfg.seed)
    parts = {k: select_events(ev, sp.mask(en, k)) for k in ("train", "val", "test")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "events.pkl", "wb") as f:
        pickle.dump(parts, f)
    print(f"{ev.n_events} events in {time.perf_counter() - t:.0f} s: " +
          ", ".join(f"{k} {v.n_events}" for k, v in parts.items()))


def _load(out):
    with open(Path(out) / "events.pkl", "rb") as f:
        return pickle.load(f)


def _evaluate(test, geometry, seg, mask, truth, cleanup_sigma=2.0) -> dict:
    from pcloud.metrics import particle_flow as pm
    from pcloud.pflow.inference import common_inference, iterative_inference

    res = {}
    for inf in ("iterative", "common"):
        a = (iterative_inference(test, geometry, seg, cleanup_sigma=cleanup_sigma) if inf == "iterative"
             else common_inference(test, geometry, seg))
        r = pm.evaluate_attribution(test, a, truth, cell_mask=mask)
        res[inf] = {k: r[k] for k in ("f1", "precision", "recall", "energy_weighted_accuracy",
                                      "charged_fraction_true", "charged_fraction_pred", "track_energy_response",
                                      "track_energy_resolution", "neutral_energy_recovered")}
        res[inf]["by_significance"] = {k: {"f1": b["f1"], "energy_weighted_accuracy": b["energy_weighted_accuracy"],
                                           "n_cells": b["n_cells"], "energy_share": b["energy_share"]}
                                       for k, b in r["by_significance"].items()}
        res[inf]["dense_track_f1"] = r["dense"]["tracks"]["f1"]
        res[inf]["dense_track_ewa"] = r["dense"]["tracks"]["energy_weighted_accuracy"]
        res[inf]["dense_event_ewa"] = r["dense"]["events"]["energy_weighted_accuracy"]
    return res


def _segmenter(args, seed):
    from pcloud.pflow.learned import FocalTrackSegmenter

    kw = json.loads(args.segmenter) if args.segmenter else {}
    if args.visible_sigma is not None:
        from pcloud.pflow.visible_oracle import VISIBLE_TRUTH_FEATURES, VisibleTruthSegmenter

        if kw.get("features") is not None:
            from pcloud.data.point_features import feature_names

            kw["features"] = feature_names(kw["features"]) + VISIBLE_TRUTH_FEATURES
        return VisibleTruthSegmenter(model=args.model, seed=seed, device=args.device,
                                     visible_sigma=args.visible_sigma, **kw)
    return FocalTrackSegmenter(model=args.model, seed=seed, device=args.device, **kw)


def _curve(args):
    import torch

    from pcloud.core.attribution import truth_attribution
    from pcloud.core.events import select_events
    from pcloud.geometry import get_geometry
    from pcloud.pflow.topocluster import topo_cluster_events
    from pcloud.train.trainer import select_device

    torch.set_num_threads(args.threads)
    parts = _load(args.out)
    g = get_geometry("atlas")
    test = parts["test"]
    mask = topo_cluster_events(g, test).cell_cluster >= 0
    truth = truth_attribution(test)
    fit_kw = json.loads(args.fit) if args.fit else {}
    for size in [int(s) for s in args.sizes.split(",")]:
        n = min(size, parts["train"].n_events)
        train = select_events(parts["train"], np.arange(n))
        for seed in [int(s) for s in args.seeds.split(",")]:
            tag = ("" if args.visible_sigma is None else f"_vis{args.visible_sigma:g}") + args.tag
            path = Path(args.out) / f"curve_{n}_s{seed}{tag}.json"
            if path.exists():
                print(f"{path} exists: skipped")
                continue
            seg = _segmenter(args, seed)
            if args.residual_from:
                _train_on_residuals_of(seg, args.residual_from, train, g, args.device)
            t = time.perf_counter()
            info = seg.fit(train, parts["val"], g, log=lambda s: print(f"[{n} events, seed {seed}] {s}", flush=True),
                           **fit_kw)
            sec = time.perf_counter() - t
            res = _evaluate(test, g, seg, mask, truth)
            print(f"[{n} events, seed {seed}] " + "  ".join(f"{k} F1 {v['f1']:.3f} E-acc "
                                                        f"{v['energy_weighted_accuracy']:.3f} share "
                                                        f"{v['charged_fraction_pred']:.3f}" for k, v in res.items()),
                  flush=True)
            rec = {"train_events": n, "seed": seed, "train_clouds": info["n_train_clouds"], "train_seconds": sec,
                   "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"], "threshold": info["threshold"],
                   "history": info["history"], "model": args.model, "segmenter": args.segmenter, "fit": fit_kw,
                   "test_events": test.n_events, "visible_sigma": args.visible_sigma, "tag": args.tag,
                   "device": str(select_device(seg.device_name)), "n_params": info.get("n_params"),
                   "residual_from": args.residual_from, "results": res}
            path.write_text(json.dumps(rec, indent=1, default=float) + "\n")
            if args.save_models:
                seg.save(Path(args.out) / f"model_{n}_s{seed}{tag}.pt")


def _train_on_residuals_of(seg, model_file, train, geometry, device) -> None:
    """Make ``seg`` train on its untouched clouds plus the residual clouds that the saved segmenter ``model_file``'s
    own iterative subtractions (no clean-up) leave on the training events (DAgger, one round)."""
    from pcloud.pflow.inference import iterative_inference
    from pcloud.pflow.learned import FocalTrackSegmenter
    from pcloud.pflow.residual_clouds import track_clouds_with_residuals

    if getattr(seg, "residual_clouds", False):
        raise SystemExit("pflow_study.py curve: --residual-from replaces the teacher-forced residual clouds; drop "
                         "residual_clouds from --segmenter")
    first = FocalTrackSegmenter.load(model_file, device=device)
    t = time.perf_counter()
    took = iterative_inference(train, geometry, first, dr_max=first.dr_max, cleanup_sigma=None)
    print(f"{model_file}: iterative inference on {train.n_events} training events in {time.perf_counter() - t:.0f} s",
          flush=True)

    def make_train_clouds(events, geo):
        if events is not train:
            raise ValueError("--residual-from: the subtractions were made on the training events only")
        return track_clouds_with_residuals(events, geo, subtracted=took, **seg._cloud_kwargs(events, geo))

    seg.make_train_clouds = make_train_clouds


def taken_before_turn(events, geometry, segmenter, dense_dr: float = 0.1, min_true_gev: float = 0.5,
                      took=None) -> dict:
    """Iterative inference without clean-up: for the tracks after their event's first (true share above
    ``min_true_gev``), the part of their true energy the tracks of higher pT had taken when their turn came, for
    tracks with DeltaR to the nearest other particle below / above ``dense_dr``: ``n_tracks``, ``fraction`` (summed
    taken / summed true) and ``median`` (of the per-track fractions). ``took``: the segmenter's iterative
    attribution without clean-up where the caller has it already (else it is computed)."""
    from pcloud.metrics.particle_flow import track_isolation_dr
    from pcloud.pflow.inference import iterative_inference, track_order
    from pcloud.pflow.residual_clouds import share_taken_before_turn

    if took is None:
        took = iterative_inference(events, geometry, segmenter, dr_max=getattr(segmenter, "dr_max", 0.2),
                                   cleanup_sigma=None)
    true, taken = share_taken_before_turn(events, took)
    rows, rank = track_order(events)
    later = np.zeros(true.size, bool)
    later[rows[rank >= 1]] = True
    later &= true > min_true_gev
    iso = track_isolation_dr(events)
    out = {}
    for name, sel in (("dense", later & (iso < dense_dr)), ("isolated", later & (iso >= dense_dr))):
        out[name] = {"n_tracks": int(sel.sum()),
                     "fraction": float(taken[sel].sum() / true[sel].sum()) if sel.any() else float("nan"),
                     "median": float(np.median(taken[sel] / true[sel])) if sel.any() else float("nan")}
    return out


def _losses(args):
    """Train and validation loss per epoch of every curve record in ``--out`` (``losses.png``), one panel per loss
    (the losses of ce and mixed training are not on one scale), one colour per record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = sorted(Path(args.out).glob("curve_*_s*.json"))
    if not paths:
        raise SystemExit(f"no curve_*.json in {args.out}")
    recs = [(p.stem[len("curve_"):], json.loads(p.read_text())) for p in paths]
    def loss_of(r):  # FocalTrackSegmenter's default loss where the record's keywords name none
        return json.loads(r["segmenter"] or "{}").get("loss", "energy_weighted")

    losses = sorted({loss_of(r) for _, r in recs})
    fig, axes = plt.subplots(1, len(losses), figsize=(6.5 * len(losses), 4.2), squeeze=False)
    for i, (name, r) in enumerate(recs):
        ax = axes[0, losses.index(loss_of(r))]
        h = r["history"]
        ep = [x["epoch"] for x in h]
        c = plt.cm.tab10(i % 10)
        ax.plot(ep, [x["train_loss"] for x in h], "--", color=c, lw=1, label=f"{name} train")
        ax.plot(ep, [x["val_loss"] for x in h], "-", color=c, lw=1.5, label=f"{name} val")
        ax.plot([r["best_epoch"]], [h[r["best_epoch"]]["val_loss"]], "o", color=c)
    for ax, loss in zip(axes[0], losses):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{loss} loss per cell")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{recs[0][1]['model']}: training and validation loss (dot: best epoch, the model kept)", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(args.out) / "losses.png", dpi=90)
    print(f"wrote {Path(args.out) / 'losses.png'}")


def _plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(p.read_text()) for p in sorted(Path(args.out).glob("curve_*_s*.json"))]
    # one series: not the oracle's records, and those of this --tag only (records without a tag field have none)
    recs = [r for r in recs if r.get("visible_sigma") is None and r.get("tag", "") == args.tag]
    if not recs:
        raise SystemExit(f"no curve_*.json of tag {args.tag!r} in {args.out}")
    sizes = sorted({r["train_events"] for r in recs})
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    table = []
    for inf, style in (("iterative", "-"), ("common", "--")):
        for ax, key, label in ((axes[0], "f1", "cell F1"), (axes[1], "energy_weighted_accuracy", "E-weighted accuracy"),
                               (axes[2], "charged_fraction_pred", "predicted charged cell share")):
            m, s = [], []
            for n in sizes:
                v = [r["results"][inf][key] for r in recs if r["train_events"] == n]
                m.append(np.mean(v))
                s.append(np.std(v, ddof=1) if len(v) > 1 else 0.0)
            ax.errorbar(sizes, m, yerr=s, fmt=style + "o", capsize=3, label=inf)
            ax.set_xscale("log")
            ax.set_xlabel("training events")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    for n in sizes:
        rs = [r for r in recs if r["train_events"] == n]
        row = {"train_events": n, "seeds": len(rs)}
        for inf in ("iterative", "common"):
            for key in ("f1", "energy_weighted_accuracy", "charged_fraction_pred", "dense_track_ewa"):
                v = [r["results"][inf][key] for r in rs]
                row[f"{inf}_{key}"] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
        row["charged_fraction_true"] = rs[0]["results"]["iterative"]["charged_fraction_true"]
        row["train_minutes"] = float(np.mean([r["train_seconds"] for r in rs]) / 60)
        table.append(row)
    axes[0].axhline(0.80, color="k", lw=0.8, ls=":")
    axes[1].axhline(0.93, color="k", lw=0.8, ls=":")
    axes[2].axhline(table[0]["charged_fraction_true"], color="k", lw=0.8, ls=":")
    for r in recs:
        h = r["history"]
        axes[3].plot([x["epoch"] for x in h], [x["val_loss"] for x in h], "-",
                     color=plt.cm.viridis(sizes.index(r["train_events"]) / max(len(sizes) - 1, 1)), lw=1)
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("validation loss (colour: training events)")
    axes[3].grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"learning curve: {recs[0]['model']} {recs[0]['segmenter'] or ''} (dotted: goal / true share)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(args.out) / "learning_curve_events.png", dpi=90)
    (Path(args.out) / "curve_table.json").write_text(json.dumps(table, indent=1) + "\n")
    print("| training events | seeds | F1 iterative | E-acc iterative | share iterative | F1 common | E-acc common | "
          "dense track E-acc it / co | train min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        f = (lambda k: f"{r[k][0]:.3f} ± {r[k][1]:.3f}")
        print(f"| {r['train_events']} | {r['seeds']} | {f('iterative_f1')} | {f('iterative_energy_weighted_accuracy')} | "
              f"{f('iterative_charged_fraction_pred')} (true {r['charged_fraction_true']:.3f}) | {f('common_f1')} | "
              f"{f('common_energy_weighted_accuracy')} | {r['iterative_dense_track_ewa'][0]:.3f} / "
              f"{r['common_dense_track_ewa'][0]:.3f} | {r['train_minutes']:.1f} |")


def _errors(args):
    import torch

    from pcloud.core.attribution import truth_attribution
    from pcloud.geometry import get_geometry
    from pcloud.metrics import particle_flow as pm
    from pcloud.pflow.inference import clean_up_leftovers, common_inference, iterative_inference
    from pcloud.pflow.learned import FocalTrackSegmenter, SegmenterEnsemble
    from pcloud.pflow.topocluster import topo_cluster_events

    torch.set_num_threads(args.threads)
    files = [f for f in (args.model_file or "").split(",") if f]
    if not files:
        raise SystemExit("pflow_study.py errors: --model-file names no saved segmenter")
    parts = _load(args.out)
    test = parts["test"]
    g = get_geometry("atlas")
    if len(files) == 1:
        seg = FocalTrackSegmenter.load(files[0], device=args.device)
    else:  # the members' mean fraction, its decision threshold chosen on the validation events
        seg = SegmenterEnsemble([FocalTrackSegmenter.load(f, device=args.device) for f in files])
        print(f"ensemble of {len(files)}: threshold {seg.choose_threshold(parts['val'], g, seg.threshold_metric):.3f}"
              " (val)", flush=True)
    mask = topo_cluster_events(g, test).cell_cluster >= 0
    truth = truth_attribution(test)
    out = {"model_file": files, "threshold": seg.threshold}
    dr_max = getattr(seg, "dr_max", 0.2)
    raw = iterative_inference(test, g, seg, dr_max=dr_max, cleanup_sigma=None)  # one pass; the metrics add the clean-up
    for inf in ("iterative", "common", "iterative_truth_subtracted"):
        a = (clean_up_leftovers(test, raw) if inf == "iterative" else common_inference(test, g, seg, dr_max=dr_max)
             if inf == "common" else iterative_truth_subtracted(test, g, seg, truth))
        r = pm.evaluate_attribution(test, a, truth, cell_mask=mask, keep_arrays=True)
        out[inf] = error_breakdown(test, g, truth, a, r)
        out[inf]["dense_tracks"] = {k: r["dense"]["tracks"][k] for k in ("n_tracks", "f1", "energy_weighted_accuracy",
                                                                          "response_median", "resolution")}
        out[inf]["charged_fraction_pred"] = r["charged_fraction_pred"]
        print(inf, f"F1 {r['f1']:.3f} E-acc {r['energy_weighted_accuracy']:.3f} dense track F1 "
              f"{r['dense']['tracks']['f1']:.3f} E-acc {r['dense']['tracks']['energy_weighted_accuracy']:.3f}",
              json.dumps(out[inf]["categories"], default=float), flush=True)
        out[inf]["metrics"] = {k: r[k] for k in ("f1", "precision", "recall", "energy_weighted_accuracy",
                                                  "charged_fraction_true", "track_energy_resolution")}
    out["iterative"]["taken_before_turn"] = taken_before_turn(test, g, seg, took=raw)
    print("taken before turn", json.dumps(out["iterative"]["taken_before_turn"]), flush=True)
    (Path(args.out) / f"errors{args.tag}.json").write_text(json.dumps(out, indent=1, default=float) + "\n")


def iterative_truth_subtracted(events, geometry, segmenter, truth):
    """Iterative inference where the energy taken by the tracks of higher pT is the *true* one (their truth share
    subtracted before the next track's cloud is built), while each track's own share is the model's prediction on
    that cloud: separates the propagation of earlier prediction errors (absent here) from how the model copes with
    subtracted clouds at all."""
    from pcloud.core.attribution import Attribution
    from pcloud.pflow.clouds import cloud_cell_rows, cloud_track_rows, track_clouds
    from pcloud.pflow.inference import _merge, track_order

    e0 = np.asarray(events.cells["energy_gev"], np.float64)
    rows, rank = track_order(events)
    mask = segmenter.cloud_cell_mask(events, geometry)
    rank_of = np.full(events.tracks["event"].size, -1, np.int64)
    rank_of[rows] = rank
    t_rank = rank_of[truth.track_row]
    t_pos = e0[truth.cell_row] > 0  # only positive cells are ever attributed
    e_cur = e0.copy()
    crs, trs, es = [], [], []
    for k in range(int(rank.max()) + 1 if rank.size else 0):
        sel = rows[rank == k]
        clouds = track_clouds(events, geometry, dr_max=getattr(segmenter, "dr_max", 0.2), cell_energy_gev=e_cur,
                              tracks=sel, cell_mask=mask, cell_graph=getattr(segmenter, "needs_cell_graph", False))
        crow, trow = cloud_cell_rows(clouds), cloud_track_rows(clouds)
        f = np.clip(segmenter.predict_fraction(clouds), 0, 1)
        crs.append(crow), trs.append(trow), es.append(f * np.clip(e_cur[crow], 0, None))
        # then subtract the truth of these tracks (teacher forcing); the shares are >= 0, so clamping at 0 once
        # after summing equals clamping after each share
        m = (t_rank == k) & t_pos
        np.subtract.at(e_cur, truth.cell_row[m], truth.energy_gev[m])
        hit = truth.cell_row[m]
        e_cur[hit] = np.maximum(e_cur[hit], 0.0)
    if not crs:
        return Attribution(np.zeros(0), np.zeros(0), np.zeros(0), method="iterative_truth_subtracted")
    return _merge(np.concatenate(crs), np.concatenate(trs), np.concatenate(es), events.tracks["event"].size,
                  "iterative_truth_subtracted")


def error_breakdown(events, geometry, truth, pred, r) -> dict:
    """Which evaluated cells carry the wrong label: energy share of each error category, split by the true dominant
    share of the cell; cell F1 and recall by significance E / sigma_noise and by layer."""
    A = r["arrays"]
    sel = A["evaluated"]
    e = np.asarray(events.cells["energy_gev"], np.float64)
    lt, lp = A["label_true"][sel], A["label_pred"][sel]
    E = e[sel]
    W = E.sum()
    sig = E / np.asarray(events.cells["noise_sigma_gev"], np.float64)[sel]
    o = np.lexsort((-truth.energy_gev, truth.cell_row))
    k = truth.cell_row[o]
    first = np.r_[True, k[1:] != k[:-1]] if k.size else np.zeros(0, bool)
    top = np.zeros(e.size)
    top[k[first]] = truth.energy_gev[o][first]
    share = top[sel] / E
    cats = {"neutral_to_track": (lt < 0) & (lp >= 0), "track_to_neutral": (lt >= 0) & (lp < 0),
            "wrong_track": (lt >= 0) & (lp >= 0) & (lt != lp)}
    edges = (0.0, 0.3, 0.45, 0.55, 0.7, 1.01)
    res = {"categories": {}, "by_significance": [], "by_layer": [],
           "energy_weighted_accuracy": float(E[lt == lp].sum() / W), "f1": r["f1"]}
    for name, m in cats.items():
        res["categories"][name] = {
            "cells": int(m.sum()), "energy_share": float(E[m].sum() / W),
            "by_true_top_track_share": {f"{lo:g}-{hi:g}": float(E[m & (share >= lo) & (share < hi)].sum() / W)
                                        for lo, hi in zip(edges[:-1], edges[1:])}}
    ct, cp = lt >= 0, lp >= 0
    for lo, hi in ((0, 1), (1, 2), (2, 4), (4, 10), (10, np.inf)):
        m = (sig >= lo) & (sig < hi)
        tp, fp, fn = float((ct & cp & m).sum()), float((~ct & cp & m).sum()), float((ct & ~cp & m).sum())
        res["by_significance"].append({"range": f"{lo:g}-{hi:g}", "cells": int(m.sum()), "true_charged": float(ct[m].mean())
                                       if m.any() else None, "pred_charged": float(cp[m].mean()) if m.any() else None,
                                       "f1": 2 * tp / max(2 * tp + fp + fn, 1), "recall": tp / max(tp + fn, 1),
                                       "energy_share": float(E[m].sum() / W)})
    layer = np.asarray(geometry.cells["layer"])[np.asarray(events.cells["id"])[sel]]
    for L in np.unique(layer):
        m = layer == L
        tp, fp, fn = float((ct & cp & m).sum()), float((~ct & cp & m).sum()), float((ct & ~cp & m).sum())
        res["by_layer"].append({"layer": int(L), "cells": int(m.sum()), "f1": 2 * tp / max(2 * tp + fp + fn, 1),
                                "energy_weighted_accuracy": float(E[m & (lt == lp)].sum() / max(E[m].sum(), 1e-12))})
    return res


ALL_COMMANDS = [
    "pcloud bench pflow --medium --out {out}/medium",
    "pcloud bench pflow --large --out {out}/large",
    "pcloud bench pflow --medium --recipe legacy --no-ablation --models pointnet,dgcnn --out {out}/medium_legacy",
    "{py} scripts/pflow_study.py events --events 9000 --out {out}/curve",
    "{py} scripts/pflow_study.py curve --sizes 500,1000,2000,4000,6300 --seeds 1,2 --save-models --out {out}/curve",
    "{py} scripts/pflow_study.py plot --out {out}/curve",
    "{py} scripts/pflow_study.py errors --model-file {out}/curve/model_6300_s1.pt --out {out}/curve",
]


def _all(args):
    for c in ALL_COMMANDS:
        cmd = c.format(out=args.out, py=sys.executable)
        print(f"$ {cmd}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, shell=True)
        print(f"# exit {rc} after {time.perf_counter() - t:.0f} s", flush=True)
        if rc:
            raise SystemExit(rc)


#: the recipe of the learning curve (the benchmark's large-mode recipe; change with --segmenter / --fit)
CURVE_SEGMENTER = {"cells": "topo", "loss": "ce", "threshold": "val", "max_points": 256}
CURVE_FIT = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "patience": 4, "optimizer": "adamw", "schedule": "cosine",
             "warmup": 0.05, "weight_decay": 1e-4}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("events", "curve", "plot", "losses", "errors", "all"))
    ap.add_argument("--out", default="out/pflow_study")
    ap.add_argument("--events", type=int, default=9000)
    ap.add_argument("--seed", type=int, default=1, help="generation and split seed")
    ap.add_argument("--sizes", default="500,1000,2000,4000,6300", help="training events of the learning curve")
    ap.add_argument("--seeds", default="1,2", help="training seeds of the learning curve")
    ap.add_argument("--model", default="pointnet")
    ap.add_argument("--segmenter", default=json.dumps(CURVE_SEGMENTER), help="FocalTrackSegmenter keywords (JSON)")
    ap.add_argument("--fit", default=json.dumps(CURVE_FIT), help="fit keywords (JSON)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                    help="torch device of the segmenters of curve and errors (default cpu)")
    ap.add_argument("--tag", default="",
                    help="curve / errors: suffix of the output file names (e.g. _mixed); plot: the series to draw")
    ap.add_argument("--save-models", action="store_true")
    ap.add_argument("--model-file", default=None,
                    help="errors: a saved FocalTrackSegmenter, or several (comma-separated) for their ensemble")
    ap.add_argument("--residual-from", default=None,
                    help="curve: also train on the residual clouds of this saved segmenter's own iterative "
                         "subtractions on the training events (DAgger, one round)")
    ap.add_argument("--visible-sigma", type=float, default=None,
                    help="curve: train the visible-truth oracle (told the truth of every cell above this many sigma)")
    args = ap.parse_args(argv)
    commands = {"events": _events, "curve": _curve, "plot": _plot, "losses": _losses, "errors": _errors, "all": _all}
    commands[args.command](args)


if __name__ == "__main__":
    main()
