"""Model families of the singles benchmark, behind one small interface.

* ``point``: PointNet / DGCNN on padded clouds (``x``, ``pos``, ``mask``) plus the section energies ``g`` (GeV);
* ``dense``: the voxel CNNs of :mod:`pcloud.nn.dense` on the images (keys ``img:<section>`` in the tensor dict);
* ``classical``: shower-shape FCN and gradient-boosted trees (ID), linear and tree regressions (energy).

:func:`point_tensors` and :func:`image_tensors` build one dict of tensors with the event axis first for all
events of a task; the trainer slices it into mini-batches, so point and dense models see exactly the same events in the same splits.
"""
from __future__ import annotations

import numpy as np
import torch

from ...data.convert import images_to_clouds
from ...data.normalise import Normaliser
from ...core.showers import ShowerImages
from ...nn.dense import DENSE_MODELS

#: per-point features of the point models (names of :data:`pcloud.data.point_features.POINT_FEATURES`)
SINGLES_POINT_FEATURES = ("x", "y", "z", "layer", "log_energy")
POINT_MODEL_NAMES = ("pointnet", "dgcnn")
#: the dense CNNs of :data:`pcloud.nn.dense.DENSE_MODELS`, in registry order
DENSE_MODEL_NAMES = tuple(DENSE_MODELS)


def point_tensors(showers: ShowerImages, train_mask: np.ndarray, threshold_gev: float, max_points: int
                  ) -> tuple[dict[str, torch.Tensor], dict]:
    """Padded, normalised clouds of all events; the normaliser is fitted on the training events only."""
    from ...data.batch import to_padded

    clouds = images_to_clouds(showers, threshold_gev=threshold_gev)
    norm = Normaliser.fit(clouds[train_mask], list(SINGLES_POINT_FEATURES))
    t = to_padded(clouds, list(SINGLES_POINT_FEATURES), max_points=max_points, normaliser=norm)
    npts = t["n_points"].numpy()
    info = {"threshold_gev": threshold_gev, "max_points": max_points,
            "points_per_event_mean": float(npts.mean()), "points_per_event_max": int(npts.max()),
            "truncated_fraction_of_events": float((t["n_truncated"].numpy() > 0).mean()),
            "truncated_energy_fraction": float(t["truncated_energy"].numpy().sum() /
                                               max(float(showers.total_energy().sum()), 1e-12))}
    return {"x": t["x"], "pos": t["pos"], "mask": t["mask"]}, info


def image_tensors(showers: ShowerImages) -> dict[str, torch.Tensor]:
    return {f"img:{k}": torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32)
            for k, v in showers.images.items()}


class DenseAdapter(torch.nn.Module):
    """Lets a dense model take the flat tensor dict of the trainer (``img:<section>`` keys)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def forward(self, batch: dict) -> dict:
        images = {k[4:]: v for k, v in batch.items() if k.startswith("img:")}
        return self.model(images)


def build(name: str, geometry, n_classes: int, regress_energy: bool, n_targets: int, n_sections: int,
          quick: bool, overrides: dict | None = None) -> torch.nn.Module:
    """A point or dense model configured for the benchmark (small widths in quick mode)."""
    from ...nn import build_model

    cfg: dict = {}
    if name in POINT_MODEL_NAMES:
        cfg = dict(in_channels=len(SINGLES_POINT_FEATURES), n_classes=n_classes, n_targets=n_targets, n_global=n_sections,
                   energy_columns=tuple(range(n_sections)) if regress_energy else (), g_scale=100.0,
                   energy_scale_gev=100.0, head_hidden=(64,) if quick else (256, 128))
        if name == "pointnet":
            cfg.update(channels=(32, 64, 128) if quick else (64, 128, 256), pooling="max+mean")
        else:
            cfg.update(k=10 if quick else 16, edge_channels=(32, 32, 64) if quick else (64, 64, 128),
                       emb_dim=128 if quick else 256)
    elif name in DENSE_MODEL_NAMES:
        cfg = dict(geometry=geometry, n_classes=n_classes, regress_energy=regress_energy, n_targets=n_targets)
        if name == "upsample_cnn" and quick:
            cfg["max_cells"] = 32
    else:
        raise ValueError(f"unknown benchmark model {name!r}; known: {POINT_MODEL_NAMES + DENSE_MODEL_NAMES}")
    cfg.update(overrides or {})
    model = build_model(name, **cfg)
    return DenseAdapter(model) if name in DENSE_MODEL_NAMES else model
