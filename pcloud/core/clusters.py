"""Topo-clusters of calorimeter cells: the container passed between the clustering (:mod:`pcloud.pflow.topocluster`),
the MLTree reader and writer (:mod:`pcloud.io.mltree`) and the particle-flow methods. Energies in GeV, angles in rad.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TopoClusters:
    """Topo-clusters of ``n_events`` events.

    Per cluster (K, numbered by event then decreasing energy): ``event, energy_gev, eta, phi, n_cells``;
    ``offsets`` (n_events + 1) into the cluster arrays. Per input cell row: ``cell_cluster`` (-1: not clustered),
    ``cell_role`` (0 none, 1 seed, 2 growth (> N), 3 perimeter). ``members`` are the clustered cell rows sorted by
    cluster, ``member_offsets`` (K + 1).
    """

    n_events: int
    event: np.ndarray
    energy_gev: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    n_cells: np.ndarray
    cell_cluster: np.ndarray
    cell_role: np.ndarray
    members: np.ndarray
    member_offsets: np.ndarray
    thresholds: tuple = (4.0, 2.0, 0.0)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.offsets = np.searchsorted(self.event, np.arange(self.n_events + 1)).astype(np.int64)

    def __len__(self) -> int:
        return int(self.event.size)

    def cells_of(self, k: int) -> np.ndarray:
        """Cell rows of cluster ``k``."""
        return self.members[self.member_offsets[k]:self.member_offsets[k + 1]]
