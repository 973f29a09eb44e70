"""``pcloud evaluate`` and ``pcloud predict``: a model bundle applied to files, streamed through a native store.

:func:`predict_store` runs the bundle's model over a store (optionally one split) batch by batch and returns
per-event arrays; :func:`evaluate_store` turns them into the benchmarks' metrics (:mod:`pcloud.metrics.tasks`:
ROC, AUC, background rejection at working points, accuracy vs energy and eta; bias, resolution and the
sigma/E = a/sqrt(E) (+) b (+) c/E fit per class) and plots (:mod:`pcloud.plots.performance`); :func:`evaluate`
and :func:`predict` start from the user's files (:mod:`pcloud.pipeline.inputs`).

The signal of two-class identification is class 0 (the first class of the bundle).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import awkward as ak
import numpy as np
import torch

from ..core.atomic import atomic_output
from ..core.jsonable import to_jsonable
from ..data.batch import CloudDataset
from ..io.native import NativeStore, geometry_meta
from ..metrics.tasks import energy_metrics, fits_by_class, id_metrics, softmax
from .bundle import Bundle, load_bundle
from .inputs import InputError, parse_data_specs, require_format, resolve_classes
from .store import build_store

#: signal efficiencies at which background rejections are reported (unresolved ones are marked n/a)
WORKING_POINTS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
_EVENT_FIELDS = ("event_number", "source_file", "source_event", "label", "pdg", "energy_gev", "theta_rad")


def predict_store(bundle: Bundle, store: NativeStore, splits=None, split: str | None = None,
                  batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per-event model outputs over ``store`` (or one split of it): the store's per-event fields plus ``proba``
    (N, n_classes) and/or ``energy_pred_gev`` (N,)."""
    batcher = bundle.batcher()
    ds = CloudDataset(store, batch_size=batch_size, splits=splits, split=split,
                      columns=batcher.columns(store, extra=_EVENT_FIELDS))
    dev = next(bundle.model.parameters()).device
    cols: dict[str, list] = {}
    with torch.no_grad():
        for chunk in ds:
            batch = {k: v.to(dev) for k, v in batcher(chunk).items()}
            out = bundle.model(batch)
            for f in _EVENT_FIELDS:
                cols.setdefault(f, []).append(ak.to_numpy(chunk[f]))
            if "logits" in out:
                cols.setdefault("proba", []).append(softmax(out["logits"].float().cpu().numpy().astype(np.float64)))
            if "energy" in out:
                cols.setdefault("energy_pred_gev", []).append(out["energy"].float().cpu().numpy().astype(np.float64))
    if not cols:
        raise InputError(f"{store.path}: no event to predict" + (f" in split {split!r}" if split else ""))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _eta(theta: np.ndarray) -> np.ndarray:
    """Pseudorapidity of the incident direction (zeros when the files carry no direction)."""
    theta = np.asarray(theta, np.float64)
    if not np.all(np.isfinite(theta)):
        return np.zeros(theta.size)
    return -np.log(np.tan(0.5 * theta))


def task_summary(bundle: Bundle, pred: dict) -> dict:
    """The metrics entry of one model on the predicted events (the benchmarks' per-model entry)."""
    classes = bundle.classes or []
    e_true = pred["energy_gev"]
    finite = e_true[np.isfinite(e_true)]
    rng = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    task = SimpleNamespace(energy_gev=rng, n_classes=len(classes), class_names=list(classes),
                           working_points=WORKING_POINTS if len(classes) == 2 else ())
    entry: dict = {"n_events": int(e_true.size)}
    label = pred["label"]
    if "proba" in pred:
        if np.any(label < 0):
            raise InputError("identification metrics need the class of every event; some events have no label "
                             "(give each file's class as FILE:LABEL)")
        m = id_metrics(task, label, pred["proba"], np.nan_to_num(e_true), _eta(pred["theta_rad"]))
        entry["_score"] = m.pop("_score", None)
        entry.update(m)
    if "energy_pred_gev" in pred:
        if not np.all(np.isfinite(e_true)):
            raise InputError("energy metrics need the true energy of every event; some events have none")
        en = energy_metrics(task, np.clip(label, 0, None), e_true, pred["energy_pred_gev"])
        entry["energy"] = en
        entry["resolution_fit"] = fits_by_class(en)
    return entry


