"""Model families of the singles benchmark, behind one small interface.

* ``point``: PointNet / DGCNN on padded clouds (``x``, ``pos``, ``mask``) plus the section energies ``g`` (GeV);
* ``dense``: the voxel CNNs of :mod:`pcloud.nn.dense` on the images (keys ``img:<section>`` in the tensor dict);
* ``classical``: shower-shape FCN and gradient-boosted trees (ID), linear and tree regressions (energy).

:func:`point_tensors` and :func:`image_tensors` build one dict of tensors with the event axis first for all
events of a task; the trainer slices it into mini-batches, so point and dense models see exactly the same events
in the same splits. Models and batches come from :mod:`pcloud.pipeline` (the path ``pcloud train`` uses).
"""
from __future__ import annotations

import numpy as np
import torch

from ...core.showers import ShowerImages
from ...data.convert import images_to_clouds
from ...data.normalise import Normaliser
from ...pipeline.batches import Batcher
from ...pipeline.models import DENSE_MODEL_NAMES, POINT_MODEL_NAMES, DenseAdapter, build, image_tensors

#: per-point features of the point models (names of :data:`pcloud.data.point_features.POINT_FEATURES`)
SINGLES_POINT_FEATURES = ("x", "y", "z", "layer", "log_energy")

__all__ = ["SINGLES_POINT_FEATURES", "POINT_MODEL_NAMES", "DENSE_MODEL_NAMES", "DenseAdapter", "build",
           "image_tensors", "point_tensors"]


def point_tensors(showers: ShowerImages, train_mask: np.ndarray, threshold_gev: float, max_points: int
                  ) -> tuple[dict[str, torch.Tensor], dict]:
    """Padded, normalised clouds of all events; the normaliser is fitted on the training events only."""
    clouds = images_to_clouds(showers, threshold_gev=threshold_gev)
    norm = Normaliser.fit(clouds[train_mask], list(SINGLES_POINT_FEATURES))
    t = Batcher("point", SINGLES_POINT_FEATURES, max_points, norm).points(clouds)
    npts = t["n_points"].numpy()
    info = {"threshold_gev": threshold_gev, "max_points": max_points,
            "points_per_event_mean": float(npts.mean()), "points_per_event_max": int(npts.max()),
            "truncated_fraction_of_events": float((t["n_truncated"].numpy() > 0).mean()),
            "truncated_energy_fraction": float(t["truncated_energy"].numpy().sum() /
                                               max(float(showers.total_energy().sum()), 1e-12))}
    return {"x": t["x"], "pos": t["pos"], "mask": t["mask"]}, info
