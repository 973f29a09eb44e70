"""``pcloud train``: a model trained on the user's files, saved as a bundle, measured on its own test split.

Steps (every one streams; the data set is never loaded whole):

1. the inputs (:mod:`pcloud.pipeline.inputs`): specs, formats, one geometry, classes;
2. the store (:mod:`pcloud.pipeline.store`): all inputs converted into ``OUT/data/train.parquet``;
3. the split by event number (seeded, saved as ``OUT/splits.json``); every class must have training events;
4. the normaliser of the point features, fitted on the training split only (streamed);
5. training with early stopping on the validation split: :class:`pcloud.data.batch.CloudDataset` over the store
   (row groups sharded over DataLoader workers, permuted per epoch, events shuffled in a buffer), the
   :class:`pcloud.train.trainer.Trainer` with checkpoints in ``OUT/runs``;
6. the bundle (``OUT/bundle.json`` + ``OUT/weights.pt``, :mod:`pcloud.pipeline.bundle`);
7. the test split evaluated as ``pcloud evaluate`` does (:func:`pcloud.pipeline.evaluate.evaluate_store`):
   ``OUT/results.json``, ``OUT/report.md`` and plots.

Tasks: ``id`` (class of each event; cross-entropy), ``energy`` (incident energy in GeV; relative MSE, with the
energy skip connection of the point models) and ``id+energy`` (both, the energy loss weighted 20 as in the singles
benchmark). ``pflow`` (particle-flow segmentation on MLTree files) is :mod:`pcloud.pipeline.pflow`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import awkward as ak
import numpy as np
import torch

from ..core.atomic import atomic_output
from ..data.batch import CloudDataset
from ..data.normalise import Normaliser
from ..data.point_features import feature_columns
from ..data.splits import Splits
from ..io.native import NativeStore
from ..nn.losses import MultiTaskLoss
from ..train.trainer import Trainer, select_device
from .bundle import save_bundle
from .config import RunConfig
from .inputs import InputError, describe_inputs, parse_data_specs, require_format, resolve_classes
from .batches import Batcher
from .models import build_from_spec, family, model_spec
from .store import build_store, section_field

IMAGE_AND_STORE_FORMATS = ("calogan", "calochallenge", "triforce", "native")


def task_loss(task: str) -> MultiTaskLoss:
    """The loss of a task (as in the singles benchmark)."""
    if task == "energy":
        return MultiTaskLoss(w_id=0.0, w_energy=1.0, energy_loss="relative_mse")
    if task == "id+energy":
        return MultiTaskLoss(w_id=1.0, w_energy=20.0, energy_loss="relative_mse")
    return MultiTaskLoss(w_id=1.0, w_energy=0.0)


def _xml_text(xml) -> str | None:
    return None if xml is None else Path(xml).read_text()


def _split_counts(store: NativeStore, splits: Splits, n_classes: int) -> dict:
    """Events per split and, with classes, per class and split (streamed over the label column)."""
    counts = {k: np.zeros(max(n_classes, 1), np.int64) for k in splits.names}
    e_ok = {k: 0 for k in splits.names}
    for c in store.chunks(columns=["event_number", "label", "energy_gev"]):
        ev = ak.to_numpy(c.event_number)
        lab = np.clip(ak.to_numpy(c.label), 0, None) if n_classes else np.zeros(len(c), np.int64)
        fin = np.isfinite(ak.to_numpy(c.energy_gev))
        for k in splits.names:
            m = splits.mask(ev, k)
            counts[k] += np.bincount(lab[m], minlength=counts[k].size)
            e_ok[k] += int(fin[m].sum())
    return {"per_class": {k: v.tolist() for k, v in counts.items()}, "events": {k: int(v.sum()) for k, v in
                                                                              counts.items()},
            "with_energy": e_ok}


def _check_splits(counts: dict, classes, task: str, store_path) -> None:
    for k in ("train", "val"):
        if counts["events"][k] == 0:
            raise InputError(f"the {k} split is empty ({counts['events']} events per split); give more events")
    if classes:
        for i, c in enumerate(classes):
            if counts["per_class"]["train"][i] == 0:
                raise InputError(f"class {c!r} has no events in the training split ({store_path})")
    if task in ("energy", "id+energy") and counts["with_energy"]["train"] < counts["events"]["train"]:
        raise InputError(f"task {task!r} needs the true incident energy of every event; "
                         f"{counts['events']['train'] - counts['with_energy']['train']} training events have none "
                         f"(inputs without an energy dataset)")


def prepare_data(cfg: RunConfig, out: Path, log=print) -> dict:
    """Steps 1-4 of the module docstring; returns the pieces the training needs."""
    d = cfg.data
    inputs = parse_data_specs(d["files"], xml=d.get("xml"))
    require_format(inputs, IMAGE_AND_STORE_FORMATS, cfg.task)
    need_classes = cfg.task in ("id", "id+energy")
    classes = resolve_classes(inputs, d.get("classes"), xml=d.get("xml")) if need_classes else None
    if need_classes and len(classes) < 2:
        raise InputError(f"task {cfg.task!r} needs at least two classes; the inputs hold only {classes} "
                         f"(give each file's class as FILE:LABEL)")
    if not need_classes and any(i.label for i in inputs):
        classes = resolve_classes(inputs, d.get("classes"), xml=d.get("xml"))  # for per-class energy metrics
    t0 = time.perf_counter()
    store_path = out / "data" / "train.parquet"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    meta = build_store(inputs, store_path, classes, d["threshold_mev"] / 1000.0, d.get("selection"), d.get("xml"),
                       d["chunk_events"], log=None)
    log(f"[train] {meta['n_events']} events from {len(inputs)} file(s) in {store_path} "
        f"({time.perf_counter() - t0:.1f} s)")
    store = NativeStore(store_path)
    fr = cfg.split["fractions"]
    splits = Splits({k: float(fr[k]) for k in ("train", "val", "test")}, seed=int(cfg.split["seed"]))
    ev = np.concatenate([ak.to_numpy(c.event_number) for c in store.chunks(columns=["event_number"])])
    splits.save(out / "splits.json", ev)
    counts = _split_counts(store, splits, len(classes) if classes else 0)
    _check_splits(counts, classes, cfg.task, store_path)
    geometry = inputs[0].geometry
    kind = family(cfg.model["name"])
    norm = None
    if kind == "point":
        cols = ["event_number", "points"]
        norm = Normaliser.fit(store.chunks(columns=cols), d["features"], splits=splits, split="train")
    return {"inputs": inputs, "classes": classes, "store": store, "splits": splits, "counts": counts,
            "geometry": geometry, "normaliser": norm, "kind": kind,
            "global_fields": [section_field(s.name) for s in geometry.sections]}


#: training-recipe keys of ``train.yaml`` at their defaults: left out of a run's identity (checkpoints written before
#: the keys existed still resume)
_RECIPE_DEFAULTS = {"optimizer": "adam", "schedule": "constant", "warmup": 0.05, "weight_decay": 0.0}


def _run_settings(cfg: RunConfig) -> dict:
    """The recipe a checkpoint must match to be resumed (the epochs and time budget may change)."""
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("epochs", "max_minutes", "workers")
                  and not (k in _RECIPE_DEFAULTS and v == _RECIPE_DEFAULTS[k])}
    return {"recipe": json.dumps(d, sort_keys=True, default=str)}


def _loader(ds: CloudDataset, workers: int):
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                       persistent_workers=False) if workers else ds


def run_model_spec(cfg: RunConfig, p: dict) -> dict:
    """The model's constructor arguments for the task and the data prepared by :func:`prepare_data`."""
    d, task = cfg.data, cfg.task
    n_classes = len(p["classes"]) if task in ("id", "id+energy") else 0
    return model_spec(cfg.model["name"], len(feature_columns(d["features"])), n_classes,
                      task in ("energy", "id+energy"), 0, len(p["global_fields"]), bool(cfg.model["small"]),
                      cfg.model.get("options") or {}, feature_names=feature_columns(d["features"]))


