"""Convert a run's input files into one native Parquet store that training and evaluation stream from.

The store holds one point cloud per selected event (cells above the threshold, :mod:`pcloud.core.schema`) and a
fixed set of per-event fields, whatever the input format:

=====================  =======  ==========================================================================
field                  dtype    meaning
=====================  =======  ==========================================================================
``event_number``       int64    running index over the store (unique; splits hash it)
``source_file``        int32    position of the event's file in the input list
``source_event``       int64    the event's own number in that file (join predictions back with it)
``label``              int64    class index (-1 when the run has no classes)
``pdg``                int32    PDG id of the incident particle (0 when unknown)
``energy_gev``         float64  true incident energy (NaN when the file has none)
``theta_rad``          float64  polar angle of the incident direction (NaN when unknown)
``section_<name>_gev`` float64  energy of the event's points in each geometry section (GeV): the global
                                inputs ``g`` of the models (E_ECAL, E_HCAL...; energy skip connection)
=====================  =======  ==========================================================================

Files are read chunk by chunk and the chunks of different files are interleaved (chunk sizes proportional to the
files' event counts), so a store made from one file per class has every class in every part of the file; the
conversion never holds more than one chunk per file in memory. Each written chunk is one row group: the unit in
which :class:`pcloud.data.batch.CloudDataset` shuffles and shards the store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import awkward as ak
import numpy as np

from ..core.showers import ShowerImages
from ..data.convert import images_to_clouds
from ..io.detect import iter_images
from ..io.native import NativeStore, geometry_meta, write_clouds
from .inputs import InputError, InputFile, describe_inputs, label_of

#: per-event fields of the store besides the section energies (name -> dtype)
STORE_FIELDS = {"event_number": np.int64, "source_file": np.int32, "source_event": np.int64, "label": np.int64,
                "pdg": np.int32, "energy_gev": np.float64, "theta_rad": np.float64}


def section_field(name: str) -> str:
    return f"section_{name}_gev"


def section_energies(clouds: ak.Array, geometry) -> np.ndarray:
    """``(N, n_sections)`` energy (GeV, float64) of the CELL points of each event in each section of the geometry."""
    counts = ak.to_numpy(ak.num(clouds.points, axis=1))
    ev = np.repeat(np.arange(len(clouds)), counts)
    layer = ak.to_numpy(ak.flatten(clouds.points.layer, axis=1)).astype(np.int64)
    typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
    e = ak.to_numpy(ak.flatten(clouds.points.energy, axis=1)).astype(np.float64)
    n_sec = len(geometry.sections)
    cell = (typ == 0) & (layer >= 0) & (layer < geometry.n_layers)
    sec = np.asarray(geometry.layer_section)[np.where(cell, layer, 0)]
    return np.bincount(ev[cell] * n_sec + sec[cell], weights=e[cell], minlength=len(clouds) * n_sec
                       ).reshape(len(clouds), n_sec)


def _selection_mask(values: dict, selection: dict, path) -> np.ndarray:
    """Events whose fields lie in the inclusive ``[lo, hi]`` ranges of ``selection`` (None: open end)."""
    n = len(next(iter(values.values())))
    keep = np.ones(n, bool)
    for name, rng in (selection or {}).items():
        if name not in values:
            raise InputError(f"selection: unknown per-event field {name!r}; known: {sorted(values)}")
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2):
            raise InputError(f"selection.{name}: expected [min, max], found {rng!r}")
        v = np.asarray(values[name], np.float64)
        lo, hi = rng
        if lo is not None:
            keep &= v >= float(lo)
        if hi is not None:
            keep &= v <= float(hi)
    return keep


def _fields(inp: InputFile, n: int, truth: dict, classes: Sequence[str] | None) -> dict:
    """The store's per-event fields of one chunk (``event_number`` filled at write time)."""
    if inp.label is not None:
        pdg = np.full(n, inp.pdg, np.int32)
    elif "pdg" in truth:
        pdg = np.asarray(truth["pdg"]).astype(np.int32)
    else:
        pdg = np.zeros(n, np.int32)
    if classes:
        if inp.label is None and "pdg" not in truth:
            raise InputError(f"{inp.path}: no label and no per-event particle id; give the class as "
                             f"{inp.path}:LABEL")
        label = label_of(pdg, list(classes), inp.path)
    else:
        label = np.full(n, -1, np.int64)

    def col(name, fill=np.nan):
        return np.asarray(truth[name], np.float64) if name in truth else np.full(n, fill)

    return {"event_number": np.zeros(n, np.int64), "source_file": np.full(n, inp.index, np.int32),
            "source_event": np.asarray(truth.get("event_number", np.arange(n)), np.int64), "label": label,
            "pdg": pdg, "energy_gev": col("energy_gev"), "theta_rad": col("theta_rad")}


def _assemble(clouds: ak.Array, fields: dict, geometry) -> ak.Array:
    """A cloud array with exactly the store's per-event fields and the points of ``clouds``."""
    sec = section_energies(clouds, geometry)
    cols = {k: np.ascontiguousarray(v, dtype=STORE_FIELDS[k]) for k, v in fields.items()}
    cols.update({section_field(s.name): np.ascontiguousarray(sec[:, i]) for i, s in enumerate(geometry.sections)})
    cols["points"] = clouds.points
    return ak.Array(cols)


