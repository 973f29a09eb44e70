"""Particle flow on track-cell events (seed 002): topo-clustering, per-track clouds, learned segmentation,
iterative and common inference, rule-based and simple baselines, and attribution metrics.

Importing the package registers the per-track point features (``deta``, ``dphi``, ``delta_r_ref``, ...) used by
the learned segmenters, so saved normalisers resolve their feature names.
"""
from __future__ import annotations

from . import clouds  # noqa: F401  (registers the pflow point features)
from ..core.attribution import Attribution, truth_attribution
from ..core.clusters import TopoClusters
from .topocluster import cell_neighbours, expected_noise_seeds, topo_cluster, topo_cluster_events

__all__ = ["Attribution", "truth_attribution", "TopoClusters", "cell_neighbours", "expected_noise_seeds",
           "topo_cluster", "topo_cluster_events"]
