"""The models of ``pcloud train`` and the benchmarks, built by name for a task: point models (PointNet, DGCNN, the point
transformer, GravNet) on
padded clouds plus the per-section energies ``g`` (GeV, the energy skip connection), and the dense CNNs of
:mod:`pcloud.nn.dense` on images (keys ``img:<section>`` of the batch dict, through :class:`DenseAdapter`).

:func:`model_spec` gives the constructor arguments as JSON (what a model bundle stores), :func:`build_from_spec`
rebuilds the model from them (dense models also need the geometry).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.showers import ShowerImages
from ..nn import build_model
from ..nn.dense import DENSE_MODELS

#: per-point features of the point models unless a recipe names others
DEFAULT_POINT_FEATURES = ("x", "y", "z", "layer", "log_energy")
POINT_MODEL_NAMES = ("pointnet", "dgcnn", "transformer", "gravnet")
#: pairwise features of the point transformer here: frame-independent (3D distance, layer difference, energy
#: ratio), since the singles geometries use local frames where the eta / phi of ``pos`` mean nothing
TRANSFORMER_PAIR_FEATURES = ("dist", "dlayer", "dlogE")
#: the dense CNNs of :data:`pcloud.nn.dense.DENSE_MODELS`, in registry order
DENSE_MODEL_NAMES = tuple(DENSE_MODELS)
MODEL_NAMES = POINT_MODEL_NAMES + DENSE_MODEL_NAMES


def family(name: str) -> str:
    """``"point"`` or ``"dense"``; an unknown name is a ValueError listing the known ones."""
    if name in POINT_MODEL_NAMES:
        return "point"
    if name in DENSE_MODEL_NAMES:
        return "dense"
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def image_tensors(showers: ShowerImages) -> dict[str, torch.Tensor]:
    """The images of ``showers`` as float32 tensors under ``img:<section>`` (the dense models' batch keys)."""
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


def model_spec(name: str, n_features: int, n_classes: int, regress_energy: bool, n_targets: int, n_sections: int,
               small: bool, overrides: dict | None = None, feature_names=None) -> dict:
    """JSON-friendly constructor arguments of model ``name`` for a task (CPU-sized widths when ``small``); the
    geometry of dense models is not part of it. ``feature_names`` (the columns of ``x``; default
    :data:`DEFAULT_POINT_FEATURES` when the widths match) place the transformer's layer / log-energy columns."""
    if family(name) == "point":
        cfg = dict(in_channels=n_features, n_classes=n_classes, n_targets=n_targets, n_global=n_sections,
                   energy_columns=tuple(range(n_sections)) if regress_energy else (), g_scale=100.0,
                   energy_scale_gev=100.0, head_hidden=(64,) if small else (256, 128))
        if name == "pointnet":
            cfg.update(channels=(32, 64, 128) if small else (64, 128, 256), pooling="max+mean")
        elif name == "dgcnn":
            cfg.update(k=10 if small else 16, edge_channels=(32, 32, 64) if small else (64, 64, 128),
                       emb_dim=128 if small else 256)
        elif name == "transformer":
            names = list(feature_names) if feature_names is not None else (
                list(DEFAULT_POINT_FEATURES) if n_features == len(DEFAULT_POINT_FEATURES) else [])
            pair = [p for p, col in (("dist", None), ("dlayer", "layer"), ("dlogE", "log_energy"))
                    if col is None or col in names]
            cfg.update(dim=32 if small else 64, n_heads=4, n_layers=2 if small else 3, pair_hidden=8 if small else 16,
                       pair_features=tuple(p for p in TRANSFORMER_PAIR_FEATURES if p in pair),
                       layer_col=names.index("layer") if "layer" in names else None,
                       energy_col=names.index("log_energy") if "log_energy" in names else None,
                       pooling="max+mean")
        else:
            cfg.update(blocks=2 if small else 4, dense=(32,) if small else (64, 64), out_dims=24 if small else 48,
                       k=10 if small else 16, emb_dim=64 if small else 128)
    else:
        cfg = dict(n_classes=n_classes, regress_energy=regress_energy, n_targets=n_targets)
        if name == "upsample_cnn" and small:
            cfg["max_cells"] = 32
    cfg.update(overrides or {})
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def build_from_spec(name: str, spec: dict, geometry=None) -> torch.nn.Module:
    """The model of :func:`model_spec` arguments (dense models wrapped in :class:`DenseAdapter`)."""
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()}
    if family(name) == "dense":
        if geometry is None:
            raise ValueError(f"build_from_spec: dense model {name!r} needs the geometry")
        return DenseAdapter(build_model(name, geometry=geometry, **kwargs))
    return build_model(name, **kwargs)


def build(name: str, geometry, n_classes: int, regress_energy: bool, n_targets: int, n_sections: int,
          small: bool, overrides: dict | None = None, n_features: int = len(DEFAULT_POINT_FEATURES)
          ) -> torch.nn.Module:
    """A point or dense model configured for a task (small widths when ``small``)."""
    spec = model_spec(name, n_features, n_classes, regress_energy, n_targets, n_sections, small, overrides)
    return build_from_spec(name, spec, geometry)
