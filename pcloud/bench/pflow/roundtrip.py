"""The MLTree round trip of ``pcloud bench pflow``: test events written as an MLTree file, read back, compared.

The file is written as Athena's MLTreeMaker writes it (:mod:`pcloud.io.mltree.write`): TTrees through ROOT when
the ``root`` extra is installed, else RNTuples (reported as ``container``); clusters with E >= 0; cluster cells with
E >= 5 MeV (the others are counted, ``n_cells_below_threshold``); per-cell truth in MeV. The comparison is on what
the writer stores (:func:`pcloud.io.mltree.written_cell_mask`): the same cells, energies per event and true
energy per track back from the file within float32 precision.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...core.attribution import truth_attribution
from ...io.mltree import read_mltree, write_mltree, written_cell_mask


def _container() -> str:
    from ...io.mltree.root_writer import import_root

    try:
        import_root()
    except ImportError:
        return "rntuple"
    return "ttree"


def mltree_roundtrip(events, clusters, geometry, path, container: str | None = None) -> dict:
    """Write ``events`` + ``clusters`` as an MLTree file, read it back and compare (float32 tolerances)."""
    t0 = time.perf_counter()
    written = write_mltree(path, events, clusters, geometry, container=container or _container())
    back = read_mltree(path, geometry)
    ev2 = back.events
    stored = written_cell_mask(events, clusters)
    e1 = np.bincount(events.cells["event"][stored], events.cells["energy_gev"][stored], minlength=events.n_events)
    e2 = np.bincount(ev2.cells["event"], ev2.cells["energy_gev"], minlength=ev2.n_events)
    ta1 = truth_attribution(events)
    keep = stored[ta1.cell_row]
    t1 = np.bincount(ta1.track_row[keep], ta1.energy_gev[keep], minlength=events.tracks["event"].size)
    ta2 = truth_attribution(ev2)
    t2 = np.bincount(ta2.track_row, ta2.energy_gev, minlength=ev2.tracks["event"].size)
    out = {"file": str(path), "container": written.container, "bytes": int(Path(path).stat().st_size),
           "seconds": time.perf_counter() - t0,
           "n_events": [int(events.n_events), int(ev2.n_events)],
           "n_tracks": [int(events.tracks["event"].size), int(ev2.tracks["event"].size)],
           "n_clustered_cells": [int(stored.sum()), int(ev2.cells["event"].size)],
           "n_clusters": [int(written.n_clusters), int(len(back.clusters))],
           "n_cells_below_threshold": written.n_cells_below_threshold,
           "n_clusters_negative": written.n_clusters_negative}
    same_shape = (out["n_events"][0] == out["n_events"][1] and out["n_tracks"][0] == out["n_tracks"][1]
                  and out["n_clustered_cells"][0] == out["n_clustered_cells"][1]
                  and np.array_equal(events.cells["id"][stored], ev2.cells["id"]))
    out["max_event_energy_diff_gev"] = float(np.max(np.abs(e1 - e2))) if same_shape and e1.size else float("nan")
    out["max_track_truth_energy_diff_gev"] = float(np.max(np.abs(t1 - t2))) if same_shape and t1.size else \
        float("nan")
    # float32 storage: relative 1e-6 of the energies involved, plus a few ulp per cell summed
    tol = 1e-5 * max(1.0, float(np.abs(events.cells["energy_gev"][stored]).max(initial=1.0))) * 10
    out["ok"] = bool(same_shape and out["max_event_energy_diff_gev"] < tol
                     and out["max_track_truth_energy_diff_gev"] < tol)
    out["tolerance_gev"] = tol
    out["reader_meta"] = {k: v for k, v in back.meta.items() if isinstance(v, (int, float, str, bool))}
    return out
