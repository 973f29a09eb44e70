"""Hand-made MLTree files shaped like Athena's (for the reader tests) and a writer of raw columns.

``athena_style_file`` writes a small file with the features of real MLTreeMaker output that pcloud's own writer never
produces: ATLAS-like cell identifiers (large, not pcloud indices) in an unsorted CellGeo, per-cell truth lists of
length ``cluster_nCells`` (longer than the cell lists, empty tails), a cell shared by two clusters with split
weights, two ATLAS cells inside one pcloud cell, cells of samplings pcloud lacks (presampler, EME2) and outside its
eta range, truth energies in MeV in increasing order with one negative entry, sentinel and NaN track layers, and no
DetailedTracking / truth-kinematics branches. ``EXPECTED`` holds what the reader must make of it.
"""
from __future__ import annotations

import numpy as np

from pcloud.io.mltree.layout import NO_POINT, TRACK_LAYERS
from pcloud.io.mltree.root_writer import Column, import_root, write_trees
from pcloud.io.mltree.write import write_rntuples


def has_root() -> bool:
    try:
        import_root()
    except ImportError:
        return False
    return True


def write_columns(path, trees, container=None):
    """Write [(name, title, n, [Column])] as TTrees (ROOT available) or RNTuples."""
    container = container or ("ttree" if has_root() else "rntuple")
    (write_trees if container == "ttree" else write_rntuples)(path, trees)
    return path


def _off(counts):
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


# ATLAS-like identifiers (compact 32-bit values) and CellGeo rows: (id, sampling, eta, phi, sigma MeV)
ID = {"A": 0x3A51_2000, "B": 0x3A51_2400, "C": 0x3A51_2800, "D": 0x4A00_0100, "E": 0x3800_0020, "F": 0x3C20_0040,
      "G": 0x3A5F_0000, "H": 0x3901_0000}
GEO = {"A": (2, 0.1125, 0.50, 30.0), "B": (2, 0.1180, 0.50, 40.0), "C": (2, 0.1375, 0.50, 35.0),
       "D": (12, 0.15, 0.50, 50.0), "E": (0, 0.11, 0.50, 20.0), "F": (6, 1.80, 0.50, 25.0),
       "G": (2, 1.45, 0.50, 30.0), "H": (1, 0.0, 0.0, 15.0)}
GEO_ORDER = ["D", "H", "C", "A", "G", "B", "F", "E"]          # container order, not sorted by id

# event 0: cluster 0 = C (weight 0.6), A, D, E (nCells 6); cluster 1 = C (weight 0.4), B, F, G (nCells 5)
# event 1: nothing; event 2: cluster 0 = A (nCells 1)
CLUSTERS = [[["C", "A", "D", "E"], ["C", "B", "F", "G"]], [], [["A"]]]
CELL_E = [[[1.2, 1.0, 3.0, 0.7], [0.8, 0.5, 0.4, 0.2]], [], [[0.05]]]
N_CELLS = [[6, 5], [], [1]]
# per-cell truth (index, MeV), increasing energy as Athena stores it; D carries one negative entry
TRUTH = {"A": [(1, 100.0), (0, 800.0)], "B": [(1, 200.0), (0, 300.0)], "C": [(0, 1500.0)],
         "D": [(1, -50.0), (0, 2500.0)], "E": [(1, 600.0)], "F": [(0, 350.0)], "G": [(1, 150.0)]}
TRUTH_EV2 = {"A": [(0, 40.0)]}
PDG = [[211, 22], [], [-211]]


