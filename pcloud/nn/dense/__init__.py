"""Dense (voxel/image) CNN baselines (seeds 000, 001, 004), built from any :class:`pcloud.geometry.Geometry`.

All models take ``images = {section: (B, n_layers, n_u, n_v)}`` in GeV (as :class:`pcloud.core.showers.ShowerImages`)
and optional ``global_features`` (B, n_global), and return the point models' output dict (the same head,
:class:`pcloud.nn.heads.GlobalHead`): ``{"logits": (B, n_classes), "energy": (B,) GeV, "regression":
(B, n_targets), "global": (B, F)}`` ("energy" when ``regress_energy``, "regression" when ``n_targets > 0``).

=====================  ========================  ===============================================
registry name          class                     source
=====================  ========================  ===============================================
``dense_fcn``          :class:`PixelFCN`         seed 004 §3.1.2 (FCN on pixel intensities)
``cnn3d``              :class:`CNN3D`            seed 001 §5.1 (one 3D conv per section)
``multistream_cnn``    :class:`MultiStreamCNN`   seed 004 §3.1.4 (one conv stream per section)
``densenet``           :class:`DenseNetStreams`  seed 004 §3.1.5, Huang et al. 2017
``upsample_cnn``       :class:`UpsampleStackCNN` seed 000 (up-sample, stack, shared conv)
=====================  ========================  ===============================================

The models are registered in :mod:`pcloud.nn.registry` under these names:
``pcloud.nn.build_model("densenet", geometry=get_geometry("calogan"), n_classes=2)``.
"""
from __future__ import annotations

from ..registry import register_model
from .base import DenseModel
from .cnn3d import CNN3D
from .densenet import DenseNetStreams
from .fcn import PixelFCN
from .multistream import MultiStreamCNN
from .preprocess import ImageTransform
from .upsample import UpsampleStackCNN, rebin_matrix

DENSE_MODELS = {
    "dense_fcn": PixelFCN,
    "cnn3d": CNN3D,
    "multistream_cnn": MultiStreamCNN,
    "densenet": DenseNetStreams,
    "upsample_cnn": UpsampleStackCNN,
}

for _name, _cls in DENSE_MODELS.items():  # also reachable as pcloud.nn.build_model(name, geometry=geo, ...)
    register_model(_name, _cls)


def build_dense_model(name: str, geometry, **kwargs) -> DenseModel:
    """Build a dense model by registry name; ``kwargs`` go to its constructor."""
    try:
        cls = DENSE_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown dense model {name!r}; known: {sorted(DENSE_MODELS)}") from None
    return cls(geometry, **kwargs)


__all__ = ["DENSE_MODELS", "build_dense_model", "DenseModel", "PixelFCN", "CNN3D", "MultiStreamCNN",
           "DenseNetStreams", "UpsampleStackCNN", "ImageTransform", "rebin_matrix"]