def _plots(bundle: Bundle, entry: dict, pred: dict, out: Path) -> list[str]:
    from ..plots import performance as pp

    name = bundle.meta["model"]["name"]
    classes = bundle.classes or ["all"]
    task = {"models": {name: {k: v for k, v in entry.items() if not k.startswith("_")}}, "classes": classes,
            "description": f"{bundle.task}, {name} ({bundle.path})", "kind": bundle.task}
    files = []
    if entry.get("_score") is not None and len(classes) == 2:
        raw = {"_scores": {name: entry["_score"]}, "_test_label": pred["label"]}
        files.append(pp.rejection_plot("evaluate", task, raw, out / "rejection.png"))
    if "accuracy_vs_energy" in entry:
        files.append(pp.accuracy_plot("evaluate", task, out / "accuracy.png"))
    if "energy" in entry:
        # one column per class with enough events for a resolution (else the pooled "all")
        task["classes"] = [c for c in (bundle.classes or []) if c in entry["energy"]] or ["all"]
        files.append(pp.resolution_plot("evaluate", task, out / "resolution.png"))
    return [Path(f).name for f in files]


def _report(res: dict) -> str:
    m = res["metrics"]
    lines = [f"# pcloud evaluate: {res['model']} ({res['task']})", "",
             f"Bundle `{res['bundle']}`; {m['n_events']} events" + (f" (split {res['split']})" if res.get("split")
                                                                   else "") + f"; classes {res['classes']}.", ""]
    if "auc" in m:
        lines += [f"- AUC: {m['auc']:.4f}; accuracy {m['accuracy']:.4f}"]
    limits = m.get("rejection_lower_limit_95") or {}
    for w, r in (m.get("rejection") or {}).items():
        err = (m.get("rejection_err") or {}).get(w)
        if r is not None:
            text = f"{r:.4g} ± {err:.2g}"
        elif w in limits:
            text = f"> {limits[w]:.4g} (95% CL lower limit: no background event passes)"
        else:
            text = "n/a (too few signal events to resolve this efficiency)"
        lines.append(f"- {res['classes'][1]} rejection at {float(w):.0%} {res['classes'][0]} efficiency: {text}")
    for cls, f in (m.get("resolution_fit") or {}).items():
        lines.append(f"- {cls}: sigma/E = {f['a']:.3f}/sqrt(E) (+) {f['b']:.4f} (+) {f['c']:.3f}/E")
    for cls, e in (m.get("energy") or {}).items():
        lines.append(f"- {cls}: median relative bias {e['median_relative_bias']:+.4f}, robust relative resolution "
                     f"{e['relative_resolution_robust']:.4f}")
    if res.get("plots"):
        lines += ["", *[f"![{p}]({p})" for p in res["plots"]]]
    return "\n".join(lines) + "\n"


