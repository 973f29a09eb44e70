"""``pcloud bench pflow``: learned per-track cell segmentation against rule-based and trivial particle flow.

Recipe (seed 002: JetPointNet on rho and Delta events; ATLAS rule-based particle flow as the reference):

1. Events: the built-in gun in the ``atlas`` geometry (:func:`pcloud.pflow.samples.mixture_truth` +
   :func:`pcloud.sim.events.simulate_events`), rho+- -> pi+- pi0 and Delta++/+ -> N pi parents: a standard
   component (1-3 parents, the 2nd and 3rd at DeltaR 0.02-0.3 from the first) and a dense component (share
   ``dense_fraction``, default 30 %: 2-3 parents at DeltaR 0.02-0.15) that populates DeltaR < 0.1.
   Event number = generation index. ``--generator pythia-tau|pythia-dijet`` (optional ``pythia8mc``) uses
   Pythia8 Z/gamma* -> tau tau (hadronic tau decays) or QCD dijets (pT-hat ``pythia_pt_hat_gev``) instead, final-state
   particles in |eta| < 1.4 (:func:`pcloud.sim.events.generate_pythia_events`); the gun settings are then unused.
2. Splits by event number (:class:`pcloud.data.splits.Splits`, seeded, saved as ``splits.json``): train/val/test.
3. Learned models: :class:`pcloud.pflow.learned.FocalTrackSegmenter` (``pointnet`` and ``dgcnn``; soft target with
   the energy-weighted loss by default), trained on train, early-stopped on val; each used with iterative and common
   inference (:mod:`pcloud.pflow.inference`). The whole-event :class:`~pcloud.pflow.learned.ChargedFractionSegmenter`
   (``event_pointnet``: charged fraction per cell, given to the nearest track at the cell's layer). In non-quick
   modes a PointNet ablation of targets and losses (binary target + cross-entropy, hard 3-class target + focal
   loss) with iterative inference. The oracle segmenter (true focal fractions) is the upper bound.
4. Baselines on the same test events: :func:`~pcloud.pflow.baselines.rule_based` (topo-clusters + ATLAS E/p cell
   subtraction), :func:`~pcloud.pflow.baselines.dr_nearest`, :func:`~pcloud.pflow.baselines.random_baseline` (charged
   prior from the training split) and :func:`~pcloud.pflow.baselines.trivial` (training-split majority class).
5. Every method's Attribution must conserve energy to 1e-6 GeV (:func:`pcloud.pflow.metrics.energy_conservation`);
   metrics (:func:`pcloud.pflow.metrics.evaluate_attribution`) on the topo-clustered cells of the test events,
   overall, in bins of DeltaR to the nearest other particle, and in the dedicated dense summary (DeltaR < 0.1).
6. MLTree round trip: the test events and their topo-clusters are written with :func:`pcloud.io.mltree.write_mltree`,
   read back, and events/tracks/clustered cells/energies/truth compared.

Modes (:data:`MODES`): ``quick`` (600 events, 2 epochs, < 5 min on 2 CPU cores), ``medium`` (3000 events, 8 epochs,
per-model time budgets checked after each epoch, ablation; <= 20 min on 2 CPU cores) and full (4000 events,
15 epochs, 256 points per cloud, no budgets).

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
#: (target, loss) variants of the PointNet ablation (non-quick modes); the default is ("soft", "energy_weighted").
ABLATION_VARIANTS = (("binary", "ce"), ("hard", "focal"))
#: a lighter DGCNN (k = 8, narrower EdgeConvs) for the CPU-bounded quick and medium modes
DGCNN_LIGHT = {"k": 8, "edge_channels": (32, 32, 64), "emb_dim": 64}
#: per-mode defaults (``PflowConfig`` fields left at None take these)
MODES = {
    "quick": dict(n_events=600, epochs=2, max_points=128, batch_size=64, max_minutes=1.0, ablation=False,
                  model_minutes={"pointnet": 1.0, "dgcnn": 1.0, "event_pointnet": 0.5},
                  model_cfgs={"dgcnn": DGCNN_LIGHT}),
    "medium": dict(n_events=3000, epochs=8, max_points=128, batch_size=128, max_minutes=None, ablation=True,
                   model_minutes={"pointnet": 3.0, "dgcnn": 2.0, "event_pointnet": 1.5, "ablation": 2.0},
                   model_cfgs={"dgcnn": DGCNN_LIGHT}),
    "full": dict(n_events=4000, epochs=15, max_points=256, batch_size=64, max_minutes=None, ablation=True,
                 model_minutes={}, model_cfgs={}),
}


@dataclass
class PflowConfig:
    out: str = "out/bench_pflow"
    quick: bool = False
    medium: bool = False                 # between quick and full: 2 CPU cores, <= 20 min (see MODES)
    device: str = "auto"
    seed: int = 1
    n_events: int | None = None          # per mode (MODES): quick 600, medium 3000, full 4000
    epochs: int | None = None            # quick 2, medium 8, full 15
    models: list = field(default_factory=lambda: list(LEARNED_MODELS))
    target: str = "soft"
    loss: str = "energy_weighted"
    dr_max: float = 0.2
    max_points: int | None = None        # quick/medium 128, full 256
    batch_size: int | None = None
    lr: float = 1e-3
    patience: int = 3
    max_minutes: float | None = None     # default time budget per model training (checked after each epoch)
    model_minutes: dict | None = None    # per model ("pointnet", "dgcnn", "event_pointnet", "ablation") budgets
    model_cfg: dict = field(default_factory=dict)      # overrides for every per-track model
    model_cfgs: dict | None = None       # per-model architecture overrides ({"dgcnn": {...}})
    event_model: bool = True             # also train the whole-event ChargedFractionSegmenter ("event_pointnet")
    event_max_points: int = 512
    ablation: bool | None = None         # PointNet target/loss ablation (default: on unless quick)
    parents: list = field(default_factory=lambda: ["rho", "delta"])
    energy_gev: tuple = (10.0, 100.0)
    n_parents: tuple = (1, 3)
    parent_dr: tuple = (0.02, 0.3)
    dense_fraction: float = 0.3          # share of events from the dense component (pcloud.pflow.samples)
    dense_n_parents: tuple = (2, 3)
    dense_dr: tuple = (0.02, 0.15)
    generator: str = "gun"               # "gun" or a key of PYTHIA_GENERATORS
    pythia_pt_hat_gev: tuple = (20.0, None)  # pT-hat range of pythia-dijet (None: no upper limit)
    dense_cut: float = 0.1               # the "dense environment" DeltaR of the dedicated report section
    fractions: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    cleanup_sigma: float = 2.0
    write_mltree: bool = True
    plots: bool = True
    n_displays: int = 2

    @property
    def mode(self) -> str:
        return "quick" if self.quick else ("medium" if self.medium else "full")

    def resolved(self) -> "PflowConfig":
        if self.quick and self.medium:
            raise ValueError("bench pflow: choose one of quick and medium, found both")
        c = PflowConfig(**asdict(self))
        d = MODES[c.mode]
        for k in ("n_events", "epochs", "max_points", "batch_size", "max_minutes", "ablation", "model_minutes",
                  "model_cfgs"):
            if getattr(c, k) is None:
                setattr(c, k, d[k] if not isinstance(d[k], dict) else dict(d[k]))
        if c.n_events < 10:
            raise ValueError(f"bench pflow: need at least 10 events, found n_events = {c.n_events}")
        unknown = [m for m in c.models if m not in LEARNED_MODELS]
        if unknown:
            raise ValueError(f"bench pflow: unknown models {unknown}; known: {list(LEARNED_MODELS)}")
        if c.generator != "gun" and c.generator not in PYTHIA_GENERATORS:
            raise ValueError(f"bench pflow: unknown generator {c.generator!r}; known: gun, "
                             f"{', '.join(PYTHIA_GENERATORS)}")
        if not 0.0 <= c.dense_fraction <= 1.0:
            raise ValueError(f"bench pflow: dense_fraction must be in [0, 1], found {c.dense_fraction}")
        return c

    def minutes(self, name: str):
        """Training time budget (minutes) of model ``name`` (None: unbounded)."""
        return (self.model_minutes or {}).get(name, self.max_minutes)

    def arch(self, model: str) -> dict:
        return {**(self.model_cfgs or {}).get(model, {}), **self.model_cfg}


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


#: ``--generator`` choices using Pythia8 (:func:`pcloud.sim.events.generate_pythia`): name -> process.
PYTHIA_GENERATORS = {"pythia-tau": "tau", "pythia-dijet": "dijet"}


def generate_pflow_events(geometry, cfg: PflowConfig):
    """The benchmark events of ``cfg``: :func:`pcloud.pflow.samples.mixture_truth` (standard + dense component)
    simulated with :func:`pcloud.sim.events.simulate_events`."""
    from ..pflow.samples import mixture_truth
    from ..sim.events import simulate_events

    rng = np.random.default_rng(cfg.seed)
    if cfg.generator in PYTHIA_GENERATORS:
        from ..sim.events import generate_pythia_events
        lo, hi = cfg.pythia_pt_hat_gev
        events = generate_pythia_events(geometry, cfg.n_events, rng, PYTHIA_GENERATORS[cfg.generator],
                                        seed=cfg.seed, pt_hat_min_gev=lo, pt_hat_max_gev=hi)
        events.meta["n_dense_events"] = 0
        return events
    truth = mixture_truth(cfg.n_events, rng, parent=list(cfg.parents), energy_gev=tuple(cfg.energy_gev),
                          n_parents=tuple(cfg.n_parents), dr=tuple(cfg.parent_dr), dense_fraction=cfg.dense_fraction,
                          dense_n_parents=tuple(cfg.dense_n_parents), dense_dr=tuple(cfg.dense_dr))
    events = simulate_events(geometry, truth, rng)
    events.meta["n_dense_events"] = int(round(cfg.dense_fraction * cfg.n_events))
    return events


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
    from ..pflow.learned import ChargedFractionSegmenter, FocalTrackSegmenter, OracleSegmenter
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
    def fit_model(name, seg, budget_key, epochs=None):
        t = time.perf_counter()
        info = seg.fit(train, val, geometry, epochs=epochs or cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                       patience=cfg.patience, max_minutes=cfg.minutes(budget_key),
                       log=lambda s: log(f"[pflow:{name}] {s}"))
        seconds[f"{name}_train"] = time.perf_counter() - t
        training[name] = {k: v for k, v in info.items() if k != "history"}
        training[name].update(history=info.get("history"), target=seg.target, loss=seg.loss_name,
                              model=seg.model_name, budget_minutes=cfg.minutes(budget_key),
                              architecture={k: v for k, v in seg.model_cfg.items()})
        log(f"[pflow] {name}: {info.get('n_params')} parameters, {info.get('epochs_run')} epochs in "
            f"{seconds[f'{name}_train']:.1f} s")
        return seg

    for model in cfg.models:
        seg = FocalTrackSegmenter(model=model, target=cfg.target, loss=cfg.loss, dr_max=cfg.dr_max,
                                  max_points=cfg.max_points, device=cfg.device, seed=cfg.seed, **cfg.arch(model))
        fit_model(model, seg, model)
        timed(f"{model}_iterative", lambda: iterative_inference(test, geometry, seg, dr_max=cfg.dr_max,
                                                                cleanup_sigma=cfg.cleanup_sigma))
        timed(f"{model}_common", lambda: common_inference(test, geometry, seg, dr_max=cfg.dr_max))
    if cfg.event_model:
        eseg = ChargedFractionSegmenter(model="pointnet", target=cfg.target, loss=cfg.loss,
                                        max_points=cfg.event_max_points, device=cfg.device, seed=cfg.seed)
        fit_model("event_pointnet", eseg, "event_pointnet")
        timed("event_pointnet", lambda: eseg.attribute(test, geometry))
    ablation = []
    # the ablation variants get the epochs the default PointNet actually ran (same training length, fair)
    ablation_epochs = int((training.get("pointnet") or {}).get("epochs_run") or cfg.epochs)
    if cfg.ablation:
        for target, loss in ABLATION_VARIANTS:
            name = f"pointnet_{target}_{loss}"
            seg = FocalTrackSegmenter(model="pointnet", target=target, loss=loss, dr_max=cfg.dr_max,
                                      max_points=cfg.max_points, device=cfg.device, seed=cfg.seed,
                                      **cfg.arch("pointnet"))
            fit_model(name, seg, "ablation", epochs=ablation_epochs)
            timed(f"{name}_iterative", lambda: iterative_inference(test, geometry, seg, dr_max=cfg.dr_max,
                                                                   cleanup_sigma=cfg.cleanup_sigma))
            ablation.append(f"{name}_iterative")
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
        r = pm.evaluate_attribution(test, a, truth, cell_mask=mask_test, keep_arrays=True, dense_dr=cfg.dense_cut)
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
    iso = pm.track_isolation_dr(test)
    ev_iso = pm.event_isolation_dr(test, iso)
    sample = {"n_dense_events_generated": int(events.meta.get("n_dense_events", 0)),
              "test_tracks_dr_lt_cut": int(np.sum(iso < cfg.dense_cut)), "test_tracks": int(iso.size),
              "test_events_dr_lt_cut": int(np.sum(ev_iso < cfg.dense_cut)), "test_events": int(test.n_events),
              "test_tracks_dr_lt_0.05": int(np.sum(iso < 0.05)),
              "test_tracks_other_parent_dr_lt_cut": int(np.sum(pm.track_isolation_dr(test, other_parent_only=True)
                                                               < cfg.dense_cut))}
    results = {"methods": methods, "mode": cfg.mode, "ablation": ablation, "sample": sample,
               "acceptance": _acceptance(methods, conservation, roundtrip),
               "config": {**asdict(cfg), "mode": cfg.mode, "geometry": geometry.name,
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

    shown = {k: v for k, v in methods.items() if k != "oracle_common"}
    files = [pp.plot_metrics_vs_dr(shown, out / "metrics_vs_dr.png"),
             pp.plot_response(per_track, out / "response.png")]
    e = test.cells["energy_gev"]
    n_c = e.size
    # displays of the densest test events (most tracks, then most energy)
    ntrk = np.diff(test.track_offsets)
    e_ev = np.bincount(test.cells["event"], np.clip(e, 0, None), minlength=test.n_events)
    order = np.lexsort((-e_ev, -ntrk))
    show = [m for m in ("pointnet_iterative", "event_pointnet", "dgcnn_iterative", "rule_based", "dr_nearest")
            if m in attributions]
    for i in order[:cfg.n_displays]:
        labels = {"truth": truth.dominant_track(n_c, e)}
        labels.update({m: attributions[m].dominant_track(n_c, e) for m in show})
        files.append(pp.plot_event_attribution(test, geometry, labels, int(i), out / f"event_{int(i)}.png"))
    return [Path(f).name for f in files]


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


def is_learned(name: str) -> bool:
    """Methods whose cell fractions come from a trained model (not the oracle, not a baseline)."""
    return name.startswith(("pointnet", "dgcnn", "event_"))


def _acceptance(methods: dict, conservation: dict, roundtrip) -> dict:
    """The issue's acceptance checks, evaluated on the measured numbers."""
    out = {"learned_beats_baselines": {}, "inference_conservation": {}}
    ref = {b: methods.get(b) for b in ("dr_nearest", "random")}
    for name, r in methods.items():
        if not is_learned(name) or any(v is None for v in ref.values()):
            continue
        chk = {}
        for b, rb in ref.items():
            for key, short in (("f1", "f1"), ("energy_weighted_accuracy", "ewa")):
                a, c = r.get(key), rb.get(key)
                chk[f"{short}_vs_{b}"] = bool(a is not None and c is not None and a > c)
        chk["all"] = all(chk.values())
        out["learned_beats_baselines"][name] = chk
    for name, c in conservation.items():
        if name.endswith(("_iterative", "_common")):
            out["inference_conservation"][name] = float(c["max_violation_gev"])
    out["inference_conserves"] = bool(out["inference_conservation"]) and all(
        v <= CONSERVATION_TOL_GEV for v in out["inference_conservation"].values())
    out["mltree_roundtrip_ok"] = bool(roundtrip and roundtrip.get("ok"))
    return out


