"""``pcloud bench pflow``: learned per-track cell segmentation against rule-based and trivial particle flow.

Recipe (seed 002: JetPointNet on rho and Delta events; ATLAS rule-based particle flow as the reference):

1. Events: the built-in gun (:func:`pcloud.sim.events.generate_events`) in the ``atlas`` geometry, a mixture of
   rho+- -> pi+- pi0 and Delta++/+ -> N pi parents with 1-3 parents per event, the 2nd and 3rd placed at small
   DeltaR from the first (dense environments). Event number = generation index.
2. Splits by event number (:class:`pcloud.data.splits.Splits`, seeded, saved as ``splits.json``): train/val/test.
3. Learned models: :class:`pcloud.pflow.learned.FocalTrackSegmenter` (``pointnet`` and ``dgcnn``; soft target with
   the energy-weighted loss by default), trained on train, early-stopped on val; each used with iterative and common
   inference (:mod:`pcloud.pflow.inference`). The oracle segmenter (true focal fractions) with iterative inference
   is the upper bound.
4. Baselines on the same test events: :func:`~pcloud.pflow.baselines.rule_based` (topo-clusters + ATLAS E/p cell
   subtraction), :func:`~pcloud.pflow.baselines.dr_nearest`, :func:`~pcloud.pflow.baselines.random_baseline` (charged
   prior from the training split) and :func:`~pcloud.pflow.baselines.trivial` (training-split majority class).
5. Every method's Attribution must conserve energy to 1e-6 GeV (:func:`pcloud.pflow.metrics.energy_conservation`);
   metrics (:func:`pcloud.pflow.metrics.evaluate_attribution`) on the topo-clustered cells of the test events.
6. MLTree round trip: the test events and their topo-clusters are written with :func:`pcloud.io.mltree.write_mltree`,
   read back, and events/tracks/clustered cells/energies/truth compared.

Outputs in ``--out``: ``results.json`` (``{"methods": {METHOD: {...}}, "config": {...}, ...}``), ``report.md``,
``splits.json``, ``test_events.root`` and PNG plots (metrics vs DeltaR, response, event displays).
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CONSERVATION_TOL_GEV = 1e-6
LEARNED_MODELS = ("pointnet", "dgcnn")
BASELINES = ("rule_based", "dr_nearest", "random", "trivial")


@dataclass
class PflowConfig:
    out: str = "out/bench_pflow"
    quick: bool = False
    device: str = "auto"
    seed: int = 1
    n_events: int | None = None          # default 4000 (quick: 600)
    epochs: int | None = None            # default 15 (quick: 2)
    models: list = field(default_factory=lambda: list(LEARNED_MODELS))
    target: str = "soft"
    loss: str = "energy_weighted"
    dr_max: float = 0.2
    max_points: int | None = None        # default 256 (quick: 128)
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 3
    max_minutes: float | None = None     # per model training (quick: 1.0)
    model_cfg: dict = field(default_factory=dict)
    parents: list = field(default_factory=lambda: ["rho", "delta"])
    energy_gev: tuple = (10.0, 100.0)
    n_parents: tuple = (1, 3)
    parent_dr: tuple = (0.02, 0.3)
    fractions: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    cleanup_sigma: float = 2.0
    write_mltree: bool = True
    plots: bool = True
    n_displays: int = 2

    def resolved(self) -> "PflowConfig":
        c = PflowConfig(**asdict(self))
        if c.n_events is None:
            c.n_events = 600 if c.quick else 4000
        if c.epochs is None:
            c.epochs = 2 if c.quick else 15
        if c.max_points is None:
            c.max_points = 128 if c.quick else 256
        if c.max_minutes is None and c.quick:
            c.max_minutes = 1.0
        if c.n_events < 10:
            raise ValueError(f"bench pflow: need at least 10 events, found n_events = {c.n_events}")
        unknown = [m for m in c.models if m not in LEARNED_MODELS]
        if unknown:
            raise ValueError(f"bench pflow: unknown models {unknown}; known: {list(LEARNED_MODELS)}")
        return c


# ---------------------------------------------------------------------------------------------------- events
def select_events(events, which):
    """The events ``which`` (bool mask over events, or sorted indices) of a TrackCellEvents as a new one, rows and
    cross-references (hits -> cells/particles, tracks -> particles, particles -> parents) renumbered. The original
    event numbers are kept in ``meta["event_number"]``."""
    from ..sim.events import TrackCellEvents

    n = events.n_events
    w = np.asarray(which)
    keep = w.astype(bool) if w.dtype == bool else np.isin(np.arange(n), w)
    if keep.shape != (n,):
        raise ValueError(f"select_events: mask must have one entry per event ({n}), found shape {keep.shape}")
    new_ev = np.cumsum(keep) - 1

    def rows(group):
        m = keep[group["event"]]
        remap = np.full(m.size, -1, np.int64)
        remap[m] = np.arange(int(m.sum()))
        return m, remap

    pm, p_map = rows(events.particles)
    rm, r_map = rows(events.parents)
    tm, _ = rows(events.tracks)
    cm, c_map = rows(events.cells)
    hm = cm[events.hits["cell"]]
    particles = {k: v[pm] for k, v in events.particles.items()}
    particles["event"] = new_ev[particles["event"]]
    par = particles["parent"]
    particles["parent"] = np.where(par >= 0, r_map[np.maximum(par, 0)], -1)
    parents = {k: v[rm] for k, v in events.parents.items()}
    parents["event"] = new_ev[parents["event"]]
    tracks = {k: v[tm] for k, v in events.tracks.items()}
    tracks["event"] = new_ev[tracks["event"]]
    tracks["particle"] = p_map[tracks["particle"]]
    cells = {k: v[cm] for k, v in events.cells.items()}
    cells["event"] = new_ev[cells["event"]]
    hits = {k: v[hm] for k, v in events.hits.items()}
    hits["cell"] = c_map[hits["cell"]]
    hits["particle"] = p_map[hits["particle"]]
    old_en = np.asarray(events.meta.get("event_number", np.arange(n)), np.int64)
    meta = {**events.meta, "event_number": old_en[keep]}
    return TrackCellEvents(n_events=int(keep.sum()), geometry_name=events.geometry_name,
                           layer_names=list(events.layer_names), particles=particles, parents=parents, tracks=tracks,
                           cells=cells, hits=hits, meta=meta)


def generate_pflow_events(geometry, cfg: PflowConfig):
    """The benchmark events of ``cfg`` (see the module docstring)."""
    from ..sim.events import generate_events

    rng = np.random.default_rng(cfg.seed)
    return generate_events(geometry, cfg.n_events, rng, parent=list(cfg.parents), energy_gev=tuple(cfg.energy_gev),
                           n_parents=tuple(cfg.n_parents), dr=tuple(cfg.parent_dr))


# ---------------------------------------------------------------------------------------------------- MLTree
def mltree_roundtrip(events, clusters, geometry, path) -> dict:
    """Write ``events`` + ``clusters`` as an MLTree file, read it back and compare (float32 tolerances)."""
    from ..io.mltree import read_mltree, write_mltree
    from ..pflow.attribution import truth_attribution

    t0 = time.perf_counter()
    write_mltree(path, events, clusters, geometry)
    back = read_mltree(path, geometry)
    ev2 = back.events
    clustered = clusters.cell_cluster >= 0
    e1 = np.bincount(events.cells["event"][clustered], events.cells["energy_gev"][clustered],
                     minlength=events.n_events)
    e2 = np.bincount(ev2.cells["event"], ev2.cells["energy_gev"], minlength=ev2.n_events)
    ta1 = truth_attribution(events)
    keep = clustered[ta1.cell_row]
    t1 = np.bincount(ta1.track_row[keep], ta1.energy_gev[keep], minlength=events.tracks["event"].size)
    ta2 = truth_attribution(ev2)
    t2 = np.bincount(ta2.track_row, ta2.energy_gev, minlength=ev2.tracks["event"].size)
    out = {"file": str(path), "bytes": int(Path(path).stat().st_size), "seconds": time.perf_counter() - t0,
           "n_events": [int(events.n_events), int(ev2.n_events)],
           "n_tracks": [int(events.tracks["event"].size), int(ev2.tracks["event"].size)],
           "n_clustered_cells": [int(clustered.sum()), int(ev2.cells["event"].size)],
           "n_clusters": [int(len(clusters)), int(len(back.clusters))]}
    same_shape = (out["n_events"][0] == out["n_events"][1] and out["n_tracks"][0] == out["n_tracks"][1]
                  and out["n_clustered_cells"][0] == out["n_clustered_cells"][1])
    out["max_event_energy_diff_gev"] = float(np.max(np.abs(e1 - e2))) if same_shape and e1.size else float("nan")
    out["max_track_truth_energy_diff_gev"] = float(np.max(np.abs(t1 - t2))) if same_shape and t1.size else \
        float("nan")
    # float32 storage: relative 1e-6 of the energies involved, plus a few ulp per cell summed
    tol = 1e-5 * max(1.0, float(np.abs(events.cells["energy_gev"][clustered]).max(initial=1.0))) * 10
    out["ok"] = bool(same_shape and out["max_event_energy_diff_gev"] < tol
                     and out["max_track_truth_energy_diff_gev"] < tol)
    out["tolerance_gev"] = tol
    out["reader_meta"] = {k: v for k, v in back.meta.items() if isinstance(v, (int, float, str, bool))}
    return out


# ---------------------------------------------------------------------------------------------------- the run
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if k != "arrays"}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def run_pflow(cfg: PflowConfig | None = None, log=print) -> dict:
    """Run the benchmark of the module docstring; returns the ``results.json`` content."""
    from ..data.splits import Splits
    from ..geometry import get_geometry
    from ..pflow import baselines as bl
    from ..pflow import metrics as pm
    from ..pflow.inference import common_inference, iterative_inference
    from ..pflow.learned import FocalTrackSegmenter, OracleSegmenter
    from ..pflow.topocluster import topo_cluster_events

    cfg = (cfg or PflowConfig()).resolved()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings = {}
    geometry = get_geometry("atlas")

    t0 = time.perf_counter()
    events = generate_pflow_events(geometry, cfg)
    timings["generate_s"] = time.perf_counter() - t0
    event_number = np.arange(events.n_events, dtype=np.int64)
    splits = Splits(dict(cfg.fractions), seed=cfg.seed)
    splits.save(out / "splits.json", event_number)
    parts = {name: select_events(events, splits.mask(event_number, name)) for name in ("train", "val", "test")}
    counts = {k: int(v.n_events) for k, v in parts.items()}
    if min(counts.values()) == 0:
        raise ValueError(f"bench pflow: an empty split {counts}; use more events (n_events = {cfg.n_events})")
    train, val, test = parts["train"], parts["val"], parts["test"]
    log(f"[pflow] {events.n_events} events ({counts}), {events.tracks['event'].size} tracks, "
        f"{events.cells['event'].size} cells, generated in {timings['generate_s']:.1f} s")

    cl_train = topo_cluster_events(geometry, train)
    cl_test = topo_cluster_events(geometry, test)
    mask_train = cl_train.cell_cluster >= 0
    mask_test = cl_test.cell_cluster >= 0
    prior = bl.charged_prior(train, geometry, cfg.dr_max, cell_mask=mask_train)
    majority = bl.majority_class(train, cell_mask=mask_train)

    attributions, training, seconds = {}, {}, {}

    def timed(name, fn):
        t = time.perf_counter()
        a = fn()
        seconds[name] = time.perf_counter() - t
        attributions[name] = a
        return a

    # ---- learned models
    for model in cfg.models:
        seg = FocalTrackSegmenter(model=model, target=cfg.target, loss=cfg.loss, dr_max=cfg.dr_max,
                                  max_points=cfg.max_points, device=cfg.device, seed=cfg.seed, **cfg.model_cfg)
        t = time.perf_counter()
        info = seg.fit(train, val, geometry, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                       patience=cfg.patience, max_minutes=cfg.max_minutes, log=lambda s: log(f"[pflow:{model}] {s}"))
        seconds[f"{model}_train"] = time.perf_counter() - t
        training[model] = {k: v for k, v in info.items() if k != "history"}
        training[model]["history"] = info.get("history")
        log(f"[pflow] {model}: {info.get('n_params')} parameters, {info.get('epochs_run')} epochs in "
            f"{seconds[f'{model}_train']:.1f} s")
        timed(f"{model}_iterative", lambda: iterative_inference(test, geometry, seg, dr_max=cfg.dr_max,
                                                                cleanup_sigma=cfg.cleanup_sigma))
        timed(f"{model}_common", lambda: common_inference(test, geometry, seg, dr_max=cfg.dr_max))
    oracle = OracleSegmenter(test)
    timed("oracle_iterative", lambda: iterative_inference(test, geometry, oracle, dr_max=cfg.dr_max,
                                                          cleanup_sigma=cfg.cleanup_sigma))
    timed("oracle_common", lambda: common_inference(test, geometry, oracle, dr_max=cfg.dr_max))
    # ---- baselines
    timed("rule_based", lambda: bl.rule_based(test, geometry, clusters=cl_test))
    timed("dr_nearest", lambda: bl.dr_nearest(test, geometry, dr_max=cfg.dr_max))
    timed("random", lambda: bl.random_baseline(test, prior, seed=cfg.seed, geometry=geometry, dr_max=cfg.dr_max))
    timed("trivial", lambda: bl.trivial(test, majority, geometry))

    # ---- conservation + metrics
    truth = pm.truth_attribution(test)
    methods, per_track, conservation = {}, {}, {}
    for name, a in attributions.items():
        cons = pm.energy_conservation(test, a)
        cons["ok"] = bool(cons["max_violation_gev"] <= CONSERVATION_TOL_GEV and cons["n_cross_event"] == 0)
        conservation[name] = cons
        r = pm.evaluate_attribution(test, a, truth, cell_mask=mask_test, keep_arrays=True)
        arrays = r.pop("arrays")
        per_track[name] = (arrays["e_true_gev"], arrays["e_pred_gev"])
        r["seconds"] = seconds.get(name)
        r["conservation_ok"] = cons["ok"]
        methods[name] = r
        log(f"[pflow] {name:18s} F1 {r['f1']:.3f}  IoU {r['iou']:.3f}  E-acc {r['energy_weighted_accuracy']:.3f}  "
            f"resp {r['track_energy_response']:.3f}  res {r['track_energy_resolution']:.3f}  "
            f"neutral {r['neutral_energy_recovered']:.3f}  conservation {cons['max_violation_gev']:.1e} GeV")

    # ---- MLTree round trip
    roundtrip = None
    if cfg.write_mltree:
        try:
            roundtrip = mltree_roundtrip(test, cl_test, geometry, out / "test_events.root")
        except Exception as err:  # noqa: BLE001 - reported, not fatal for the metrics
            roundtrip = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        log(f"[pflow] MLTree round trip: {'ok' if roundtrip.get('ok') else 'FAILED'}")

    # ---- plots
    plots = []
    if cfg.plots:
        plots = _make_plots(out, test, geometry, methods, per_track, attributions, truth, cfg)

    timings["total_s"] = time.perf_counter() - t_start
    results = {"methods": methods, "config": {**asdict(cfg), "geometry": geometry.name,
                                              "evaluated_cells": "topo-clustered cells with E > 0 (test split)",
                                              "charged_prior_train": prior, "majority_train": majority},
               "splits": {"counts": counts, **splits.to_dict()}, "training": training,
               "conservation": conservation, "conservation_tolerance_gev": CONSERVATION_TOL_GEV,
               "all_conserve": all(c["ok"] for c in conservation.values()), "mltree_roundtrip": roundtrip,
               "timings": {**timings, **{f"{k}_s": v for k, v in seconds.items()}}, "plots": plots,
               "environment": {"python": platform.python_version(), "machine": platform.machine()}}
    results = _jsonable(results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(_report(results))
    log(f"[pflow] wrote {out / 'results.json'} and {out / 'report.md'} in {timings['total_s']:.1f} s")
    return results


def _make_plots(out, test, geometry, methods, per_track, attributions, truth, cfg) -> list:
    from ..plots import pflow as pp

    files = [pp.plot_metrics_vs_dr(methods, out / "metrics_vs_dr.png"),
             pp.plot_response(per_track, out / "response.png")]
    e = test.cells["energy_gev"]
    n_c = e.size
    # displays of the densest test events (most tracks, then most energy)
    ntrk = np.diff(test.track_offsets)
    e_ev = np.bincount(test.cells["event"], np.clip(e, 0, None), minlength=test.n_events)
    order = np.lexsort((-e_ev, -ntrk))
    show = [m for m in ("pointnet_iterative", "dgcnn_iterative", "rule_based", "dr_nearest") if m in attributions]
    for i in order[:cfg.n_displays]:
        labels = {"truth": truth.dominant_track(n_c, e)}
        labels.update({m: attributions[m].dominant_track(n_c, e) for m in show})
        files.append(pp.plot_event_attribution(test, geometry, labels, int(i), out / f"event_{int(i)}.png"))
    return [Path(f).name for f in files]


def _fmt(v, nd=3):
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _report(res: dict) -> str:
    cfg = res["config"]
    m = res["methods"]
    keys = ("f1", "iou", "accuracy", "energy_weighted_accuracy", "f1_track_macro", "soft_overlap",
            "track_energy_response", "track_energy_resolution", "neutral_energy_recovered")
    lines = ["# pcloud bench pflow", "",
             f"Events: {cfg['n_events']} ({', '.join(cfg['parents'])}; {cfg['n_parents'][0]}-{cfg['n_parents'][1]} "
             f"parents at DeltaR {cfg['parent_dr'][0]}-{cfg['parent_dr'][1]}; E {cfg['energy_gev'][0]}-"
             f"{cfg['energy_gev'][1]} GeV), splits {res['splits']['counts']} (seed {cfg['seed']}). "
             f"Geometry {cfg['geometry']} (pcloud parametrised fast simulation, not Geant4).",
             f"Evaluated cells: {cfg['evaluated_cells']}. Learned: target `{cfg['target']}`, loss `{cfg['loss']}`, "
             f"{cfg['epochs']} epochs max, max_points {cfg['max_points']}, dr_max {cfg['dr_max']}.", "",
             "## Methods (test split)", "",
             "| method | " + " | ".join(keys) + " | conserves |", "|" + "---|" * (len(keys) + 2)]
    for name, r in m.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k in keys) +
                     f" | {'yes' if r.get('conservation_ok') else 'NO'} |")
    lines += ["", "F1/IoU: charged vs neutral cells (dominant contribution); accuracy: right track or neutral; "
              "energy_weighted_accuracy weights cells by E; f1_track_macro: per-track focal F1 averaged; "
              "soft_overlap: energy overlap of per-cell fractions; response/resolution: median and robust width of "
              "E_attributed/E_true per track; neutral_energy_recovered: median per-event predicted/true neutral "
              "energy.", "",
              "## By DeltaR(track, nearest other truth particle)", ""]
    bins = None
    for name, r in m.items():
        by = r.get("by_dr") or {}
        if bins is None and by:
            bins = list(by)
            lines += ["| method | metric | " + " | ".join(bins) + " |", "|" + "---|" * (len(bins) + 2)]
        for key in ("f1", "soft_iou", "response_median", "resolution"):
            lines.append(f"| {name} | {key} | " + " | ".join(_fmt(by[b].get(key)) for b in bins) + " |")
    if bins:
        first = next(iter(m.values()))["by_dr"]
        lines.append("| tracks | n | " + " | ".join(str(first[b]["n_tracks"]) for b in bins) + " |")
    lines += ["", "## Checks", "",
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
            lines.append(f"\nMLTree round trip ({Path(rt['file']).name}, {rt['bytes']} bytes): "
                         f"{'ok' if rt['ok'] else 'FAILED'}; events {rt['n_events']}, tracks {rt['n_tracks']}, "
                         f"clustered cells {rt['n_clustered_cells']}, clusters {rt['n_clusters']} (written, read); "
                         f"max |dE| per event {rt['max_event_energy_diff_gev']:.2e} GeV, per-track truth "
                         f"{rt['max_track_truth_energy_diff_gev']:.2e} GeV (tolerance {rt['tolerance_gev']:.1e}).")
    lines += ["", "## Training", ""]
    for model, t in (res.get("training") or {}).items():
        lines.append(f"- {model}: {t.get('n_params')} parameters, {t.get('epochs_run')} epochs "
                     f"(best {t.get('best_epoch')}), {_fmt(t.get('seconds'), 1)} s, {t.get('n_train_clouds')} "
                     f"training clouds, truncated energy fraction {_fmt(t.get('truncated_energy_fraction'))}")
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {_fmt(v, 2)}" for k, v in res["timings"].items()]
    if res.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in res["plots"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- CLI
def register(sub) -> None:
    """Add ``pflow`` to an argparse sub-parsers object (``pcloud bench pflow ...``)."""
    p = sub.add_parser("pflow", help="particle-flow segmentation benchmark (learned vs rule-based vs trivial)")
    p.add_argument("--quick", action="store_true", help="small configuration (600 events, 2 epochs; < 5 min on CPU)")
    p.add_argument("--out", default="out/bench_pflow", help="output folder (default out/bench_pflow)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--events", type=int, default=None, help="number of generated events")
    p.add_argument("--epochs", type=int, default=None, help="maximum training epochs per model")
    p.add_argument("--seed", type=int, default=1, help="seed of generation, splits and training")
    p.add_argument("--models", default=",".join(LEARNED_MODELS), help="comma-separated learned models")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    cfg = PflowConfig(out=args.out, quick=args.quick, device=args.device, n_events=args.events, epochs=args.epochs,
                      seed=args.seed, models=[m for m in args.models.split(",") if m])
    res = run_pflow(cfg)
    return 0 if res["all_conserve"] else 1