def evaluate_store(bundle, store: NativeStore, out, splits=None, split: str | None = None, log=print) -> dict:
    """Metrics, plots, ``results.json`` and ``report.md`` of a bundle (folder or :class:`Bundle`) on a store."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred = predict_store(bundle, store, splits, split)
    entry = task_summary(bundle, pred)
    res = {"bundle": str(bundle.path), "model": bundle.meta["model"]["name"], "task": bundle.task,
           "classes": bundle.classes, "split": split, "store": str(store.path), "metrics": entry}
    res["plots"] = _plots(bundle, entry, pred, out)
    res = to_jsonable(res, skip_private=True)
    with atomic_output(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1) + "\n")
    with atomic_output(out / "report.md") as tmp:
        Path(tmp).write_text(_report(res))
    head = f"AUC {entry['auc']:.4f}" if "auc" in entry else ""
    for cls, f in (entry.get("resolution_fit") or {}).items():
        head += f" {cls}: a={f['a']:.3f} b={f['b']:.4f} c={f['c']:.3f}"
    log(f"[evaluate] {entry['n_events']} events{' (' + split + ' split)' if split else ''}: {head.strip()} "
        f"-> {out / 'results.json'}")
    return res


def _bundle_inputs(bundle: Bundle, specs, xml, need_labels: bool):
    """Inputs checked against the bundle: same geometry, classes among the bundle's."""
    inputs = parse_data_specs(specs, xml=xml)
    require_format(inputs, ("calogan", "calochallenge", "triforce", "native"), bundle.task)
    g = geometry_meta(inputs[0].geometry)
    if g != bundle.meta["geometry"]:
        raise InputError(f"{inputs[0].path}: geometry {g['name']!r} {g.get('kwargs') or ''} differs from the "
                         f"bundle's {bundle.meta['geometry']['name']!r} {bundle.meta['geometry'].get('kwargs') or ''}")
    classes = None
    if need_labels and bundle.classes:
        found = resolve_classes(inputs, None, xml=xml)
        unknown = [c for c in found if c not in bundle.classes]
        if unknown:
            raise InputError(f"classes {unknown} of the input files are not among the bundle's classes "
                             f"{bundle.classes}")
        classes = bundle.classes
    return inputs, classes


def _xml_file(bundle: Bundle, xml, tmp: Path):
    """The CaloChallenge XML: the user's, else the one stored in the bundle."""
    if xml is not None or not bundle.meta["data"].get("xml_text"):
        return xml
    p = tmp / "binning.xml"
    p.write_text(bundle.meta["data"]["xml_text"])
    return p


def evaluate(bundle_path, specs, out, xml=None, log=print) -> dict:
    """``pcloud evaluate BUNDLE --data ... --out DIR``: the bundle on the given files (all their events)."""
    bundle = load_bundle(bundle_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    xml = _xml_file(bundle, xml, out)
    inputs, classes = _bundle_inputs(bundle, specs, xml, need_labels=True)
    d = bundle.meta["data"]
    (out / "data").mkdir(exist_ok=True)
    build_store(inputs, out / "data" / "eval.parquet", classes, d["threshold_gev"], d.get("selection"), xml)
    return evaluate_store(bundle, NativeStore(out / "data" / "eval.parquet"), out, log=log)


def predict(bundle_path, spec, output, xml=None, log=print) -> dict:
    """``pcloud predict BUNDLE INPUT -o OUT.parquet``: one row per event with ``event_number`` (running),
    ``source_file``, ``source_event`` (the event's number in its file: join with it), ``pdg`` and true
    ``energy_gev`` when the file has them, ``p_<class>`` per class and ``energy_pred_gev``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bundle = load_bundle(bundle_path)
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"output {output}: predictions are written as Parquet; use a .parquet file name")
    with tempfile.TemporaryDirectory(prefix="pcloud-predict-") as tmp:
        tmp = Path(tmp)
        xml = _xml_file(bundle, xml, tmp)
        inputs, _ = _bundle_inputs(bundle, [spec] if isinstance(spec, (str, Path)) else spec, xml,
                                   need_labels=False)
        d = bundle.meta["data"]
        build_store(inputs, tmp / "predict.parquet", None, d["threshold_gev"], d.get("selection"), xml)
        pred = predict_store(bundle, NativeStore(tmp / "predict.parquet"))
    cols = {k: pred[k] for k in ("event_number", "source_file", "source_event", "pdg", "energy_gev")}
    for i, c in enumerate(bundle.classes or []):
        if "proba" in pred:
            cols[f"p_{c}"] = pred["proba"][:, i]
    if "energy_pred_gev" in pred:
        cols["energy_pred_gev"] = pred["energy_pred_gev"]
    table = pa.table(cols)
    table = table.replace_schema_metadata({"pcloud": json.dumps(
        {"bundle": str(bundle.path), "task": bundle.task, "classes": bundle.classes,
         "inputs": [str(i.path) for i in inputs]})})
    with atomic_output(output) as tmpf:
        pq.write_table(table, tmpf)
    log(f"[predict] {len(table)} events -> {output}")
    return {"n_events": len(table), "output": str(output), "columns": table.column_names}
