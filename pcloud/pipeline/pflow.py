"""Particle flow on the user's MLTree files: ``pcloud train --task pflow``, ``evaluate`` and ``predict``.

Events come from MLTree ROOT files (:func:`pcloud.io.mltree.read_mltree`; several files are joined with
:func:`pcloud.core.events.concatenate_events`) on pcloud's ATLAS-like geometry; only their clustered cells exist,
as in the files. Training needs the per-cell truth (``cluster_cell_hitsTruthIndex/E``): a file without it is an
error naming the file. The model is a :class:`pcloud.pflow.learned.FocalTrackSegmenter` (``model.name`` PointNet,
DGCNN, point transformer or GravNet; light widths with ``model.small``, else full) on per-track clouds within
``data.dr_max`` (``data.pflow_cells``: the topo-clustered cells by default; ``data.pflow_max_points``: every
point by default, since truncating a cloud labels its dropped cells neutral; ``train.pflow_ragged``: flat batches
for PointNet, padded ones for the others by default, the faster path of each), soft target, the loss
``train.pflow_loss`` (per-cell cross-entropy by default), trained with early stopping on the validation split, the
decision threshold chosen on the validation events (``train.pflow_threshold: val``): the benchmark's recipe,
:data:`pcloud.bench.pflow.config.RECIPE`, except the optimiser, which follows ``train.optimizer`` /
``train.schedule`` (adam / constant by default; the benchmark's is adamw / cosine); the bundle holds its weights
(tensors only) and configuration. Evaluation runs iterative and common inference
(:mod:`pcloud.pflow.inference`) and the metrics of :mod:`pcloud.metrics.particle_flow`; prediction writes, per
cell, the charged fraction given to each track and the neutral energy left after iterative and common subtraction.

Files larger than memory: every step reads the MLTree files in chunks of ``data.pflow_chunk_events`` events
(:func:`iter_event_chunks`). Training writes the per-track clouds of the training and validation events into two
native stores (``OUT/data/pflow_train.parquet``, ``pflow_val.parquet``) chunk by chunk, both in one pass over the
files (:class:`pcloud.io.native.CloudWriter`; choosing the decision threshold on the validation events reads them
once more, the test evaluation after training last), and trains from them as a stream
(:meth:`~pcloud.pflow.learned.FocalTrackSegmenter.fit_stores`); evaluation runs the inference chunk by chunk and
accumulates the metrics (:class:`pcloud.metrics.particle_flow.AttributionMetrics`); prediction writes one Parquet
row group per chunk. Only a few numbers per track and per event are kept across chunks.
"""
from __future__ import annotations

import datetime as _dt
import json
from contextlib import ExitStack
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
from ..io.mltree import iter_mltree, read_mltree, require_truth
from ..io.native import CloudWriter, NativeStore
from ..metrics.particle_flow import AttributionMetrics
from ..pflow.inference import common_inference, iterative_inference
from ..pflow.learned import WIDTHS, FocalTrackSegmenter
from .bundle import (
    BUNDLE_FILE,
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    BundleError,
    _sha256,
    read_bundle_meta,
)
from .config import DEFAULTS_FILE, RunConfig, load_config
from .inputs import InputError, describe_inputs, parse_data_specs, require_format

SEGMENTER_FILE = "segmenter.pt"


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


#: the per-track segmenters ``pcloud train --task pflow`` trains (the cell-graph model is the Python API's and
#: ``bench pflow``'s only: the config's model names are those of the id / energy tasks, whose clouds carry no graph)
PFLOW_MODELS = tuple(m for m in WIDTHS["full"] if m != "cellgraph")


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


def iter_event_chunks(inputs, geometry, chunk_events: int, need_truth: bool):
    """``(first, events, clusters)`` of consecutive chunks of at most ``chunk_events`` events of the MLTree
    ``inputs``, file after file (``first``: index of the chunk's first event among all inputs); sets each input's
    ``n_events``."""
    first = 0
    for inp in inputs:
        n = 0
        for d in iter_mltree(inp.path, int(chunk_events), geometry):
            if need_truth:
                require_truth(d, "particle-flow training and evaluation")
            yield first, d.events, d.clusters
            first += int(d.events.n_events)
            n += int(d.events.n_events)
        inp.n_events = n


