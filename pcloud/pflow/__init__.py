"""Particle-flow building blocks: ATLAS topological clustering (4/2/0) on sparse cell lists."""
from __future__ import annotations

from .topocluster import TopoClusters, cell_neighbours, expected_noise_seeds, topo_cluster, topo_cluster_events

__all__ = ["TopoClusters", "cell_neighbours", "expected_noise_seeds", "topo_cluster", "topo_cluster_events"]
