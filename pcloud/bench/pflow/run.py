"""The run of ``pcloud bench pflow`` (recipe in :mod:`pcloud.bench.pflow`)."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...core.attribution import truth_attribution
from ...core.events import select_events
from ...core.jsonable import to_jsonable
from ...data.splits import Splits
from ...geometry import get_geometry
from ...baselines import particle_flow as bl
from ...metrics import particle_flow as pm
from ...pflow.inference import common_inference, iterative_inference
from ...pflow.kinematic_oracle import kinematic_oracle, replica_votes
from ...pflow.learned import ChargedFractionSegmenter, FocalTrackSegmenter, OracleSegmenter, SegmenterEnsemble
from ...pflow.topocluster import topo_cluster_events
from .config import ABLATION_VARIANTS, CONSERVATION_TOL_GEV, PflowConfig
from .events import generate_pflow_events
from .report import render_report
from .roundtrip import mltree_roundtrip


def run_pflow(cfg: PflowConfig | None = None, log=print) -> dict:
    """Run the benchmark of :mod:`pcloud.bench.pflow`; returns the ``results.json`` content."""
    run = _Run((cfg or PflowConfig()).resolved(), log)
    run.prepare()
    run.learned_methods()
    run.reference_methods()
    run.evaluate()
    run.roundtrip()
    return run.write()


class _Run:
    """The steps of one benchmark run, sharing the events, splits and results collected so far."""

    def __init__(self, cfg: PflowConfig, log):
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.t_start = time.perf_counter()
        self.timings, self.seconds, self.training, self.attributions = {}, {}, {}, {}
        self.seed_attributions: dict = {}  # method -> one Attribution per training seed
        self.ablation = []
        self.geometry = get_geometry("atlas")

    # ------------------------------------------------------------------------------------------ data
    def prepare(self):
        """Events, splits (saved), topo-clusters of train and test, and the training-split priors of the
        baselines."""
        cfg, geometry = self.cfg, self.geometry
        t0 = time.perf_counter()
        self.events = events = generate_pflow_events(geometry, cfg)
        self.timings["generate_s"] = time.perf_counter() - t0
        event_number = np.arange(events.n_events, dtype=np.int64)
        self.splits = Splits(dict(cfg.fractions), seed=cfg.seed)
        self.splits.save(self.out / "splits.json", event_number)
        parts = {name: select_events(events, self.splits.mask(event_number, name)) for name in ("train", "val", "test")}
        self.counts = {k: int(v.n_events) for k, v in parts.items()}
        if min(self.counts.values()) == 0:
            raise ValueError(f"bench pflow: an empty split {self.counts}; use more events (n_events = {cfg.n_events})")
        self.train, self.val, self.test = parts["train"], parts["val"], parts["test"]
        source = "read" if cfg.data else "generated"
        self.log(f"[pflow] {events.n_events} events ({self.counts}), {events.tracks['event'].size} tracks, "
                 f"{events.cells['event'].size} cells, {source} in {self.timings['generate_s']:.1f} s")
        cl_train = topo_cluster_events(geometry, self.train)
        self.cl_test = topo_cluster_events(geometry, self.test)
        mask_train = cl_train.cell_cluster >= 0
        self.mask_test = self.cl_test.cell_cluster >= 0
        self.prior = bl.charged_prior(self.train, geometry, cfg.dr_max, cell_mask=mask_train)
        self.majority = bl.majority_class(self.train, cell_mask=mask_train)
        self.truth = truth_attribution(self.test)
        self.cell_layer = np.asarray(geometry.cells["layer"], np.int64)[self.test.cells["id"]]
        self._scored: dict = {}  # (method, seed index) -> metrics computed when the method ran

    # ------------------------------------------------------------------------------------------ methods
    def _timed(self, name, fn, seed_index: int = 0):
        t = time.perf_counter()
        a = fn()
        self.seed_attributions.setdefault(name, []).append(a)
        if seed_index == 0:
            self.attributions[name] = a
        self.seconds.setdefault(name, []).append(time.perf_counter() - t)
        if is_learned(name):  # scored now (and reused by evaluate()), so a long run shows its results as it goes
            r = self._scored[(name, len(self.seed_attributions[name]) - 1)] = self._metrics(a)
            self.log(f"[pflow] {name} (seed index {seed_index}): test F1 {r['f1']:.3f}, E-acc "
                     f"{r['energy_weighted_accuracy']:.3f}, charged share {r['charged_fraction_pred']:.3f} (true "
                     f"{r['charged_fraction_true']:.3f})")

    def _metrics(self, a) -> dict:
        """The metrics of one attribution on the topo-clustered test cells (with the per-track arrays)."""
        return pm.evaluate_attribution(self.test, a, self.truth, cell_mask=self.mask_test, keep_arrays=True,
                                       dense_dr=self.cfg.dense_cut, cell_layer=self.cell_layer)

    def _fit(self, name, seg, budget_key, epochs=None, seed_index: int = 0):
        cfg = self.cfg
        t = time.perf_counter()
        tag = name if cfg.seeds == 1 else f"{name} seed {seg.seed}"
        info = seg.fit(self.train, self.val, self.geometry, epochs=epochs or cfg.epochs, batch_size=cfg.batch_size,
                       lr=cfg.lr, patience=cfg.patience, max_minutes=cfg.minutes(budget_key),
                       log=lambda s: self.log(f"[pflow:{tag}] {s}"), **cfg.fit_kwargs())
        seconds = time.perf_counter() - t
        tr = {k: v for k, v in info.items() if k != "history"}
        tr.update(history=info.get("history"), target=seg.target, loss=seg.loss_name, model=seg.model_name,
                  budget_minutes=cfg.minutes(budget_key), architecture={k: v for k, v in seg.model_cfg.items()},
                  seed=seg.seed, train_seconds=seconds, cells=seg.cells, features=list(seg.features),
                  residual_clouds=bool(getattr(seg, "residual_clouds", False)))
        self.training.setdefault(name, {"seeds": []})["seeds"].append(tr)
        if seed_index == 0:
            self.training[name].update({k: v for k, v in tr.items() if k != "seeds"})
        self.seconds.setdefault(f"{name}_train", []).append(seconds)
        thr = info.get("threshold")
        self.log(f"[pflow] {tag}: {info.get('n_params')} parameters, {info.get('epochs_run')} epochs in "
                 f"{seconds:.1f} s" + ("" if thr is None else f", threshold {thr:.3f} (val)"))
        return seg

    def _iterative(self, name, seg, seed_index: int = 0):
        cfg = self.cfg
        self._timed(name, lambda: iterative_inference(self.test, self.geometry, seg, dr_max=cfg.dr_max,
                                                      cleanup_sigma=cfg.cleanup_sigma), seed_index)

    def _segmenter(self, model, seed, target=None, loss=None):
        cfg = self.cfg
        return FocalTrackSegmenter(model=model, target=target or cfg.target, loss=loss or cfg.loss,
                                   dr_max=cfg.dr_max, max_points=cfg.max_points or None, device=cfg.device, seed=seed,
                                   features=cfg.features, **cfg.segmenter_kwargs(), **cfg.arch(model))

    def learned_methods(self):
        """Per-track segmenters with iterative and common inference, the whole-event model and the ablation, for
        every training seed (events and splits stay fixed: the spread is the training randomness)."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        trained: dict = {}
        for si, seed in enumerate(cfg.seed_list):
            for model in cfg.models:
                seg = self._fit(model, self._segmenter(model, seed), model, seed_index=si)
                trained.setdefault(model, []).append(seg)
                self._iterative(f"{model}_iterative", seg, si)
                self._timed(f"{model}_common", lambda: common_inference(test, geometry, seg, dr_max=cfg.dr_max), si)
            if cfg.event_model:
                eseg = ChargedFractionSegmenter(model="pointnet", target=cfg.target,
                                                loss="energy_weighted" if cfg.loss == "mixed" else cfg.loss,
                                                max_points=cfg.event_max_points, device=cfg.device, seed=seed)
                self._fit("event_pointnet", eseg, "event_pointnet", seed_index=si)
                self._timed("event_pointnet", lambda: eseg.attribute(test, geometry), si)
            # the ablation variants get the epochs the default PointNet actually ran (same training length, fair)
            runs = (self.training.get("pointnet") or {}).get("seeds") or []
            ablation_epochs = int((runs[-1] if runs else {}).get("epochs_run") or cfg.epochs)
            if cfg.ablation:
                for target, loss in ABLATION_VARIANTS:
                    name = f"pointnet_{target}_{loss}"
                    seg = self._segmenter("pointnet", seed, target, loss)
                    self._fit(name, seg, "ablation", epochs=ablation_epochs, seed_index=si)
                    self._iterative(f"{name}_iterative", seg, si)
                    if si == 0:
                        self.ablation.append(f"{name}_iterative")
        if cfg.ensemble and cfg.seeds > 1:
            for model, segs in trained.items():
                self._ensemble(model, segs)

    def _ensemble(self, model, segs):
        """The mean fraction of the seeds' models as one segmenter, its threshold chosen on the validation events."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        ens = SegmenterEnsemble(segs, threshold=None if cfg.threshold in (None, "val") else cfg.threshold)
        t = time.perf_counter()
        thr = ens.choose_threshold(self.val, geometry, ens.threshold_metric) if cfg.threshold == "val" else ens.threshold
        self.training[f"{model}_ensemble"] = {"model": model, "members_seeds": [s.seed for s in segs],
                                              "threshold": thr, "threshold_info": dict(ens.threshold_info),
                                              "threshold_seconds": time.perf_counter() - t}
        self.log(f"[pflow] {model}_ensemble of seeds {[s.seed for s in segs]}"
                 + ("" if thr is None else f", threshold {thr:.3f}"))
        self._timed(f"{model}_ensemble_iterative", lambda: iterative_inference(
            test, geometry, ens, dr_max=cfg.dr_max, cleanup_sigma=cfg.cleanup_sigma))
        self._timed(f"{model}_ensemble_common", lambda: common_inference(test, geometry, ens, dr_max=cfg.dr_max))

    def reference_methods(self):
        """The oracle (upper bound) and the baselines on the same test events."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        oracle = OracleSegmenter(test)
        self._iterative("oracle_iterative", oracle)
        self._timed("oracle_common", lambda: common_inference(test, geometry, oracle, dr_max=cfg.dr_max))
        if cfg.kinematic_replicas and not cfg.data:  # the replicas need the simulation that made the events
            self._kinematic_oracles()
        self._timed("rule_based", lambda: bl.rule_based(test, geometry, clusters=self.cl_test))
        self._timed("dr_nearest", lambda: bl.dr_nearest(test, geometry, dr_max=cfg.dr_max))
        self._timed("random", lambda: bl.random_baseline(test, self.prior, seed=cfg.seed, geometry=geometry,
                                                         dr_max=cfg.dr_max))
        self._timed("trivial", lambda: bl.trivial(test, self.majority, geometry))

    def _kinematic_oracles(self):
        """``oracle_kinematic`` (labels from the true particle kinematics alone) and ``oracle_kinematic_cell`` (also
        given each cell's own measured energy): :mod:`pcloud.pflow.kinematic_oracle`, common inference."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        t = time.perf_counter()
        votes = replica_votes(test, geometry, n_replicas=cfg.kinematic_replicas, seed=cfg.seed + 7919,
                              cell_mask=self.mask_test & (np.asarray(test.cells["energy_gev"]) > 0))
        self.timings["kinematic_replicas_s"] = time.perf_counter() - t
        self.log(f"[pflow] kinematic oracle: {cfg.kinematic_replicas} noise-free replicas of the test events in "
                 f"{self.timings['kinematic_replicas_s']:.1f} s")
        for name, v in (("oracle_kinematic", votes.kinematic), ("oracle_kinematic_cell", votes.with_cell_energy)):
            self._timed(name, lambda v=v: common_inference(test, geometry, kinematic_oracle(test, v),
                                                           dr_max=cfg.dr_max))

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self):
        """Energy conservation and the metrics of every method on the topo-clustered test cells; methods trained
        with several seeds get the mean over the seeds (nested) and the spread of the headline metrics."""
        test = self.test
        self.methods, self.per_track, self.conservation = {}, {}, {}
        for name, atts in self.seed_attributions.items():
            runs, worst = [], None
            for si, a in enumerate(atts):
                cons = pm.energy_conservation(test, a)
                cons["ok"] = bool(cons["max_violation_gev"] <= CONSERVATION_TOL_GEV and cons["n_cross_event"] == 0)
                if worst is None or cons["max_violation_gev"] > worst["max_violation_gev"] or not cons["ok"]:
                    worst = cons
                r = self._scored.pop((name, si), None) or self._metrics(a)
                arrays = r.pop("arrays")
                if si == 0:
                    self.per_track[name] = (arrays["e_true_gev"], arrays["e_pred_gev"])
                runs.append(r)
            self.conservation[name] = worst
            r = seed_summary(runs)
            secs = self.seconds.get(name) or [None]
            r["seconds"] = secs[0] if len(secs) == 1 else float(np.mean(secs))
            r["conservation_ok"] = worst["ok"]
            self.methods[name] = r
            sp = r.get("spread") or {}
            pm_ = (lambda k: f" +- {sp[k]['std']:.3f}" if k in sp else "")
            self.log(f"[pflow] {name:18s} F1 {r['f1']:.3f}{pm_('f1')}  IoU {r['iou']:.3f}  E-acc "
                     f"{r['energy_weighted_accuracy']:.3f}{pm_('energy_weighted_accuracy')}  resp "
                     f"{r['track_energy_response']:.3f}  res {r['track_energy_resolution']:.3f}  neutral "
                     f"{r['neutral_energy_recovered']:.3f}  share {r['charged_fraction_pred']:.3f} (true "
                     f"{r['charged_fraction_true']:.3f})  conservation {worst['max_violation_gev']:.1e} GeV")

    def roundtrip(self):
        """MLTree round trip of the test events (reported, not fatal for the metrics)."""
        self.rt = None
        if not self.cfg.write_mltree:
            return
        try:
            self.rt = mltree_roundtrip(self.test, self.cl_test, self.geometry, self.out / "test_events.root")
        except Exception as err:  # noqa: BLE001 - reported, not fatal for the metrics
            self.rt = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        self.log(f"[pflow] MLTree round trip: {'ok' if self.rt.get('ok') else 'FAILED'}")

    def _sample(self) -> dict:
        test, cut = self.test, self.cfg.dense_cut
        iso = pm.track_isolation_dr(test)
        ev_iso = pm.event_isolation_dr(test, iso)
        return {"n_dense_events_generated": int(self.events.meta.get("n_dense_events", 0)),
                "test_tracks_dr_lt_cut": int(np.sum(iso < cut)), "test_tracks": int(iso.size),
                "test_events_dr_lt_cut": int(np.sum(ev_iso < cut)), "test_events": int(test.n_events),
                "test_tracks_dr_lt_0.05": int(np.sum(iso < 0.05)),
                "test_tracks_other_parent_dr_lt_cut": int(np.sum(pm.track_isolation_dr(test, other_parent_only=True)
                                                                 < cut))}

    def write(self) -> dict:
        """Plots, ``results.json`` and ``report.md``; returns the results."""
        cfg, out = self.cfg, self.out
        plots = _make_plots(out, self.test, self.geometry, self.methods, self.per_track, self.attributions,
                            self.truth, cfg, self.training) if cfg.plots else []
        self.timings["total_s"] = time.perf_counter() - self.t_start
        results = {"methods": self.methods, "mode": cfg.mode, "ablation": self.ablation, "sample": self._sample(),
                   "acceptance": _acceptance(self.methods, self.conservation, self.rt),
                   "config": {**asdict(cfg), "mode": cfg.mode, "geometry": self.geometry.name,
                              "evaluated_cells": "topo-clustered cells with E > 0 (test split)",
                              "charged_prior_train": self.prior, "majority_train": self.majority},
                   "splits": {"counts": self.counts, **self.splits.to_dict()}, "training": self.training,
                   "conservation": self.conservation, "conservation_tolerance_gev": CONSERVATION_TOL_GEV,
                   "all_conserve": all(c["ok"] for c in self.conservation.values()), "mltree_roundtrip": self.rt,
                   "timings": {**self.timings, **{f"{k}_s": (v[0] if len(v) == 1 else float(np.sum(v)))
                                                  for k, v in self.seconds.items()}}, "plots": plots,
                   "goal": _goal(self.methods),
                   "environment": {"python": platform.python_version(), "machine": platform.machine()}}
        results = to_jsonable(results, skip_keys=("arrays",))
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "report.md").write_text(render_report(results))
        self.log(f"[pflow] wrote {out / 'results.json'} and {out / 'report.md'} in {self.timings['total_s']:.1f} s")
        return results


def _make_plots(out, test, geometry, methods, per_track, attributions, truth, cfg, training=None) -> list:
    from ...plots import pflow as pp

    shown = {k: v for k, v in methods.items() if k != "oracle_common"}
    files = [pp.plot_metrics_vs_dr(shown, out / "metrics_vs_dr.png"),
             pp.plot_response(per_track, out / "response.png")]
    if training:
        lc = pp.plot_learning_curves(training, out / "learning_curves.png")
        if lc:
            files.append(lc)
    e = test.cells["energy_gev"]
    n_c = e.size
    # displays of the densest test events (most tracks, then most energy)
    ntrk = np.diff(test.track_offsets)
    e_ev = np.bincount(test.cells["event"], np.clip(e, 0, None), minlength=test.n_events)
    order = np.lexsort((-e_ev, -ntrk))
    show = [m for m in ("pointnet_iterative", "event_pointnet", "dgcnn_iterative", "transformer_iterative",
                        "gravnet_iterative", "cellgraph_iterative", "rule_based", "dr_nearest")
            if m in attributions]
    for i in order[:cfg.n_displays]:
        labels = {"truth": truth.dominant_track(n_c, e)}
        labels.update({m: attributions[m].dominant_track(n_c, e) for m in show})
        files.append(pp.plot_event_attribution(test, geometry, labels, int(i), out / f"event_{int(i)}.png"))
    return [Path(f).name for f in files]


#: headline metrics whose spread over the training seeds is reported (``spread`` of a method)
SPREAD_KEYS = ("f1", "iou", "precision", "recall", "accuracy", "energy_weighted_accuracy", "f1_track_macro",
               "soft_overlap", "track_energy_response", "track_energy_resolution", "neutral_energy_recovered",
               "charged_fraction_pred")


def _mean_nested(values: list):
    """Mean of equal-structure nested dicts / numbers (ints stay the first run's: counts do not vary)."""
    v0 = values[0]
    if isinstance(v0, dict):
        return {k: _mean_nested([v[k] for v in values]) for k in v0 if all(isinstance(v, dict) and k in v
                                                                           for v in values)}
    if isinstance(v0, bool) or isinstance(v0, int) or not isinstance(v0, float):
        return v0
    arr = np.asarray(values, np.float64)
    return float(np.mean(arr)) if np.all(np.isfinite(arr)) else float(np.nanmean(arr)) if np.isfinite(arr).any() \
        else float("nan")


def seed_summary(runs: list[dict]) -> dict:
    """One method's metrics over its training seeds: the mean of every number (nested), plus ``n_seeds`` and
    ``spread`` = {metric: {mean, std (sample, ddof 1), min, max, values}} of :data:`SPREAD_KEYS` and the dense-bin
    track / event metrics (``dense.tracks.*``, ``dense.events.*``)."""
    out = _mean_nested(runs)
    out["n_seeds"] = len(runs)
    if len(runs) > 1:
        sp = {}
        flat = {k: [r.get(k) for r in runs] for k in SPREAD_KEYS}
        for grp in ("tracks", "events"):
            for k in ("f1", "energy_weighted_accuracy", "response_median", "resolution"):
                flat[f"dense.{grp}.{k}"] = [((r.get("dense") or {}).get(grp) or {}).get(k) for r in runs]
        for k, vals in flat.items():
            if any(v is None for v in vals):
                continue
            a = np.asarray(vals, np.float64)
            sp[k] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "min": float(a.min()),
                     "max": float(a.max()), "values": [float(v) for v in a]}
        out["spread"] = sp
    return out


