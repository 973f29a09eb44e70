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


def concatenate_clusters(parts, n_cells) -> TopoClusters:
    """Join the :class:`TopoClusters` of several event sets whose cell rows were concatenated in the same order
    (``n_cells``: cell rows of each part); events, members and cluster indices are renumbered."""
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    ev_off = np.cumsum([0] + [p.n_events for p in parts])[:-1]
    cell_off = np.cumsum([0] + list(n_cells))[:-1]
    cl_off = np.cumsum([0] + [len(p) for p in parts])[:-1]
    mem_off = np.cumsum([0] + [p.members.size for p in parts])[:-1]
    cat = np.concatenate
    return TopoClusters(
        n_events=int(sum(p.n_events for p in parts)), event=cat([p.event + o for p, o in zip(parts, ev_off)]),
        energy_gev=cat([p.energy_gev for p in parts]), eta=cat([p.eta for p in parts]),
        phi=cat([p.phi for p in parts]), n_cells=cat([p.n_cells for p in parts]),
        cell_cluster=cat([np.where(p.cell_cluster >= 0, p.cell_cluster + o, -1) for p, o in zip(parts, cl_off)]),
        cell_role=cat([p.cell_role for p in parts]), members=cat([p.members + o for p, o in zip(parts, cell_off)]),
        member_offsets=cat([[0]] + [p.member_offsets[1:] + o for p, o in zip(parts, mem_off)]),
        thresholds=parts[0].thresholds, meta={**parts[0].meta, "n_parts": len(parts)})