def _image_chunks(inp: InputFile, chunk: int, classes, threshold_gev, selection, xml) -> Iterator[ak.Array]:
    for showers in iter_images(inp.path, xml=xml if inp.format == "calochallenge" else None, chunk_size=chunk):
        fields = _fields(inp, showers.n_events, showers.truth, classes)
        keep = _selection_mask(fields, selection, inp.path)
        if not keep.any():
            continue
        sel = showers if keep.all() else ShowerImages(showers.geometry,
                                                      {k: v[keep] for k, v in showers.images.items()},
                                                      {k: np.asarray(v)[keep] for k, v in showers.truth.items()},
                                                      dict(showers.meta))
        box = [_assemble(images_to_clouds(sel, threshold_gev=threshold_gev), {k: v[keep] for k, v in fields.items()},
                         showers.geometry)]
        # a suspended stream must not pin its last chunk: with many input files every one of them waits here while
        # the others are read (build_store interleaves them), ~100 MB per file of 4096 CaloGAN events; so no local
        # name refers to the chunk (images, clouds or the yielded array) while the generator is suspended
        del showers, sel, fields, keep
        yield box.pop()


def _native_chunks(inp: InputFile, chunk: int, classes, threshold_gev, selection) -> Iterator[ak.Array]:
    store = NativeStore(inp.path)
    g = store.geometry()
    stored_thr = store.meta.get("threshold_gev") or 0.0
    if threshold_gev is not None and threshold_gev < stored_thr:
        raise InputError(f"{inp.path}: the store keeps cells above {stored_thr:g} GeV; a lower threshold "
                         f"({threshold_gev:g} GeV) cannot be applied to it")
    for c in store.chunks(chunk_size=chunk):
        truth = {f: ak.to_numpy(c[f]) for f in c.fields if f not in ("points", "particles") and c[f].ndim == 1
                 and not c[f].fields}
        fields = _fields(inp, len(c), truth, classes)
        keep = _selection_mask(fields, selection, inp.path)
        if not keep.any():
            continue
        c = c[keep]
        if threshold_gev:
            c = ak.with_field(c, c.points[(c.points.energy > threshold_gev) | (c.points["type"] != 0)], "points")
        box = [_assemble(c, {k: v[keep] for k, v in fields.items()}, g)]
        del c, truth, fields, keep  # as in _image_chunks: nothing of this chunk stays pinned while suspended
        yield box.pop()


def _chunk_sizes(inputs: Sequence[InputFile], chunk_events: int) -> list[int]:
    """Per-file chunk sizes proportional to the event counts, so that the files end together."""
    n_max = max(max(i.n_events for i in inputs), 1)
    return [max(1, int(np.ceil(chunk_events * i.n_events / n_max))) for i in inputs]


def build_store(inputs: Sequence[InputFile], path, classes: Sequence[str] | None = None, threshold_gev: float = 0.0,
                selection: dict | None = None, xml=None, chunk_events: int = 4096, log=None) -> dict:
    """Convert ``inputs`` (one geometry, checked by :func:`pcloud.pipeline.inputs.parse_data_specs`) into the store
    at ``path`` (module docstring); returns its metadata. Event numbers run over the interleaved chunks."""
    if chunk_events < 1:
        raise ValueError(f"build_store: chunk_events must be >= 1, found {chunk_events}")
    geometry = inputs[0].geometry
    sizes = _chunk_sizes(inputs, chunk_events)
    streams = []
    for inp, c in zip(inputs, sizes):
        if inp.format == "native":
            streams.append(_native_chunks(inp, c, classes, threshold_gev, selection))
        elif inp.format == "mltree":
            raise InputError(f"{inp.path}: MLTree files hold particle-flow events; use --task pflow")
        else:
            streams.append(_image_chunks(inp, c, classes, threshold_gev, selection, xml))
    counts = np.zeros(len(inputs), np.int64)

    def interleaved():
        offset = 0
        live = list(range(len(streams)))
        while live:
            for k in list(live):
                chunk = next(streams[k], None)
                if chunk is None:
                    live.remove(k)
                    continue
                n = len(chunk)
                counts[k] += n
                yield ak.with_field(chunk, np.arange(offset, offset + n, dtype=np.int64), "event_number")
                offset += n
                if log:
                    log(f"[store] {offset} events converted")
        for inp, n in zip(inputs, counts):  # raised before the file is closed: nothing half-written remains
            if n == 0:
                raise InputError(f"{inp.path}: no event passes the selection {selection or {}}")

    pipeline = {"classes": list(classes) if classes else None, "inputs": describe_inputs(inputs),
                "selection": selection or {}, "sections": [s.name for s in geometry.sections]}
    meta = {"geometry": geometry_meta(geometry), "threshold_gev": threshold_gev, "source": "pcloud pipeline",
            "pipeline": pipeline}
    return write_clouds(Path(path), interleaved(), meta=meta, row_group_events=max(sizes),
                        meta_at_close=lambda: {"pipeline": {**pipeline, "selected_per_input": counts.tolist()}})
