"""Point clouds for models: conversions from images / sparse deposits to the schema of :mod:`pcloud.core.schema`,
per-point model features, batched views, streaming dataset, splits, normalisation and summaries.

The data layer takes arrays and iterables of cloud chunks; it never opens files (the readers of :mod:`pcloud.io`
and :mod:`pcloud.pipeline` do). The torch-dependent names (batch views, dataset, normaliser) are imported lazily so
that ``convert`` and ``point_features`` stay light.
"""
from __future__ import annotations

from .convert import clouds_to_images, images_to_clouds, sparse_to_clouds
from .point_features import POINT_FEATURES, Feature, feature_columns, register_feature, resolve_features
from .splits import Splits
from .summary import summarise, summarise_clouds, summarise_images

_LAZY = {"CloudDataset": "batch", "PaddedCollate": "batch", "PyGCollate": "batch", "collate_clouds": "batch",
         "to_padded": "batch", "to_pyg_batch": "batch", "select_points": "batch", "Normaliser": "normalise"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CloudDataset", "PaddedCollate", "PyGCollate", "collate_clouds", "to_padded", "to_pyg_batch",
           "select_points", "clouds_to_images", "images_to_clouds", "sparse_to_clouds", "Normaliser",
           "POINT_FEATURES", "Feature", "feature_columns", "register_feature", "resolve_features", "Splits",
           "summarise", "summarise_clouds", "summarise_images"]
