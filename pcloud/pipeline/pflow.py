"""Particle flow on the user's MLTree files: ``pcloud train --task pflow``, ``evaluate`` and ``predict``.

Events come from MLTree ROOT files (:func:`pcloud.io.mltree.read_mltree`; several files are joined with
:func:`pcloud.core.events.concatenate_events`) on pcloud's ATLAS-like geometry; only their clustered cells exist,
as in the files. Training needs the per-cell truth (``cluster_cell_hitsTruthIndex/E``): a file without it is an
error naming the file. The model is a :class:`pcloud.pflow.learned.FocalTrackSegmenter` (per-track clouds within
``data.dr_max``, soft target, energy-weighted loss) trained with early stopping on the validation split; the
bundle holds its weights (tensors only) and configuration. Evaluation runs iterative and common inference
(:mod:`pcloud.pflow.inference`) and the metrics of :mod:`pcloud.metrics.particle_flow`; prediction writes, per
cell, the charged fraction given to each track and the neutral energy left after iterative and common subtraction.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import atomic_output
from ..core.attribution import truth_attribution
from ..core.clusters import concatenate_clusters
from ..core.events import concatenate_events, select_events
from ..core.jsonable import to_jsonable
from ..data.splits import Splits
from ..geometry import get_geometry
from ..io.mltree import read_mltree, require_truth
from ..metrics.particle_flow import energy_conservation, evaluate_attribution
from ..pflow.inference import common_inference, iterative_inference
from ..pflow.learned import FocalTrackSegmenter
from .bundle import BUNDLE_FILE, BUNDLE_FORMAT, BUNDLE_VERSION, BundleError, _sha256, read_bundle_meta
from .config import RunConfig
from .inputs import InputError, describe_inputs, parse_data_specs, require_format

SEGMENTER_FILE = "segmenter.pt"
#: CPU-sized DGCNN of the particle-flow benchmark's quick and medium modes
_DGCNN_SMALL = {"k": 8, "edge_channels": (32, 32, 64), "emb_dim": 64}


def read_events(specs, need_truth: bool, geometry=None):
    """``(events, clusters, inputs)`` of MLTree files (one geometry: pcloud's atlas)."""
    geometry = geometry or get_geometry("atlas")
    inputs = parse_data_specs(specs)
    require_format(inputs, ("mltree",), "pflow")
    evs, cls, n_cells = [], [], []
    for inp in inputs:
        d = read_mltree(inp.path, geometry)
        if need_truth:
            require_truth(d, "particle-flow training and evaluation")
        inp.n_events = int(d.events.n_events)
        evs.append(d.events)
        cls.append(d.clusters)
        n_cells.append(d.events.cells["event"].size)
    return concatenate_events(evs), concatenate_clusters(cls, n_cells), inputs


def _write_bundle(out: Path, seg: FocalTrackSegmenter, cfg: RunConfig, inputs, training: dict) -> None:
    seg.save(out / SEGMENTER_FILE)
    w = out / SEGMENTER_FILE
    meta = {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "pcloud_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "task": "pflow",
            "model": {"name": seg.model_name, "family": "pflow-segmenter", "kwargs": seg._config()},
            "data": {"dr_max": seg.dr_max, "max_points": seg.max_points, "features": seg.features,
                     "inputs": describe_inputs(inputs)},
            "geometry": {"name": "atlas", "kwargs": {}}, "training": training,
            "weights": {"file": SEGMENTER_FILE, "bytes": w.stat().st_size, "sha256": _sha256(w)}}
    with atomic_output(out / BUNDLE_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1, default=str) + "\n")