HEADLINE_KEYS = ("f1", "iou", "accuracy", "energy_weighted_accuracy", "f1_track_macro", "soft_overlap",
                 "track_energy_response", "track_energy_resolution", "neutral_energy_recovered")


def headline_table(methods: dict, names=None, keys=HEADLINE_KEYS) -> list[str]:
    names = list(methods) if names is None else [n for n in names if n in methods]
    lines = ["| method | " + " | ".join(keys) + " | conserves |", "|" + "---|" * (len(keys) + 2)]
    for name in names:
        r = methods[name]
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k in keys) +
                     f" | {'yes' if r.get('conservation_ok') else 'NO'} |")
    return lines


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


def _report(res: dict) -> str:
    cfg = res["config"]
    m = res["methods"]
    smp = res.get("sample") or {}
    abl = set(res.get("ablation") or [])
    main = [n for n in m if n not in abl]
    cut = cfg.get("dense_cut", 0.1)
    gen = cfg.get("generator", "gun")
    lines = ["# pcloud bench pflow", "",
             f"Mode **{res.get('mode')}**. Generator **{gen}**{'' if gen == 'gun' else ' (gun settings unused)'}. "
             f"Events: {cfg['n_events']} ({', '.join(cfg['parents'])}; E "
             f"{cfg['energy_gev'][0]}-{cfg['energy_gev'][1]} GeV): standard component {cfg['n_parents'][0]}-"
             f"{cfg['n_parents'][1]} parents at DeltaR {cfg['parent_dr'][0]}-{cfg['parent_dr'][1]} from the first; "
             f"dense component ({cfg['dense_fraction']:.0%} of the events, {smp.get('n_dense_events_generated')} "
             f"events) {cfg['dense_n_parents'][0]}-{cfg['dense_n_parents'][1]} parents at DeltaR "
             f"{cfg['dense_dr'][0]}-{cfg['dense_dr'][1]}. Splits {res['splits']['counts']} (seed {cfg['seed']}). "
             f"Geometry {cfg['geometry']} (pcloud parametrised fast simulation, not Geant4).",
             f"Test sample: {smp.get('test_events')} events, {smp.get('test_tracks')} tracks; "
             f"{smp.get('test_tracks_dr_lt_cut')} tracks with another particle within DeltaR < {cut} "
             f"({smp.get('test_tracks_dr_lt_0.05')} within 0.05; {smp.get('test_tracks_other_parent_dr_lt_cut')} "
             f"with a particle from *another* parent decay within {cut}), {smp.get('test_events_dr_lt_cut')} events "
             f"whose densest track is below {cut}. The nearest other particle is often the track's own decay partner "
             "(rho -> pi pi0 opening angle ~ 2m/E).",
             f"Evaluated cells: {cfg['evaluated_cells']}. Learned per-track models: target `{cfg['target']}`, loss "
             f"`{cfg['loss']}`, {cfg['epochs']} epochs max, max_points {cfg['max_points']}, batch "
             f"{cfg['batch_size']}, dr_max {cfg['dr_max']}; `event_pointnet` = whole-event ChargedFractionSegmenter "
             f"(charged energy fraction per cell, given to the nearest track at the cell's layer).", "",
             "## Methods (test split)", ""]
    lines += headline_table(m, main)
    lines += ["", "F1/IoU: charged vs neutral cells (dominant contribution); accuracy: right track or neutral; "
              "energy_weighted_accuracy weights cells by E; f1_track_macro: per-track focal F1 averaged; "
              "soft_overlap: energy overlap of per-cell fractions; response/resolution: median and robust width of "
              "E_attributed/E_true per track; neutral_energy_recovered: median per-event predicted/true neutral "
              "energy. oracle_*: true fractions inside the dr_max cone (upper bound of the inference algorithms).",
              ""]
    acc = res.get("acceptance") or {}
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
    lines += [f"## Dense environments: DeltaR(track, nearest other particle) < {cut}", "",
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
        budget = t.get("budget_minutes")
        lines.append(f"- {model} ({t.get('model')}, target {t.get('target')}, loss {t.get('loss')}): "
                     f"{t.get('n_params')} parameters, {t.get('epochs_run')} epochs (best {t.get('best_epoch')}; "
                     f"budget {'none' if budget is None else f'{budget:g} min'}), {_fmt(t.get('seconds'), 1)} s, "
                     f"{t.get('n_train_clouds')} training clouds, truncated energy fraction "
                     f"{_fmt(t.get('truncated_energy_fraction'))}")
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {_fmt(v, 2)}" for k, v in res["timings"].items()]
    if res.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in res["plots"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- CLI
def register(sub) -> None:
    """Add ``pflow`` to an argparse sub-parsers object (``pcloud bench pflow ...``)."""
    p = sub.add_parser("pflow", help="particle-flow segmentation benchmark (learned vs rule-based vs trivial)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="small configuration (600 events, 2 epochs; < 5 min on 2 CPU cores)")
    mode.add_argument("--medium", action="store_true",
                      help="between quick and full (3000 events, 8 epochs, time-budgeted models, ablation; "
                           "<= 20 min on 2 CPU cores)")
    p.add_argument("--out", default="out/bench_pflow", help="output folder (default out/bench_pflow)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--events", type=int, default=None, help="number of generated events")
    p.add_argument("--epochs", type=int, default=None, help="maximum training epochs per model")
    p.add_argument("--seed", type=int, default=1, help="seed of generation, splits and training")
    p.add_argument("--models", default=",".join(LEARNED_MODELS), help="comma-separated learned per-track models")
    p.add_argument("--dense-fraction", type=float, default=0.3,
                   help="share of events with 2-3 parents at DeltaR 0.02-0.15 (default 0.3)")
    p.add_argument("--generator", default="gun", choices=("gun", *PYTHIA_GENERATORS),
                   help="event generator: the built-in rho/Delta gun (default) or Pythia8 (needs pythia8mc)")
    p.add_argument("--no-ablation", action="store_true", help="skip the PointNet target/loss ablation")
    p.add_argument("--no-event-model", action="store_true", help="skip the whole-event ChargedFractionSegmenter")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    cfg = PflowConfig(out=args.out, quick=args.quick, medium=getattr(args, "medium", False), device=args.device,
                      n_events=args.events, epochs=args.epochs, seed=args.seed,
                      models=[m for m in args.models.split(",") if m],
                      dense_fraction=getattr(args, "dense_fraction", 0.3),
                      generator=getattr(args, "generator", "gun"),
                      ablation=False if getattr(args, "no_ablation", False) else None,
                      event_model=not getattr(args, "no_event_model", False))
    res = run_pflow(cfg)
    return 0 if res["all_conserve"] else 1
