"""Summaries and single events of any file pcloud reads (``pcloud info``, ``pcloud show``).

Image files (CaloGAN, CaloChallenge, Triforce) and native stores are streamed chunk by chunk; MLTree files are read
whole (they are per-event ntuples of modest size).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.convert import images_to_clouds
from ..data.summary import summarise, summarise_images
from ..io.detect import detect_format, iter_images, read_images
from ..io.mltree import read_mltree
from ..io.native import geometry_from_meta, iter_clouds, read_clouds, read_meta

#: events per chunk when streaming image files for a summary
SUMMARY_CHUNK_EVENTS = 10_000


def _describe_native(path: Path) -> dict:
    meta = read_meta(path)
    info = summarise(iter_clouds(path, columns=["points.type", "points.energy"]))
    g = meta["geometry"]
    return {**info, "geometry": g["name"], "threshold_gev": meta.get("threshold_gev"),
            "geometry_kwargs": g.get("kwargs", {}), "schema_version": meta.get("schema_version"),
            "seed": meta.get("seed"), "generator": meta.get("generator")}


def _describe_mltree(path: Path) -> dict:
    d = read_mltree(path)
    ev = d.events
    return {"geometry": getattr(ev, "geometry_name", None), "n_events": int(ev.n_events),
            "n_tracks": int(ev.tracks["event"].size), "n_clusters": int(len(d.clusters)),
            "n_cells": int(ev.cells["event"].size),
            "total_cell_energy_gev": float(np.sum(ev.cells["energy_gev"], dtype=np.float64)),
            "n_truth_particles": int(ev.particles["event"].size), "notes": d.meta}


def describe_file(path, xml=None, threshold_gev: float = 0.0) -> dict:
    """Format, geometry, events, points (cells above ``threshold_gev`` for image files) per event and total energy
    (GeV) of any file pcloud reads; ``xml`` is the CaloChallenge binning."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "native":
        info = _describe_native(path)
    elif fmt == "mltree":
        info = _describe_mltree(path)
    else:
        info = summarise_images(iter_images(path, xml=xml, chunk_size=SUMMARY_CHUNK_EVENTS), threshold_gev)
    return {"file": str(path), "format": fmt, **info}


def load_event(path, index: int, xml=None):
    """``(event record, geometry)`` of event ``index`` of a native store or an image file, as a point cloud."""
    path = Path(path)
    if index < 0:
        raise ValueError(f"{path}: event index must be >= 0, found {index}")
    fmt = detect_format(path)
    if fmt == "native":
        meta = read_meta(path)
        n = int(meta.get("n_events", -1))
        if n >= 0 and index >= n:
            raise ValueError(f"{path}: event {index} out of range (file has {n} events)")
        return read_clouds(path, start=index, stop=index + 1)[0], geometry_from_meta(meta, path)
    if fmt == "mltree":
        raise ValueError(f"{path}: event displays of MLTree files are not supported; convert it first")
    showers = read_images(path, xml=xml, start=index, stop=index + 1)
    if showers.n_events == 0:
        raise ValueError(f"{path}: event {index} out of range")
    return images_to_clouds(showers)[0], showers.geometry