def load_segmenter(bundle) -> tuple[FocalTrackSegmenter, dict]:
    """The segmenter of a particle-flow bundle (checked like every bundle) and its metadata."""
    folder = Path(bundle)
    meta = read_bundle_meta(folder)
    if meta["task"] != "pflow":
        raise BundleError(f"{folder}: a {meta['task']!r} bundle, not a particle-flow (pflow) one")
    w = folder / meta["weights"]["file"]
    if not w.is_file() or w.stat().st_size != meta["weights"]["bytes"] or _sha256(w) != meta["weights"]["sha256"]:
        raise BundleError(f"{w}: corrupted bundle: the segmenter file is missing or differs from the one recorded "
                          f"in {BUNDLE_FILE}")
    try:
        return FocalTrackSegmenter.load(w, device="cpu"), meta
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise BundleError(f"{folder}: corrupted bundle: {str(err).splitlines()[0][:200]}") from None


def train_pflow(cfg: RunConfig, out, log=print) -> dict:
    """``pcloud train --task pflow``: the segmenter of ``cfg`` on MLTree files; bundle and test metrics in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geometry = get_geometry("atlas")
    events, clusters, inputs = read_events(cfg.data["files"], need_truth=True, geometry=geometry)
    ev = np.arange(events.n_events, dtype=np.int64)
    fr = cfg.split["fractions"]
    splits = Splits({k: float(fr[k]) for k in ("train", "val", "test")}, seed=int(cfg.split["seed"]))
    splits.save(out / "splits.json", ev)
    parts = {k: select_events(events, splits.mask(ev, k)) for k in ("train", "val", "test")}
    empty = [k for k, v in parts.items() if v.n_events == 0]
    if empty:
        raise InputError(f"split(s) {empty} empty with {events.n_events} events; give more events")
    name = cfg.model["name"]
    if name not in ("pointnet", "dgcnn"):
        raise InputError(f"task pflow: model {name!r} is not a per-point segmenter; use pointnet or dgcnn")
    arch = dict(_DGCNN_SMALL) if (name == "dgcnn" and cfg.model["small"]) else {}
    arch.update(cfg.model.get("options") or {})
    seg = FocalTrackSegmenter(model=name, dr_max=float(cfg.data["dr_max"]), max_points=int(cfg.data["max_points"]),
                              device=cfg.device, seed=cfg.seed, **arch)
    t = cfg.train
    info = seg.fit(parts["train"], parts["val"], geometry, epochs=t["epochs"], batch_size=t["batch_size"],
                   lr=t["lr"], patience=t["patience"], max_minutes=t.get("max_minutes"),
                   log=lambda s: log(f"[train:pflow] {s}"))
    _write_bundle(out, seg, cfg, inputs, {k: v for k, v in info.items()} | {"config": cfg.to_dict()})
    log(f"[train:pflow] bundle written to {out} ({info['epochs_run']} epochs, {info['n_train_clouds']} training "
        f"clouds)")
    sub = clusters_of(clusters, events, splits.mask(ev, "test"))
    return _evaluate_events(seg, parts["test"], sub, geometry, out, split="test", log=log)


def clusters_of(clusters, events, mask) -> np.ndarray:
    """Clustered-cell mask of the events selected by ``mask`` (cell rows in :func:`select_events` order)."""
    keep_cells = mask[events.cells["event"]]
    return (clusters.cell_cluster >= 0)[keep_cells]


def _evaluate_events(seg, events, cell_mask, geometry, out: Path, split=None, log=print) -> dict:
    truth = truth_attribution(events)
    methods = {}
    for name, fn in (("iterative", lambda: iterative_inference(events, geometry, seg, dr_max=seg.dr_max)),
                     ("common", lambda: common_inference(events, geometry, seg, dr_max=seg.dr_max))):
        a = fn()
        r = evaluate_attribution(events, a, truth, cell_mask=cell_mask)
        r["conservation"] = energy_conservation(events, a)
        methods[name] = r
        log(f"[evaluate:pflow] {name}: F1 {r['f1']:.3f}  E-acc {r['energy_weighted_accuracy']:.3f}  response "
            f"{r['track_energy_response']:.3f}  resolution {r['track_energy_resolution']:.3f}")
    res = {"task": "pflow", "model": seg.model_name, "split": split, "n_events": int(events.n_events),
           "n_tracks": int(events.tracks["event"].size), "methods": to_jsonable(methods)}
    keys = ("f1", "iou", "energy_weighted_accuracy", "track_energy_response", "track_energy_resolution",
            "neutral_energy_recovered")
    lines = [f"# pcloud evaluate: {seg.model_name} particle flow", "",
             f"{res['n_events']} events, {res['n_tracks']} tracks" + (f" (split {split})" if split else "") + ".",
             "", "| inference | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for m, r in res["methods"].items():
        lines.append(f"| {m} | " + " | ".join("n/a" if r.get(k) is None else f"{r[k]:.3f}" for k in keys) + " |")
    with atomic_output(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1) + "\n")
    with atomic_output(out / "report.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return res


def evaluate_pflow(bundle, specs, out, log=print) -> dict:
    """``pcloud evaluate BUNDLE --data FILE.root --out DIR`` for a particle-flow bundle."""
    seg, _ = load_segmenter(bundle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geometry = get_geometry("atlas")
    events, clusters, _ = read_events(specs, need_truth=True, geometry=geometry)
    return _evaluate_events(seg, events, clusters.cell_cluster >= 0, geometry, out, log=log)


def predict_pflow(bundle, spec, output, log=print) -> dict:
    """``pcloud predict BUNDLE FILE.root -o OUT.parquet``: one row per clustered cell: ``event_number``,
    ``cell_id``, ``energy_gev``, ``track_index`` (list: the event's tracks that receive energy), ``fraction_iterative``
    and ``fraction_common`` (lists aligned with it: share of the cell's energy given to each track),
    ``neutral_iterative_gev`` and ``neutral_common_gev`` (energy left after subtraction)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seg, _ = load_segmenter(bundle)
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"output {output}: predictions are written as Parquet; use a .parquet file name")
    geometry = get_geometry("atlas")
    events, _, _ = read_events([spec] if isinstance(spec, (str, Path)) else spec, need_truth=False,
                               geometry=geometry)
    C = events.cells
    n_c = C["event"].size
    e = np.asarray(C["energy_gev"], np.float64)
    t_local = np.arange(events.tracks["event"].size) - events.track_offsets[events.tracks["event"]]
    cols = {"event_number": np.asarray(events.meta.get("event_number", np.arange(events.n_events)))[C["event"]],
            "cell_id": np.asarray(C["id"], np.int64), "energy_gev": e}
    pairs = {}
    for name, a in (("iterative", iterative_inference(events, geometry, seg, dr_max=seg.dr_max)),
                    ("common", common_inference(events, geometry, seg, dr_max=seg.dr_max))):
        cols[f"neutral_{name}_gev"] = a.neutral(e)
        pairs[name] = a
    # one (cell, track) table over both inference modes, aligned per cell
    key = np.unique(np.concatenate([a.cell_row * (1 << 32) + a.track_row for a in pairs.values()]))
    cell_of, track_of = key >> 32, key & ((1 << 32) - 1)
    counts = np.bincount(cell_of, minlength=n_c)
    safe_e = np.where(e > 0, e, 1.0)
    for name, a in pairs.items():
        val = np.zeros(key.size)
        np.add.at(val, np.searchsorted(key, a.cell_row * (1 << 32) + a.track_row), a.energy_gev)
        cols[f"fraction_{name}"] = pa.ListArray.from_arrays(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32),
                                                            val / safe_e[cell_of])
    cols["track_index"] = pa.ListArray.from_arrays(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32),
                                                   t_local[track_of].astype(np.int32))
    table = pa.table(cols)
    with atomic_output(output) as tmp:
        pq.write_table(table, tmp)
    log(f"[predict:pflow] {events.n_events} events, {n_c} cells -> {output}")
    return {"n_cells": n_c, "n_events": int(events.n_events), "output": str(output)}