def _write_split_stores(seg, inputs, geometry, splits: Splits, paths: dict, chunk_events: int) -> tuple[dict, dict]:
    """The per-track clouds of the events of every split in ``paths`` (split name -> store path) as native stores,
    all written in one pass over the MLTree files, chunk by chunk. Returns the events of every split seen and the
    clouds written per split; when a split has no clouds no store is written (the caller says why)."""
    counts = {k: 0 for k in splits.names}
    n_clouds = {k: 0 for k in paths}
    meta = {"geometry": "atlas"}
    with ExitStack() as stack:
        writers = {k: stack.enter_context(CloudWriter(p, meta={**meta, "pflow_split": k},
                                                      row_group_events=_CLOUD_ROW_GROUP, full_row_groups=True))
                   for k, p in paths.items()}
        for first, events, _ in iter_event_chunks(inputs, geometry, chunk_events, need_truth=True):
            ev = np.arange(first, first + events.n_events, dtype=np.int64)
            for k in splits.names:
                keep = splits.mask(ev, k)
                counts[k] += int(keep.sum())
                if k in writers and keep.any():
                    c = seg.make_clouds(select_events(events, keep), geometry)
                    if len(c):
                        writers[k].write(c)
                        n_clouds[k] += len(c)
        for w in writers.values():  # every store or none (the caller says which split has no clouds)
            w.close() if all(n_clouds.values()) else w.abort()
    return counts, n_clouds


def _choose_threshold_on_val(seg, inputs, geometry, splits: Splits, chunk_events: int) -> float:
    """The segmenter's decision threshold chosen on the validation events (``FocalTrackSegmenter.choose_threshold``),
    with the files read once more chunk by chunk and the counts of each chunk's validation events added up."""
    total = None
    for first, events, _ in iter_event_chunks(inputs, geometry, chunk_events, need_truth=True):
        keep = splits.mask(np.arange(first, first + events.n_events, dtype=np.int64), "val")
        if keep.any():
            c = seg.threshold_counts(select_events(events, keep), geometry)
            total = c if total is None else total + c
    return seg.threshold_from_counts(total)


#: per-track clouds per row group of the cloud stores (a cloud holds up to a few thousand cells)
_CLOUD_ROW_GROUP = 256