def is_learned(name: str) -> bool:
    """Methods whose cell fractions come from a trained model (not the oracle, not a baseline)."""
    return name.startswith(("pointnet", "dgcnn", "transformer", "gravnet", "cellgraph", "event_"))


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


#: the particle-flow goal of issue 11 (on the test split of the benchmark)
GOAL = {"f1": 0.80, "energy_weighted_accuracy": 0.93, "charged_share_abs_diff": 0.02}


def _goal(methods: dict) -> dict:
    """Issue 11's particle-flow goal on the measured numbers: the best learned per-track method (highest F1 + E-acc,
    seed means) against F1 >= 0.80, E-acc >= 0.93, |predicted - true charged cell share| <= 0.02, and, per model,
    iterative against common inference for tracks with DeltaR < 0.1 (track F1 and track E-acc of the dense bin)."""
    per_track = {n: r for n, r in methods.items() if n.endswith(("_iterative", "_common")) and is_learned(n)}
    if not per_track:
        return {}
    best = max(per_track, key=lambda n: per_track[n]["f1"] + per_track[n]["energy_weighted_accuracy"])
    r = per_track[best]
    diff = abs(r["charged_fraction_pred"] - r["charged_fraction_true"])
    out = {"best_method": best, "f1": r["f1"], "energy_weighted_accuracy": r["energy_weighted_accuracy"],
           "charged_share_pred": r["charged_fraction_pred"], "charged_share_true": r["charged_fraction_true"],
           "charged_share_abs_diff": diff, "targets": GOAL,
           "f1_ok": bool(r["f1"] >= GOAL["f1"]),
           "energy_weighted_accuracy_ok": bool(r["energy_weighted_accuracy"] >= GOAL["energy_weighted_accuracy"]),
           "charged_share_ok": bool(diff <= GOAL["charged_share_abs_diff"]), "iterative_vs_common_dense": {}}
    for n in per_track:
        if not n.endswith("_iterative") or n.replace("_iterative", "_common") not in per_track:
            continue
        it, co = per_track[n]["dense"]["tracks"], per_track[n.replace("_iterative", "_common")]["dense"]["tracks"]
        out["iterative_vs_common_dense"][n[:-len("_iterative")]] = {
            "iterative_track_f1": it["f1"], "common_track_f1": co["f1"],
            "iterative_track_ewa": it["energy_weighted_accuracy"], "common_track_ewa": co["energy_weighted_accuracy"],
            "iterative_better": bool(it["f1"] > co["f1"] and it["energy_weighted_accuracy"] >
                                     co["energy_weighted_accuracy"])}
    out["met"] = bool(out["f1_ok"] and out["energy_weighted_accuracy_ok"] and out["charged_share_ok"])
    return out
