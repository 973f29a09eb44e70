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
from ...pflow.learned import ChargedFractionSegmenter, FocalTrackSegmenter, OracleSegmenter
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

    # ------------------------------------------------------------------------------------------ methods
    def _timed(self, name, fn):
        t = time.perf_counter()
        self.attributions[name] = fn()
        self.seconds[name] = time.perf_counter() - t

    def _fit(self, name, seg, budget_key, epochs=None):
        cfg = self.cfg
        t = time.perf_counter()
        info = seg.fit(self.train, self.val, self.geometry, epochs=epochs or cfg.epochs, batch_size=cfg.batch_size,
                       lr=cfg.lr, patience=cfg.patience, max_minutes=cfg.minutes(budget_key),
                       log=lambda s: self.log(f"[pflow:{name}] {s}"))
        self.seconds[f"{name}_train"] = time.perf_counter() - t
        tr = {k: v for k, v in info.items() if k != "history"}
        tr.update(history=info.get("history"), target=seg.target, loss=seg.loss_name, model=seg.model_name,
                  budget_minutes=cfg.minutes(budget_key), architecture={k: v for k, v in seg.model_cfg.items()})
        self.training[name] = tr
        self.log(f"[pflow] {name}: {info.get('n_params')} parameters, {info.get('epochs_run')} epochs in "
                 f"{self.seconds[f'{name}_train']:.1f} s")
        return seg

    def _iterative(self, name, seg):
        cfg = self.cfg
        self._timed(name, lambda: iterative_inference(self.test, self.geometry, seg, dr_max=cfg.dr_max,
                                                      cleanup_sigma=cfg.cleanup_sigma))

    def learned_methods(self):
        """Per-track segmenters with iterative and common inference, the whole-event model and the ablation."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        for model in cfg.models:
            seg = FocalTrackSegmenter(model=model, target=cfg.target, loss=cfg.loss, dr_max=cfg.dr_max,
                                      max_points=cfg.max_points, device=cfg.device, seed=cfg.seed, **cfg.arch(model))
            self._fit(model, seg, model)
            self._iterative(f"{model}_iterative", seg)
            self._timed(f"{model}_common", lambda: common_inference(test, geometry, seg, dr_max=cfg.dr_max))
        if cfg.event_model:
            eseg = ChargedFractionSegmenter(model="pointnet", target=cfg.target, loss=cfg.loss,
                                            max_points=cfg.event_max_points, device=cfg.device, seed=cfg.seed)
            self._fit("event_pointnet", eseg, "event_pointnet")
            self._timed("event_pointnet", lambda: eseg.attribute(test, geometry))
        # the ablation variants get the epochs the default PointNet actually ran (same training length, fair)
        ablation_epochs = int((self.training.get("pointnet") or {}).get("epochs_run") or cfg.epochs)
        if cfg.ablation:
            for target, loss in ABLATION_VARIANTS:
                name = f"pointnet_{target}_{loss}"
                seg = FocalTrackSegmenter(model="pointnet", target=target, loss=loss, dr_max=cfg.dr_max,
                                          max_points=cfg.max_points, device=cfg.device, seed=cfg.seed,
                                          **cfg.arch("pointnet"))
                self._fit(name, seg, "ablation", epochs=ablation_epochs)
                self._iterative(f"{name}_iterative", seg)
                self.ablation.append(f"{name}_iterative")

    def reference_methods(self):
        """The oracle (upper bound) and the baselines on the same test events."""
        cfg, test, geometry = self.cfg, self.test, self.geometry
        oracle = OracleSegmenter(test)
        self._iterative("oracle_iterative", oracle)
        self._timed("oracle_common", lambda: common_inference(test, geometry, oracle, dr_max=cfg.dr_max))
        self._timed("rule_based", lambda: bl.rule_based(test, geometry, clusters=self.cl_test))
        self._timed("dr_nearest", lambda: bl.dr_nearest(test, geometry, dr_max=cfg.dr_max))
        self._timed("random", lambda: bl.random_baseline(test, self.prior, seed=cfg.seed, geometry=geometry,
                                                         dr_max=cfg.dr_max))
        self._timed("trivial", lambda: bl.trivial(test, self.majority, geometry))

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self):
        """Energy conservation and the metrics of every method on the topo-clustered test cells."""
        test = self.test
        self.truth = truth_attribution(test)
        self.methods, self.per_track, self.conservation = {}, {}, {}
        for name, a in self.attributions.items():
            cons = pm.energy_conservation(test, a)
            cons["ok"] = bool(cons["max_violation_gev"] <= CONSERVATION_TOL_GEV and cons["n_cross_event"] == 0)
            self.conservation[name] = cons
            r = pm.evaluate_attribution(test, a, self.truth, cell_mask=self.mask_test, keep_arrays=True,
                                        dense_dr=self.cfg.dense_cut)
            arrays = r.pop("arrays")
            self.per_track[name] = (arrays["e_true_gev"], arrays["e_pred_gev"])
            r["seconds"] = self.seconds.get(name)
            r["conservation_ok"] = cons["ok"]
            self.methods[name] = r
            self.log(f"[pflow] {name:18s} F1 {r['f1']:.3f}  IoU {r['iou']:.3f}  E-acc "
                     f"{r['energy_weighted_accuracy']:.3f}  resp {r['track_energy_response']:.3f}  res "
                     f"{r['track_energy_resolution']:.3f}  neutral {r['neutral_energy_recovered']:.3f}  "
                     f"conservation {cons['max_violation_gev']:.1e} GeV")

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
                            self.truth, cfg) if cfg.plots else []
        self.timings["total_s"] = time.perf_counter() - self.t_start
        results = {"methods": self.methods, "mode": cfg.mode, "ablation": self.ablation, "sample": self._sample(),
                   "acceptance": _acceptance(self.methods, self.conservation, self.rt),
                   "config": {**asdict(cfg), "mode": cfg.mode, "geometry": self.geometry.name,
                              "evaluated_cells": "topo-clustered cells with E > 0 (test split)",
                              "charged_prior_train": self.prior, "majority_train": self.majority},
                   "splits": {"counts": self.counts, **self.splits.to_dict()}, "training": self.training,
                   "conservation": self.conservation, "conservation_tolerance_gev": CONSERVATION_TOL_GEV,
                   "all_conserve": all(c["ok"] for c in self.conservation.values()), "mltree_roundtrip": self.rt,
                   "timings": {**self.timings, **{f"{k}_s": v for k, v in self.seconds.items()}}, "plots": plots,
                   "environment": {"python": platform.python_version(), "machine": platform.machine()}}
        results = to_jsonable(results, skip_keys=("arrays",))
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "report.md").write_text(render_report(results))
        self.log(f"[pflow] wrote {out / 'results.json'} and {out / 'report.md'} in {self.timings['total_s']:.1f} s")
        return results


def _make_plots(out, test, geometry, methods, per_track, attributions, truth, cfg) -> list:
    from ...plots import pflow as pp

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
