"""MLTree files in and out of pcloud: ``pcloud generate`` (simulated events -> MLTree ROOT file) and
``pcloud convert FILE.root`` (MLTree -> point clouds in the native store).

:func:`generate_mltree`
    simulates track-cell events in pcloud's ATLAS-like barrel with one of :data:`GENERATORS` (``gun``: the rho/Delta
    mixture of ``pcloud bench pflow``, :func:`pcloud.bench.pflow.events.generate_pflow_events`; ``pythia-tau`` /
    ``pythia-dijet``: Pythia8, the optional ``pythia`` extra), topo-clusters them (4/2/0,
    :func:`pcloud.pflow.topocluster.topo_cluster_events`), runs the rule-based particle flow
    (:func:`pcloud.baselines.particle_flow.rule_based`, the ATLAS cell-based E/p subtraction) to fill
    ``trackSubtractedCaloEnergy`` (energy given to each track, MeV; -999 for tracks the algorithm does not select,
    as eflowRec leaves tracks that are not charged particle-flow objects), and writes the file atomically
    (:func:`pcloud.io.mltree.write_mltree`).
:func:`convert_mltree`
    streams an MLTree file in chunks of events (:func:`pcloud.io.mltree.iter_mltree`, cells mapped onto pcloud's
    ``atlas`` geometry) into per-track clouds (:func:`pcloud.pflow.clouds.track_clouds`, Delta R features, one cloud
    per track reaching the calorimeter) or whole-event clouds (:func:`pcloud.pflow.clouds.event_clouds`) written to
    the native Parquet store (:func:`pcloud.io.native.write_clouds`).
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np

GENERATORS = ("gun", "pythia-tau", "pythia-dijet")
CLOUD_KINDS = ("track", "event")


def subtracted_energy_mev(events, geometry, clusters) -> np.ndarray:
    """``trackSubtractedCaloEnergy`` per track (MeV): the energy the rule-based particle flow gives each track it
    selects (pT above its ``pt_min_gev``, EMB2 reached; 0 if no cluster matched), -999 for the other tracks."""
    from ..baselines.particle_flow import rule_based
    from ..io.mltree.layout import NO_SUBTRACTION_MEV

    att = rule_based(events, geometry, clusters=clusters)
    T = events.tracks
    pt_min = inspect.signature(rule_based).parameters["pt_min_gev"].default
    emb2 = list(events.layer_names).index("EMB2")
    selected = (np.asarray(T["pt_gev"]) > pt_min) & np.asarray(T["layer_reached"][:, emb2], bool)
    return np.where(selected, 1e3 * att.per_track(T["event"].size), NO_SUBTRACTION_MEV)


def simulate_track_cell_events(generator: str, n_events: int, seed: int = 1, geometry=None):
    """Events of ``generator`` (see :data:`GENERATORS`) simulated in ``geometry`` (default ``atlas``)."""
    from ..bench.pflow.config import PflowConfig
    from ..bench.pflow.events import generate_pflow_events
    from ..geometry import get_geometry

    if generator not in GENERATORS:
        raise ValueError(f"generate: unknown generator {generator!r}; known: {', '.join(GENERATORS)}")
    if n_events < 1:
        raise ValueError(f"generate: need at least 1 event, found {n_events}")
    g = geometry or get_geometry("atlas")
    events = generate_pflow_events(g, PflowConfig(n_events=int(n_events), seed=int(seed), generator=generator))
    events.meta["event_number"] = np.arange(events.n_events, dtype=np.int64)
    return events, g


def generate_mltree(generator: str, n_events: int, output, seed: int = 1, container: str = "ttree") -> dict:
    """Simulate, topo-cluster, run the rule-based particle flow and write an MLTree file (module docstring).
    Returns a summary (counts, timings, what the writer dropped)."""
    from ..io.mltree import write_mltree
    from ..pflow.topocluster import topo_cluster_events

    t0 = time.perf_counter()
    events, g = simulate_track_cell_events(generator, n_events, seed)
    t_sim = time.perf_counter()
    clusters = topo_cluster_events(g, events)
    sub = subtracted_energy_mev(events, g, clusters)
    t_reco = time.perf_counter()
    w = write_mltree(output, events, clusters, g, container=container, subtracted_energy_mev=sub)
    return {"file": str(w.path), "generator": generator, "seed": seed, "container": w.container,
            "n_events": w.n_events, "n_tracks": w.n_tracks, "n_clusters": w.n_clusters, "n_cells": w.n_cells,
            "n_cells_below_threshold": w.n_cells_below_threshold, "n_clusters_negative": w.n_clusters_negative,
            "n_tracks_subtracted": int((sub > -999).sum()), "seconds_simulation": t_sim - t0,
            "seconds_clustering_pflow": t_reco - t_sim, "seconds_write": w.seconds,
            "bytes": int(Path(w.path).stat().st_size)}


def _add_counts(total: dict, meta: dict) -> None:
    """Sum the reading notes of one chunk into ``total`` (counts and energies; fractions recomputed)."""
    for k, v in meta.items():
        if k == "energy_fraction_dropped":
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
        elif isinstance(v, dict):
            _add_counts(total.setdefault(k, {}), v)
        elif k in ("missing_branches", "mode", "container", "has_cell_truth"):
            total[k] = v


def convert_mltree(source, output, clouds: str = "track", dr_max: float = 0.2, geo=None,
                   chunk_events: int = 1000) -> dict:
    """MLTree file -> native store of per-track or whole-event clouds, streamed ``chunk_events`` at a time.
    Returns the store's metadata (with the summed reading notes under ``mltree_reading``)."""
    from ..geometry import get_geometry
    from ..io.mltree import iter_mltree
    from ..io.native import geometry_meta, write_clouds
    from ..pflow.clouds import event_clouds, track_clouds

    if clouds not in CLOUD_KINDS:
        raise ValueError(f"convert: clouds must be one of {CLOUD_KINDS}, found {clouds!r}")
    if not (np.isfinite(dr_max) and dr_max > 0):
        raise ValueError(f"convert: dr_max must be a positive number, found {dr_max!r}")
    g = get_geometry("atlas")
    reading: dict = {"n_events": 0, "n_clouds": 0}

    def chunks():
        for d in iter_mltree(source, chunk_events, geometry=g, geo=geo):
            _add_counts(reading, d.meta)
            cm = reading["cell_mapping"]
            cm["energy_fraction_dropped"] = cm["energy_dropped_gev"] / cm["energy_file_cells_gev"] \
                if cm["energy_file_cells_gev"] > 0 else 0.0
            reading["n_events"] += d.events.n_events
            c = track_clouds(d.events, g, dr_max=dr_max) if clouds == "track" else event_clouds(d.events, g)
            reading["n_clouds"] += len(c)
            if len(c):
                yield c

    # ``reading`` is filled while the chunks stream; write_clouds serialises the metadata after the last chunk
    meta = {"geometry": geometry_meta(g), "source": str(source), "source_format": "mltree",
            "geo_file": None if geo is None else str(geo), "clouds": clouds,
            "dr_max": dr_max if clouds == "track" else None, "threshold_gev": None, "mltree_reading": reading,
            "generator": {"kind": f"{clouds} clouds from an MLTree file"}}
    return write_clouds(output, chunks(), meta=meta)