def run_streams(cfg: RunConfig, p: dict) -> tuple[CloudDataset, CloudDataset]:
    """The shuffled training stream and the ordered validation stream over the prepared store (only the columns
    the batches are made of)."""
    d, t = cfg.data, cfg.train
    batcher = Batcher(p["kind"], d["features"], d["max_points"], p["normaliser"], p["geometry"], p["global_fields"])
    common = dict(batch_size=t["batch_size"], collate=batcher, splits=p["splits"], seed=cfg.seed,
                  chunk_size=d["chunk_events"], columns=batcher.columns(p["store"]))
    return (CloudDataset(p["store"], shuffle=True, split="train", shuffle_buffer=t["shuffle_buffer"], **common),
            CloudDataset(p["store"], shuffle=False, split="val", **common))


def train(cfg: RunConfig, out, log=print, on_epoch=None) -> dict:
    """Train the model of ``cfg`` on its data; writes the bundle, splits, checkpoints and the test-split results
    into ``out``; returns the results. ``on_epoch(record)`` is called after every epoch (scans prune there)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    p = prepare_data(cfg, out, log)
    t, task = cfg.train, cfg.task
    spec = run_model_spec(cfg, p)
    torch.manual_seed(cfg.seed)
    model = build_from_spec(cfg.model["name"], spec, p["geometry"])
    train_ds, val_ds = run_streams(cfg, p)
    trainer = Trainer(model, task_loss(task), run_dir=out / "runs", epochs=t["epochs"], batch_size=t["batch_size"],
                      lr=t["lr"], patience=t["patience"], device=str(select_device(cfg.device)), seed=cfg.seed,
                      max_minutes=t.get("max_minutes"), log=lambda s: log(f"[train] {s}"), progress=False,
                      settings=_run_settings(cfg), optimizer=t.get("optimizer", "adam"),
                      schedule=t.get("schedule", "constant"), warmup=t.get("warmup", 0.05),
                      weight_decay=t.get("weight_decay", 0.0))
    trainer.on_epoch = on_epoch
    result = trainer.fit(_loader(train_ds, t["workers"]), _loader(val_ds, t["workers"]))
    res = finish_training(out, trainer.model, cfg, p, spec, result, log=log)
    res["train_seconds_total"] = time.perf_counter() - t_start
    _write_results(out, res)
    return res


def finish_training(out: Path, model, cfg: RunConfig, p: dict, spec: dict, result, extra: dict | None = None,
                    log=print) -> dict:
    """Steps 6-7: the bundle of the trained ``model`` and the evaluation of its test split (``extra`` joins the
    bundle's training record, e.g. the distributed run's per-rank counts); returns the results."""
    from .evaluate import evaluate_store

    d = cfg.data
    data_meta = {"features": list(d["features"]), "max_points": d["max_points"],
                 "threshold_gev": d["threshold_mev"] / 1000.0, "classes": p["classes"],
                 "global_fields": p["global_fields"], "selection": d.get("selection") or {},
                 "xml_text": _xml_text(d.get("xml")), "inputs": describe_inputs(p["inputs"])}
    training = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss, "seconds": result.seconds, "history": result.history,
                "stopped_early": result.stopped_early, "split_counts": p["counts"], "config": cfg.to_dict(),
                "n_params": int(sum(q.numel() for q in model.parameters() if q.requires_grad)), **(extra or {})}
    save_bundle(out, model, cfg.task, cfg.model["name"], spec, data_meta, p["geometry"], p["normaliser"], training)
    log(f"[train] bundle written to {out} ({result.epochs_run} epochs, best {result.best_epoch}, "
        f"{result.seconds:.1f} s)")
    res = evaluate_store(out, p["store"], out, splits=p["splits"], split="test", log=log)
    res.update(extra or {})
    _write_results(out, res)
    return res


def _write_results(out: Path, res: dict) -> None:
    with atomic_output(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1, default=str) + "\n")