def train_pflow(cfg: RunConfig, out, log=print) -> dict:
    """``pcloud train --task pflow``: the segmenter of ``cfg`` on MLTree files; bundle and test metrics in ``out``.
    The files are read in chunks and the clouds streamed from disk (module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geometry = get_geometry("atlas")
    inputs = parse_data_specs(cfg.data["files"])
    require_format(inputs, ("mltree",), "pflow")
    name = cfg.model["name"]
    if name not in PFLOW_MODELS:
        raise InputError(f"task pflow: model {name!r} is not a per-point segmenter; use one of "
                         f"{', '.join(PFLOW_MODELS)}")
    if cfg.data["max_points"] != load_config(DEFAULTS_FILE, defaults=False)["data"]["max_points"]:
        log(f"[train:pflow] note: data.max_points ({cfg.data['max_points']}) applies to the id / energy tasks; the "
            f"track clouds of pflow use data.pflow_max_points ({cfg.data.get('pflow_max_points', 0)}, 0: every point)")
    fr = cfg.split["fractions"]
    splits = Splits({k: float(fr[k]) for k in ("train", "val", "test")}, seed=int(cfg.split["seed"]))
    t = cfg.train
    threshold = t.get("pflow_threshold", "val")
    options = dict(cfg.model.get("options") or {})
    owned = sorted(set(options) & {"model", "target", "loss", "dr_max", "max_points", "device", "seed", "cells",
                                   "threshold", "energy_share", "widths", "features", "ragged"})
    if owned:
        raise InputError(f"config model.options: {owned} are set by other keys (model.name, model.small, "
                         "data.dr_max, data.pflow_max_points, data.pflow_cells, train.pflow_loss, train.pflow_threshold, "
                         "train.pflow_energy_share, train.pflow_ragged, device, seed); options are architecture arguments, "
                         "e.g. {k: 8}")
    ragged = t.get("pflow_ragged", "auto")
    seg = FocalTrackSegmenter(model=name, loss=t.get("pflow_loss", "ce"), dr_max=float(cfg.data["dr_max"]),
                              max_points=int(cfg.data.get("pflow_max_points", 0)) or None, device=cfg.device,
                              seed=cfg.seed, ragged=name == "pointnet" if ragged == "auto" else bool(ragged),
                              cells=cfg.data.get("pflow_cells", "topo"),
                              threshold=None if threshold == "val" else threshold,
                              energy_share=float(t.get("pflow_energy_share", 0.5)),
                              widths="light" if cfg.model["small"] else "full", **options)
    chunk = int(cfg.data["pflow_chunk_events"])
    (out / "data").mkdir(exist_ok=True)
    paths = {k: out / "data" / f"pflow_{k}.parquet" for k in ("train", "val")}
    counts, n_clouds = _write_split_stores(seg, inputs, geometry, splits, paths, chunk)
    stores = {}
    for k, path in paths.items():
        if n_clouds[k] == 0:
            if counts[k] == 0:
                raise InputError(f"split {k!r} empty with {sum(counts.values())} events ({counts}); give more events")
            raise InputError(f"split {k!r}: none of its {counts[k]} events has a track reaching the calorimeter")
        stores[k] = NativeStore(path)
    if counts["test"] == 0:
        raise InputError(f"split 'test' empty with {sum(counts.values())} events ({counts}); give more events")
    n_events = sum(counts.values())
    splits.save(out / "splits.json", np.arange(n_events, dtype=np.int64))
    log(f"[train:pflow] {n_events} events ({counts}); clouds: {stores['train'].n_events} train, "
        f"{stores['val'].n_events} val in {out / 'data'}")
    info = seg.fit_stores(stores["train"], stores["val"], epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
                          patience=t["patience"], max_minutes=t.get("max_minutes"),
                          log=lambda s: log(f"[train:pflow] {s}"), shuffle_buffer=int(t["pflow_shuffle_buffer"]),
                          **{k: t[k] for k in ("optimizer", "schedule", "warmup", "weight_decay") if k in t})
    if threshold == "val":
        info["threshold"] = _choose_threshold_on_val(seg, inputs, geometry, splits, chunk)
        info["threshold_info"] = dict(seg.threshold_info)
        log(f"[train:pflow] decision threshold {seg.threshold:.3f} (chosen on the validation events: F1 "
            f"{seg.threshold_info['val']['f1']:.3f}, E-acc {seg.threshold_info['val']['ewa']:.3f}; at 0.5: "
            f"{seg.threshold_info['val_at_0.5']['f1']:.3f}, {seg.threshold_info['val_at_0.5']['ewa']:.3f})")
    _write_bundle(out, seg, cfg, inputs, {k: v for k, v in info.items()} | {"config": cfg.to_dict(),
                                                                              "split_counts": counts})
    log(f"[train:pflow] bundle written to {out} ({info['epochs_run']} epochs, {info['n_train_clouds']} training "
        f"clouds)")
    return _evaluate_chunks(seg, inputs, geometry, chunk, out, splits=splits, split="test", log=log)


def clusters_of(clusters, events, mask) -> np.ndarray:
    """Clustered-cell mask of the events selected by ``mask`` (cell rows in :func:`select_events` order)."""
    keep_cells = mask[events.cells["event"]]
    return (clusters.cell_cluster >= 0)[keep_cells]


def _evaluate_chunks(seg, inputs, geometry, chunk_events: int, out: Path, splits=None, split=None,
                     log=print) -> dict:
    """Iterative and common inference over the events of the inputs (or of one split), chunk by chunk; metrics of
    :class:`~pcloud.metrics.particle_flow.AttributionMetrics` over all of them in ``out/results.json``."""
    acc = {"iterative": AttributionMetrics(), "common": AttributionMetrics()}
    cell_layer_of = np.asarray(geometry.cells["layer"], np.int64)
    n_tracks = 0
    for first, events, clusters in iter_event_chunks(inputs, geometry, chunk_events, need_truth=True):
        if splits is not None:
            keep = splits.mask(np.arange(first, first + events.n_events, dtype=np.int64), split)
            if not keep.any():
                continue
            cell_mask = clusters_of(clusters, events, keep)
            events = select_events(events, keep)
        else:
            cell_mask = clusters.cell_cluster >= 0
        truth = truth_attribution(events)
        n_tracks += int(events.tracks["event"].size)
        lay = cell_layer_of[events.cells["id"]]
        acc["iterative"].add(events, iterative_inference(events, geometry, seg, dr_max=seg.dr_max), truth, cell_mask,
                             lay)
        acc["common"].add(events, common_inference(events, geometry, seg, dr_max=seg.dr_max), truth, cell_mask, lay)
    if acc["iterative"].n_events == 0:
        raise InputError("no event to evaluate" + (f" in split {split!r}" if split else ""))
    methods = {}
    for name, m in acc.items():
        r = m.result()
        r["conservation"] = r["energy_conservation"]
        methods[name] = r
        log(f"[evaluate:pflow] {name}: F1 {r['f1']:.3f}  E-acc {r['energy_weighted_accuracy']:.3f}  response "
            f"{r['track_energy_response']:.3f}  resolution {r['track_energy_resolution']:.3f}")
    res = {"task": "pflow", "model": seg.model_name, "split": split, "n_events": int(acc["iterative"].n_events),
           "n_tracks": n_tracks, "methods": to_jsonable(methods)}
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


def evaluate_pflow(bundle, specs, out, log=print, chunk_events: int | None = None) -> dict:
    """``pcloud evaluate BUNDLE --data FILE.root --out DIR`` for a particle-flow bundle (files read in chunks of
    ``chunk_events`` events; default: the bundle's training value)."""
    seg, meta = load_segmenter(bundle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geometry = get_geometry("atlas")
    inputs = parse_data_specs(specs)
    require_format(inputs, ("mltree",), "pflow")
    return _evaluate_chunks(seg, inputs, geometry, chunk_events or _bundle_chunk(meta), out, log=log)


def _bundle_chunk(meta: dict) -> int:
    cfg = (meta.get("training") or {}).get("config") or {}
    return int((cfg.get("data") or {}).get("pflow_chunk_events") or _DEFAULT_CHUNK)


#: events per chunk of bundles trained before the key existed
_DEFAULT_CHUNK = 256


def predict_pflow(bundle, spec, output, log=print, chunk_events: int | None = None) -> dict:
    """``pcloud predict BUNDLE FILE.root -o OUT.parquet``: one row per clustered cell: ``event_number``,
    ``cell_id``, ``energy_gev``, ``track_index`` (list: the event's tracks that receive energy), ``fraction_iterative``
    and ``fraction_common`` (lists aligned with it: share of the cell's energy given to each track),
    ``neutral_iterative_gev`` and ``neutral_common_gev`` (energy left after subtraction). The input is read and
    the output written in chunks of ``chunk_events`` events (one Parquet row group each)."""
    import pyarrow.parquet as pq

    seg, meta = load_segmenter(bundle)
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"output {output}: predictions are written as Parquet; use a .parquet file name")
    geometry = get_geometry("atlas")
    inputs = parse_data_specs([spec] if isinstance(spec, (str, Path)) else spec)
    require_format(inputs, ("mltree",), "pflow")
    n_cells = n_events = 0
    with atomic_output(output) as tmp:
        writer = None
        try:
            for _, events, _ in iter_event_chunks(inputs, geometry, chunk_events or _bundle_chunk(meta),
                                                  need_truth=False):
                table = _prediction_table(seg, events, geometry)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                n_cells += table.num_rows
                n_events += int(events.n_events)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise InputError(f"{inputs[0].path}: no event to predict")
    log(f"[predict:pflow] {n_events} events, {n_cells} cells -> {output}")
    return {"n_cells": n_cells, "n_events": n_events, "output": str(output)}


def _prediction_table(seg, events, geometry):
    """The rows of :func:`predict_pflow` for one chunk of events."""
    import pyarrow as pa

    C = events.cells
    n_c = C["event"].size
    e = np.asarray(C["energy_gev"], np.float64)
    t_local = np.arange(events.tracks["event"].size) - events.track_offsets[events.tracks["event"]]
    cols = {"event_number": np.asarray(events.meta.get("event_number", np.arange(events.n_events)),
                                       np.int64)[C["event"]],
            "cell_id": np.asarray(C["id"], np.int64), "energy_gev": e}
    pairs = {}
    for name, a in (("iterative", iterative_inference(events, geometry, seg, dr_max=seg.dr_max)),
                    ("common", common_inference(events, geometry, seg, dr_max=seg.dr_max))):
        cols[f"neutral_{name}_gev"] = a.neutral(e)
        pairs[name] = a
    # one (cell, track) table over both inference modes, aligned per cell
    key = np.unique(np.concatenate([a.cell_row * (1 << 32) + a.track_row for a in pairs.values()]))
    cell_of, track_of = key >> 32, key & ((1 << 32) - 1)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(cell_of, minlength=n_c))]).astype(np.int32)
    safe_e = np.where(e > 0, e, 1.0)
    for name, a in pairs.items():
        val = np.zeros(key.size)
        np.add.at(val, np.searchsorted(key, a.cell_row * (1 << 32) + a.track_row), a.energy_gev)
        cols[f"fraction_{name}"] = pa.ListArray.from_arrays(offsets, val / safe_e[cell_of])
    cols["track_index"] = pa.ListArray.from_arrays(offsets, t_local[track_of].astype(np.int32))
    return pa.table(cols)
