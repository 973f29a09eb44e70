"""Mapping the cells of an MLTree file onto the cells of a pcloud geometry.

Real MLTree files identify cells by ATLAS compact identifiers (``Identifier32::get_compact()``); pcloud's pipeline
works on the flat cell indices of its own geometry (:mod:`pcloud.geometry.atlas`: EMB1-3 and TileBar0-2 as regular
eta-phi grids, |eta| < 1.4). The file's ``CellGeo`` tree gives every identifier its CaloSampling number and centre
(eta, phi), so a cell maps onto

* the pcloud layer with the sampling's name (``EMB1`` = sampling 1 -> pcloud layer ``EMB1``, ...), and
* the pcloud cell of that layer whose eta-phi bin holds the ATLAS cell's centre
  (:meth:`pcloud.geometry.base.Geometry.cell_at`).

Cells of samplings the pcloud geometry lacks (presamplers, EME, HEC, TileGap, TileExt, FCAL) and cells whose centre
lies outside the pcloud layer are dropped and counted. Several ATLAS cells falling into one pcloud cell (pcloud's
EMB1 strips are coarser in phi than ATLAS's, for example) are summed by the reader. A file written by pcloud has
``cell_geo_ID`` = flat index and the cell centres of the geometry in CellGeo, so every cell maps onto itself.

Without a CellGeo tree (and no separate geometry file), the identifiers are taken as pcloud flat indices, which
only makes sense for pcloud files; identifiers outside [0, n_cells) are then a :class:`FormatError`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .layout import SAMPLING_NAME

#: reason codes of :attr:`CellMap.reason`
MAPPED, NO_SUCH_LAYER, OUTSIDE = 0, 1, 2


@dataclass
class CellMap:
    """Per CellGeo row (sorted by identifier): ``ids`` (int64), ``cell`` (pcloud flat index or -1), ``reason``
    (:data:`MAPPED`, :data:`NO_SUCH_LAYER`, :data:`OUTSIDE`), ``sigma_gev`` (noise, NaN if absent); ``mode`` is
    ``"cellgeo"`` or ``"identity"``."""

    mode: str
    ids: np.ndarray
    cell: np.ndarray
    reason: np.ndarray
    sigma_gev: np.ndarray
    path: str = ""

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pcloud cell, reason, sigma_gev) of each identifier in ``ids``; unknown identifiers: FormatError."""
        ids = np.asarray(ids, np.int64)
        if self.mode == "identity":
            n = self.cell.size
            bad = (ids < 0) | (ids >= n)
            if bad.any():
                raise FormatError(self.path, "branch 'cluster_cell_ID'", f"pcloud flat cell indices in [0, {n}) "
                                  "when the file has no CellGeo tree", f"{int(bad.sum())} identifiers outside, e.g. "
                                  f"{int(ids[bad][0])}", hint="give the geometry file (geo=... / --geo)")
            return ids.copy(), np.zeros(ids.size, np.int8), self.sigma_gev[ids]
        pos = np.clip(np.searchsorted(self.ids, ids), 0, max(self.ids.size - 1, 0))
        found = self.ids[pos] == ids if self.ids.size else np.zeros(ids.size, bool)
        if not found.all():
            raise FormatError(self.path, "branch 'cluster_cell_ID'", "identifiers listed in CellGeo/cell_geo_ID",
                              f"{int((~found).sum())} of {ids.size} missing, e.g. {int(ids[~found][0])}",
                              hint="is the geometry file the right one?")
        return self.cell[pos], self.reason[pos], self.sigma_gev[pos]


def _layer_of_sampling(geometry, sampling: np.ndarray) -> np.ndarray:
    """Global pcloud layer of each CaloSampling number (-1: the geometry has no such layer)."""
    names = [nm for s in geometry.sections for nm in (s.layer_names or [f"{s.name}_{i}" for i in range(s.n_layers)])]
    table = np.full(max(SAMPLING_NAME) + 1, -1, np.int64)
    for num, nm in SAMPLING_NAME.items():
        if nm in names:
            table[num] = names.index(nm)
    ok = (sampling >= 0) & (sampling < table.size)
    return np.where(ok, table[np.clip(sampling, 0, table.size - 1)], -1)


def build_cellmap(cell_geo: dict | None, geometry, path) -> CellMap:
    """The :class:`CellMap` of a file's CellGeo columns (numpy, ``sigma_gev`` in GeV) onto ``geometry``."""
    if cell_geo is None:
        n = geometry.n_cells
        return CellMap("identity", np.arange(n), np.arange(n), np.zeros(n, np.int8),
                       np.asarray(geometry.cells["noise_sigma_gev"], np.float64), str(path))
    ids = np.asarray(cell_geo["cell_geo_ID"]).astype(np.int64)
    o = np.argsort(ids, kind="stable")
    ids = ids[o]
    if ids.size > 1 and np.any(ids[1:] == ids[:-1]):
        raise FormatError(path, "branch 'CellGeo/cell_geo_ID'", "unique identifiers",
                          f"{int((ids[1:] == ids[:-1]).sum())} repeated")
    layer = _layer_of_sampling(geometry, np.asarray(cell_geo["cell_geo_sampling"]).astype(np.int64)[o])
    cell = geometry.cell_at(np.maximum(layer, 0), np.asarray(cell_geo["cell_geo_eta"], np.float64)[o],
                            np.asarray(cell_geo["cell_geo_phi"], np.float64)[o])
    cell = np.where(layer >= 0, cell, -1)
    reason = np.where(layer < 0, NO_SUCH_LAYER, np.where(cell < 0, OUTSIDE, MAPPED)).astype(np.int8)
    sigma = cell_geo.get("sigma_gev")
    sigma = np.full(ids.size, np.nan) if sigma is None else np.asarray(sigma, np.float64)[o]
    return CellMap("cellgeo", ids, cell, reason, sigma, str(path))
