"""ATLAS MLTree ntuples (``EventTree`` + one-entry ``CellGeo``), as written by Athena's MLTreeMaker and read by the
calo-ML / JetPointNet studies.

* :mod:`~pcloud.io.mltree.layout` — branch tables (names, C++ types, units), the 21 track layers, CaloSampling
  numbers, the "no intersection" sentinel, JetPointNet's layer radii;
* :mod:`~pcloud.io.mltree.write` — :func:`write_mltree` (TTrees through ROOT, the ``root`` extra, or RNTuples
  through uproot) and :mod:`~pcloud.io.mltree.root_writer` (the C++ filler and the dictionary cache);
* :mod:`~pcloud.io.mltree.read` — :func:`read_mltree` / :func:`iter_mltree`: real and pcloud files onto a pcloud
  geometry (:mod:`~pcloud.io.mltree.cellmap` maps ATLAS cells onto pcloud cells).
"""
from __future__ import annotations

from .layout import CALO_SAMPLING, LAYERS, NO_POINT, NO_POINT_THRESHOLD, TRACK_LAYERS
from .read import MLTreeData, iter_mltree, read_mltree, require_truth
from .write import MLTreeWritten, write_mltree, written_cell_mask

__all__ = ["read_mltree", "iter_mltree", "write_mltree", "written_cell_mask", "MLTreeData", "MLTreeWritten",
           "require_truth", "LAYERS", "TRACK_LAYERS", "NO_POINT", "NO_POINT_THRESHOLD", "CALO_SAMPLING"]