def _cluster_columns(with_truth=True):
    n_cl = [len(c) for c in CLUSTERS]
    cells = [c for ev in CLUSTERS for c in ev]
    ids = [ID[x] for cl in cells for x in cl]
    e = [x for ev in CELL_E for cl in ev for x in cl]
    lists, list_counts = [], []
    for ev_i, ev in enumerate(CLUSTERS):
        truth = TRUTH_EV2 if ev_i == 2 else TRUTH
        for c_i, cl in enumerate(ev):
            full = [truth.get(x, []) for x in cl] + [[]] * (N_CELLS[ev_i][c_i] - len(cl))   # Athena's empty tails
            lists += full
            list_counts.append(len(full))
    hit_counts = [len(x) for x in lists]
    flat = [h for x in lists for h in x]
    eo = (_off(n_cl),)
    cols = [Column("nCluster", "int", n_cl),
            Column("cluster_E", "float", [sum(c) for ev in CELL_E for c in ev], eo),
            Column("cluster_nCells", "int", [n for ev in N_CELLS for n in ev], eo),
            Column("cluster_cell_ID", "ulong", ids, eo + (_off([len(c) for c in cells]),)),
            Column("cluster_cell_E", "float", e, eo + (_off([len(c) for c in cells]),))]
    if with_truth:
        ho = eo + (_off(list_counts), _off(hit_counts))
        cols += [Column("cluster_cell_hitsTruthIndex", "int", [h[0] for h in flat], ho),
                 Column("cluster_cell_hitsTruthE", "float", [h[1] for h in flat], ho)]
    return cols


def _track_columns():
    n_trk = [2, 0, 0]
    to = (_off(n_trk),)
    cols = [Column("nTrack", "int", n_trk), Column("trackPt", "float", [5.0, 2.0], to),
            Column("trackP", "float", [5.1, 6.0], to), Column("trackEta", "float", [0.12, 1.75], to),
            Column("trackPhi", "float", [0.5, 0.48], to), Column("trackTruthParticleIndex", "int", [0, -1], to),
            Column("trackSubtractedCaloEnergy", "float", [2300.0, -999.0], to)]
    points = {"EMB1": (0.119, 0.501), "EMB2": (0.12, 0.50), "EMB3": (0.121, 0.499), "TileBar0": (0.122, 0.498)}
    for lay in TRACK_LAYERS:
        e0, p0 = points.get(lay, (NO_POINT, NO_POINT))
        e1, p1 = (1.80, 0.47) if lay == "EME2" else ((np.nan, np.nan) if lay == "EMB1" else (NO_POINT, NO_POINT))
        cols += [Column(f"trackEta_{lay}", "float", [e0, e1], to), Column(f"trackPhi_{lay}", "float", [p0, p1], to)]
    return cols


def _cell_geo_columns(noise_name="cell_geo_sigma", exclude=()):
    order = [k for k in GEO_ORDER if k not in exclude]
    n = len(order)
    o = (np.array([0, n], np.int64),)
    g = [GEO[k] for k in order]
    return [Column("cell_geo_ID", "ulong", [ID[k] for k in order], o),
            Column("cell_geo_sampling", "ushort", [x[0] for x in g], o),
            Column("cell_geo_eta", "float", [x[1] for x in g], o),
            Column("cell_geo_phi", "float", [x[2] for x in g], o),
            Column("cell_geo_rPerp", "float", np.full(n, 1700.0), o),
            Column(noise_name, "float", [x[3] for x in g], o)]


def cell_geo_file(path, exclude=(), noise_name="cell_geo_electronicNoise", container=None):
    """A geometry file holding only CellGeo (cells ``exclude`` left out)."""
    return write_columns(path, [("CellGeo", "CellGeo", 1, _cell_geo_columns(noise_name, exclude))], container)


def athena_style_file(path, geo_path=None, with_truth=True, container=None, drop=()):
    """Write the Athena-like file (module docstring); with ``geo_path`` the CellGeo goes there (noise branch
    ``cell_geo_electronicNoise`` as on the MLTree noise branch) instead of into the same file."""
    pdg = [p for ev in PDG for p in ev]
    events = [Column("runNumber", "int", [284500] * 3), Column("eventNumber", "long", [1001, 1002, 1003]),
              Column("nTruthPart", "int", [len(p) for p in PDG]),
              Column("truthPartPdgId", "int", pdg, (_off([len(p) for p in PDG]),))]
    cols = [c for c in events + _track_columns() + _cluster_columns(with_truth) if c.name not in drop]
    trees = [("EventTree", "EventTree", 3, cols)]
    if geo_path is None:
        trees.append(("CellGeo", "CellGeo", 1, _cell_geo_columns()))
    else:
        cell_geo_file(geo_path, container=container)
    return write_columns(path, trees, container)
