"""The granularity study of ``pcloud bench singles`` (seed 001 section 5.4): the same gamma / pi0 showers of the
CLIC-like calorimeter at the native 5.1 mm ECAL cells and re-binned to CMS-like (20.4 mm) and ATLAS-like (35.7 mm)
cells (:mod:`pcloud.data.resample`: every coarse cell is the union of m x m native cells, energy conserved exactly),
each classified by the learned models of the run (point and dense) and the shower-shape baselines on identical
splits. Coarser cells merge the two photons of a boosted pi0, so the separation is expected to fall with the cell
size; the point models' cost falls with the number of cells while the dense models' input shrinks as m^2.
"""
from __future__ import annotations

import numpy as np

from ...core.showers import ShowerImages
from ...data.resample import merge_images
from ...geometry import get_geometry
from .tasks import TASKS, SinglesTask, build_dataset

#: (name, merge factor m, meaning)
GRANULARITIES = (("native", 1, "CLIC-like 5.1 mm Si/W cells"), ("cms", 4, "CMS-like 20.4 mm cells"),
                 ("atlas", 7, "ATLAS-like 35.7 mm cells"))
BASE_TASK = "gamma_vs_pi0"


def granularity_tasks(n_per_class: int, seed: int, log=print) -> list[SinglesTask]:
    """One task per granularity, all on the same simulated (and selected) showers of :data:`BASE_TASK`."""
    base = TASKS[BASE_TASK]
    showers = build_dataset(base, n_per_class, seed, mode="visible", log=log)
    out = []
    for name, m, meaning in GRANULARITIES:
        g = get_geometry("clic", ecal_merge=m) if m > 1 else showers.geometry
        images = merge_images(showers.images, m) if m > 1 else showers.images
        sh = ShowerImages(g, {k: np.asarray(v, np.float32) for k, v in images.items()}, dict(showers.truth),
                          dict(showers.meta))
        out.append(SinglesTask(name=f"granularity_{name}", geometry=g.name, classes=base.classes,
                               class_names=base.class_names, energy_gev=base.energy_gev, kind="id",
                               description=f"{base.description}; ECAL {meaning}",
                               working_points=base.working_points, shape_set="all", showers=sh))
    return out


def granularity_summary(results: dict) -> dict:
    """``{granularity: {model: {auc, rejection, events_per_s, n_points}}}`` from the runs' task results."""
    out = {}
    for name, _, meaning in GRANULARITIES:
        r = results.get(f"granularity_{name}")
        if r is None:
            continue
        out[name] = {"meaning": meaning, "points_per_event": r.get("point_cloud", {}).get("points_per_event_mean"),
                     "models": {m: {k: e.get(k) for k in ("auc", "rejection", "events_per_s", "family")}
                                for m, e in r["models"].items()}}
    return out
