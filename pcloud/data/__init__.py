"""Point clouds: the one schema, conversions from images / sparse deposits, batched views, splits, normalisation.

See :mod:`pcloud.data.schema` for the field table and the label policy. The torch-dependent names (batch views,
dataset, normaliser) are imported lazily so that ``pcloud.data.schema`` / ``convert`` stay light.
"""
from __future__ import annotations

from .convert import clouds_to_images, images_to_clouds, sparse_to_clouds
from .schema import (FEATURES, NO_PARTICLE, SCHEMA_VERSION, Feature, PointType, SchemaError, binary_labels,
                     build_clouds, feature_columns, hard_labels, make_particles, n_points, register_feature,
                     soft_fractions, target_fractions, validate_clouds)
from .splits import Splits
from .summary import summarise

_LAZY = {"CloudDataset": "batch", "PaddedCollate": "batch", "PyGCollate": "batch", "collate_clouds": "batch",
         "to_padded": "batch", "to_pyg_batch": "batch", "Normaliser": "normalise"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CloudDataset", "PaddedCollate", "PyGCollate", "collate_clouds", "to_padded", "to_pyg_batch",
           "clouds_to_images", "images_to_clouds", "sparse_to_clouds", "Normaliser", "FEATURES", "NO_PARTICLE",
           "SCHEMA_VERSION", "Feature", "PointType", "SchemaError", "binary_labels", "build_clouds",
           "feature_columns", "hard_labels", "make_particles", "n_points", "register_feature", "soft_fractions",
           "target_fractions", "validate_clouds", "Splits", "summarise"]
