"""ATLAS "MLTree" ntuples (``EventTree`` + one-entry ``CellGeo``), as used by the calo-ML / JetPointNet studies.

Layout follows the Athena ``MLTreeMaker`` / ``CellGeometryTreeMaker`` algorithms (github.com/atlas-calo-ml/MLTree,
src/MLTreeMaker.h and .cxx): one entry per event, energies and momenta in GeV, angles in rad.

EventTree branches written and read (C++ types of MLTreeMaker; ``vector`` = one value per object):

=============================================  =========================  =========================================
branch                                         type                       meaning
=============================================  =========================  =========================================
``eventNumber``                                Long64_t                   event number
``nTrack, nCluster, nTruthPart``               int                        counts
``trackPt, trackP, trackEta, trackPhi``        vector<float>              measured track kinematics
``trackEta_<L>, trackPhi_<L>``                 vector<float>              extrapolation to layer L (EMB1, EMB2,
                                                                          EMB3, TileBar0-2); ``-999999999`` = none
``trackChiSquared`` / ``trackNumberDOF``       vector<float> / <int>      track fit quality
``trackTruthParticleIndex``                    vector<int>                index into truthPart* of the event, -1
``truthPartPdgId``                             vector<int>                truth particles (stable, final state)
``truthPartPt, truthPartE, ...Eta, ...Phi``    vector<float>
``cluster_E, cluster_Eta, cluster_Phi``        vector<float>              topo-clusters, by decreasing energy
``cluster_nCells``                             vector<int>                cells per cluster
``cluster_cell_ID``                            vector<vector<size_t>>     cell identifiers per cluster
``cluster_cell_E``                             vector<vector<float>>      cell energies per cluster
``cluster_cell_hitsE_EM / _nonEM``             vector<vector<float>>      calibration-hit energy per cell
``cluster_cell_hitsTruthIndex``                vector<vector<vector<int>>>    truth particles per cell, by
``cluster_cell_hitsTruthE``                    vector<vector<vector<float>>>  decreasing deposited energy
=============================================  =========================  =========================================

pcloud extensions (ignored by other readers, optional on read): ``trackCharge`` (vector<int>) and
``cluster_cell_hitsTruthE_EM`` (EM part of each truth contribution, same nesting as ``cluster_cell_hitsTruthE``).

CellGeo (one entry): ``cell_geo_ID`` (vector<size_t>), ``cell_geo_sampling`` (vector<unsigned short>, ATLAS
CaloSampling number), ``cell_geo_eta, _phi, _rPerp`` (mm), ``_deta, _dphi, _sigma`` (vector<float>). The noise
``cell_geo_sigma`` is written in MeV, the unit of Athena's CaloNoise tool used by CellGeometryTreeMaker; the
reader converts it to GeV. pcloud writes the flat cell index of its geometry as the cell ID (Athena writes compact
32-bit identifiers; the reader keeps whatever IDs a file has).

Containers. uproot cannot write TTree branches nested deeper than one variable-length level. Two containers:

* ``container="ttree"`` (default): a TTree whose doubly/triply nested branches are stored *flattened per event*
  (``cluster_cell_ID`` is one vector per event, split into clusters by ``cluster_nCells``; the hit lists are split
  per cell by the extra branch ``cluster_cell_nHitsTruth``). uproot adds a counter branch ``n<name>`` to every
  jagged branch.
* ``container="rntuple"``: an RNTuple with the exact MLTree nesting (``std::vector<std::vector<...>>``).

The reader accepts both and real MLTree TTrees (nested vectors).

Reading policy (:func:`read_mltree`):

* required branches: ``cluster_cell_ID``, ``cluster_cell_E``, ``trackPt``, ``trackEta``, ``trackPhi`` (and
  ``cluster_nCells`` for the flattened layout); missing -> :class:`~pcloud.io.errors.FormatError`.
* a cell listed in several clusters becomes one cell (same event and ID): its energy and truth are taken from its
  first occurrence (counted once); ``meta["n_shared_cells"]`` counts them.
* extrapolated points <= -1e5 (the Athena sentinel -999999999) or non-finite are "no point": NaN with
  ``track_layer_reached = False``. A missing per-layer branch gives "no point" for every track of that layer.
* optional branches missing -> documented defaults, listed in ``meta["missing_branches"]``: ``trackP`` = pT cosh
  eta; ``trackChiSquared`` NaN; ``trackNumberDOF`` -1; ``trackTruthParticleIndex`` -1; ``trackCharge`` 0;
  cluster E/eta/phi recomputed from the cells (E sum; eta/phi from CellGeo if present, else NaN); truth particle
  branches missing -> placeholder particles (pdg 0, NaN kinematics) covering every referenced index; hit branches
  missing -> no per-cell truth (``meta["has_cell_truth"] = False``, ``cell_true_energy_gev`` NaN).
* negative truth energies (calibration hits can be negative): ``negative_truth="drop"`` (default: the entry is
  removed), ``"clip"`` (set to 0), ``"keep"`` or ``"error"``; the count is in ``meta["n_negative_truth"]``.
* Athena stores the hit lists with one entry per cluster cell *before* its cell-energy threshold, so they can be
  longer than ``cluster_cell_ID``: they are truncated to the cell list (``meta["n_truncated_hit_lists"]``); shorter
  hit lists are a FormatError. A truth index outside [0, nTruthPart) is a FormatError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FormatError

LAYERS = ("EMB1", "EMB2", "EMB3", "TileBar0", "TileBar1", "TileBar2")
NO_POINT = -999999999.0
NO_POINT_THRESHOLD = -1e5
REQUIRED = ("cluster_cell_ID", "cluster_cell_E", "trackPt", "trackEta", "trackPhi")
SIGMA_UNIT_SCALE = {"MeV": 1e3, "GeV": 1.0}


# ================================================================================================ helpers
def _ak():
    import awkward as ak
    return ak


def _jag(values, counts, dtype):
    """awkward var-length array from flat values and counts."""
    ak = _ak()
    return ak.unflatten(np.asarray(values, dtype=dtype), np.asarray(counts, dtype=np.int64))


def _gather_ranges(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated index ranges offsets[w]:offsets[w+1] for every w in ``which`` and their lengths."""
    start = offsets[which]
    cnt = offsets[which + 1] - start
    idx = np.repeat(start - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
    return idx.astype(np.int64), cnt.astype(np.int64)


# ================================================================================================ writing
def write_mltree(path, events, clusters, geometry=None, container: str = "ttree",
                 max_truth_per_cell: int | None = None, write_cell_geo: bool = True, sigma_unit: str = "MeV"):
    """Write events (:class:`pcloud.core.events.TrackCellEvents`) and their topo-clusters
    (:class:`pcloud.core.clusters.TopoClusters`, built on ``events.cells`` rows) as an MLTree file.

    ``max_truth_per_cell``: keep only the N leading truth contributions per cell (Athena's default is 3); None keeps
    all. ``write_cell_geo`` needs ``geometry`` (a collider-frame geometry). As in Athena, only cells that belong to a
    cluster are written (unclustered window cells are not part of the format). The file is written atomically.
    """
    import uproot

    from ..core.atomic import atomic_output

    if container not in ("ttree", "rntuple"):
        raise ValueError(f"write_mltree: container must be 'ttree' or 'rntuple', found {container!r}")
    if sigma_unit not in SIGMA_UNIT_SCALE:
        raise ValueError(f"write_mltree: sigma_unit must be one of {sorted(SIGMA_UNIT_SCALE)}, found {sigma_unit!r}")
    missing = [lay for lay in LAYERS if lay not in events.layer_names]
    if missing:
        raise ValueError(f"write_mltree: events have layers {events.layer_names}; MLTree needs {list(LAYERS)} "
                         f"(missing {missing})")
    if clusters.cell_cluster.size != events.cells["id"].size:
        raise ValueError(f"write_mltree: clusters were built on {clusters.cell_cluster.size} cell rows, events have "
                         f"{events.cells['id'].size}")
    data = _event_branches(events, clusters, container, max_truth_per_cell)
    with atomic_output(path, suffix=".root") as tmp:
        with uproot.recreate(tmp) as f:
            if container == "ttree":
                f.mktree("EventTree", {k: (v.dtype if isinstance(v, np.ndarray) else v.type.content)
                                       for k, v in data.items()}, title="EventTree")
                f["EventTree"].extend(data)
            else:
                f.mkrntuple("EventTree", data)
            if write_cell_geo:
                if geometry is None:
                    raise ValueError("write_mltree: write_cell_geo=True needs the geometry")
                geo = _cell_geo_branches(geometry, sigma_unit)
                f.mktree("CellGeo", {k: v.type.content for k, v in geo.items()}, title="CellGeo")
                f["CellGeo"].extend(geo)
    return Path(path)


def _event_branches(events, clusters, container, max_truth_per_cell) -> dict:
    n_ev = events.n_events
    P, T, C, H = events.particles, events.tracks, events.cells, events.hits
    f32, i32 = np.float32, np.int32
    out = {"eventNumber": np.arange(n_ev, dtype=np.int64)}
    n_trk = np.diff(events.track_offsets)
    n_part = np.diff(events.particle_offsets)
    n_cl = np.diff(clusters.offsets)
    out["nTrack"] = n_trk.astype(i32)
    out["nCluster"] = n_cl.astype(i32)
    out["nTruthPart"] = n_part.astype(i32)
    # ---- tracks
    out["trackPt"] = _jag(T["pt_gev"], n_trk, f32)
    out["trackP"] = _jag(T["p_gev"], n_trk, f32)
    out["trackEta"] = _jag(T["eta"], n_trk, f32)
    out["trackPhi"] = _jag(T["phi"], n_trk, f32)
    for li, lay in enumerate(events.layer_names):
        if lay not in LAYERS:
            continue
        ok = T["layer_reached"][:, li]
        out[f"trackEta_{lay}"] = _jag(np.where(ok, T["layer_eta"][:, li], NO_POINT), n_trk, f32)
        out[f"trackPhi_{lay}"] = _jag(np.where(ok, T["layer_phi"][:, li], NO_POINT), n_trk, f32)
    out["trackChiSquared"] = _jag(T["chi2"], n_trk, f32)
    out["trackNumberDOF"] = _jag(T["ndf"], n_trk, i32)
    local_p = T["particle"] - events.particle_offsets[T["event"]]
    out["trackTruthParticleIndex"] = _jag(np.where(T["particle"] >= 0, local_p, -1), n_trk, i32)
    out["trackCharge"] = _jag(T["charge"], n_trk, i32)
    # ---- truth particles
    out["truthPartPdgId"] = _jag(P["pdg"], n_part, i32)
    out["truthPartPt"] = _jag(P["pt_gev"], n_part, f32)
    out["truthPartE"] = _jag(P["energy_gev"], n_part, f32)
    out["truthPartEta"] = _jag(P["eta"], n_part, f32)
    out["truthPartPhi"] = _jag(P["phi"], n_part, f32)
    # ---- clusters
    out["cluster_E"] = _jag(clusters.energy_gev, n_cl, f32)
    out["cluster_Eta"] = _jag(clusters.eta, n_cl, f32)
    out["cluster_Phi"] = _jag(clusters.phi, n_cl, f32)
    out["cluster_nCells"] = _jag(clusters.n_cells, n_cl, i32)
    rows = clusters.members  # cell rows, cluster by cluster
    cells_per_event = np.bincount(clusters.event, weights=clusters.n_cells, minlength=n_ev).astype(np.int64)
    # hits of each member cell, sorted by decreasing energy, optionally truncated
    order = np.lexsort((-H["energy_gev"], H["cell"]))
    h_cell = H["cell"][order]
    h_off = np.searchsorted(h_cell, np.arange(C["id"].size + 1))
    hidx, hcnt = _gather_ranges(h_off, rows)
    if max_truth_per_cell is not None:
        rank = np.arange(hidx.size) - np.repeat(np.cumsum(hcnt) - hcnt, hcnt)
        keep = rank < max_truth_per_cell
        hidx = hidx[keep]
        hcnt = np.minimum(hcnt, max_truth_per_cell)
    hsel = order[hidx]
    h_ev = C["event"][H["cell"][hsel]]
    h_local = H["particle"][hsel] - events.particle_offsets[h_ev]
    em = np.bincount(H["cell"], H["energy_em_gev"], minlength=C["id"].size)
    tot = np.bincount(H["cell"], H["energy_gev"], minlength=C["id"].size)
    flat = {"cluster_cell_ID": (C["id"][rows], np.uint64), "cluster_cell_E": (C["energy_gev"][rows], f32),
            "cluster_cell_hitsE_EM": (em[rows], f32), "cluster_cell_hitsE_nonEM": (tot[rows] - em[rows], f32)}
    hits = {"cluster_cell_hitsTruthIndex": (h_local, i32), "cluster_cell_hitsTruthE": (H["energy_gev"][hsel], f32),
            "cluster_cell_hitsTruthE_EM": (H["energy_em_gev"][hsel], f32)}
    ak = _ak()
    if container == "ttree":
        for k, (v, dt) in flat.items():
            out[k] = _jag(v, cells_per_event, dt)
        out["cluster_cell_nHitsTruth"] = _jag(hcnt, cells_per_event, i32)
        hits_per_event = np.bincount(np.repeat(C["event"][rows], hcnt), minlength=n_ev)
        for k, (v, dt) in hits.items():
            out[k] = _jag(v, hits_per_event, dt)
    else:
        for k, (v, dt) in flat.items():
            out[k] = ak.unflatten(_jag(v, clusters.n_cells, dt), n_cl)
        for k, (v, dt) in hits.items():
            out[k] = ak.unflatten(ak.unflatten(_jag(v, hcnt, dt), clusters.n_cells), n_cl)
    return out


def _cell_geo_branches(geometry, sigma_unit: str) -> dict:
    ak = _ak()
    c = geometry.cells
    n = geometry.n_cells
    layer_name = []
    for s in geometry.sections:
        layer_name += list(s.layer_names) if s.layer_names else [f"{s.name}_{i}" for i in range(s.n_layers)]
    sampling_map = geometry.info.get("sampling", {})
    samp = np.array([sampling_map.get(nm, i) for i, nm in enumerate(layer_name)], dtype=np.uint16)[c["layer"]]
    cols = {"cell_geo_ID": (np.arange(n), np.uint64), "cell_geo_sampling": (samp, np.uint16),
            "cell_geo_eta": (c["eta"], np.float32), "cell_geo_phi": (c["phi"], np.float32),
            "cell_geo_rPerp": (np.hypot(c["x"], c["y"]), np.float32), "cell_geo_deta": (c["du"], np.float32),
            "cell_geo_dphi": (c["dv"], np.float32),
            "cell_geo_sigma": (c["noise_sigma_gev"] * SIGMA_UNIT_SCALE[sigma_unit], np.float32)}
    return {k: ak.unflatten(np.asarray(v, dtype=dt), np.array([n])) for k, (v, dt) in cols.items()}


# ================================================================================================ reading
@dataclass
class MLTreeData:
    """What :func:`read_mltree` returns: events (cells = the unique clustered cells), clusters on those cell rows,
    the CellGeo columns (numpy, sigma in GeV) or None, and reading notes in ``meta``."""

    events: object
    clusters: object
    cell_geo: dict | None
    meta: dict = field(default_factory=dict)


def _open_tree(f, name, path):
    keys = [k.split(";")[0] for k in f.keys()]
    if name not in keys:
        raise FormatError(path, f"tree {name!r}", f"a TTree or RNTuple named {name!r}", f"keys {sorted(set(keys))}")
    return f[name]


def read_mltree(path, geometry=None, negative_truth: str = "drop", tree: str = "EventTree",
                sigma_unit: str = "MeV", entry_start: int | None = None, entry_stop: int | None = None) -> MLTreeData:
    """Read an MLTree file into :class:`MLTreeData`; see the module docstring for the policies.

    ``geometry`` (optional) supplies cell noise when the file has no CellGeo tree and the IDs are pcloud flat
    indices. ``sigma_unit``: unit of ``cell_geo_sigma`` in the file (MeV for Athena and pcloud files).
    """
    import uproot

    from ..core.clusters import TopoClusters
    from ..core.particles import PDG_CHARGE
    from ..core.events import TrackCellEvents

    ak = _ak()
    if negative_truth not in ("drop", "clip", "keep", "error"):
        raise ValueError(f"read_mltree: negative_truth must be drop, clip, keep or error, found {negative_truth!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises various errors for non-ROOT files
        raise FormatError(path, "file", "a ROOT file", f"an unreadable file ({type(err).__name__}: {err})") from None
    meta = {"missing_branches": [], "n_negative_truth": 0, "n_shared_cells": 0, "n_truncated_hit_lists": 0,
            "container": None, "file": str(path)}
    with f:
        t = _open_tree(f, tree, path)
        meta["container"] = "rntuple" if "RNTuple" in type(t).__name__ else "ttree"
        names = set(t.keys())
        missing_req = [b for b in REQUIRED if b not in names]
        if missing_req:
            raise FormatError(path, f"{tree} branches {missing_req}", "the required MLTree branches "
                              f"{list(REQUIRED)}", f"branches {sorted(names)}")
        a = t.arrays(sorted(names), entry_start=entry_start, entry_stop=entry_stop)
        cell_geo = None
        keys = [k.split(";")[0] for k in f.keys()]
        if "CellGeo" in keys:
            g = f["CellGeo"]
            need = ("cell_geo_ID", "cell_geo_sigma")
            gn = set(g.keys())
            if any(k not in gn for k in need):
                raise FormatError(path, "CellGeo branches", f"at least {list(need)}", f"branches {sorted(gn)}")
            ga = g.arrays(sorted(gn))
            if len(ga) < 1:
                raise FormatError(path, "CellGeo", "one entry", "0 entries")
            cell_geo = {k: np.asarray(ga[k][0]) for k in gn}
            cell_geo["cell_geo_sigma"] = cell_geo["cell_geo_sigma"].astype(np.float64) / SIGMA_UNIT_SCALE[sigma_unit]
    n_ev = len(a)

    def opt(name):
        if name in names:
            return a[name]
        meta["missing_branches"].append(name)
        return None

    def flat(x, dtype=np.float64):
        return np.asarray(ak.flatten(x, axis=None), dtype=dtype)

    # ---------------------------------------------------------------- clusters and cells
    ids = a["cluster_cell_ID"]
    depth = ids.ndim
    if depth == 3:      # native nesting: event -> cluster -> cell
        ids_c = ak.flatten(ids, axis=1)
        e_c = ak.flatten(a["cluster_cell_E"], axis=1)
        n_cl = np.asarray(ak.num(ids, axis=1), dtype=np.int64)
        n_cells_cl = np.asarray(ak.num(ids_c, axis=1), dtype=np.int64)
    elif depth == 2:    # pcloud flattened layout: cells per event, split by cluster_nCells
        if "cluster_nCells" not in names:
            raise FormatError(path, "branch 'cluster_nCells'", "present when cluster_cell_ID is one vector per event "
                              "(flattened layout)", "no such branch")
        ncell = a["cluster_nCells"]
        n_cl = np.asarray(ak.num(ncell, axis=1), dtype=np.int64)
        n_cells_cl = flat(ncell, np.int64)
        per_ev = np.asarray(ak.num(ids, axis=1))
        if np.any(np.bincount(np.repeat(np.arange(n_ev), n_cl), n_cells_cl, minlength=n_ev) != per_ev):
            raise FormatError(path, "branch 'cluster_nCells'", "sums equal to the cells per event of cluster_cell_ID",
                              "different sums")
        ids_c = ak.unflatten(ak.flatten(ids), n_cells_cl)
        e_c = ak.unflatten(ak.flatten(a["cluster_cell_E"]), n_cells_cl)
    else:
        raise FormatError(path, "branch 'cluster_cell_ID'", "vector<vector<size_t>> (or one vector per event)",
                          f"type {ak.type(ids)}")
    cell_id_all = flat(ids_c, np.int64)
    cell_e_all = flat(e_c)
    if cell_id_all.size != cell_e_all.size or np.any(np.asarray(ak.num(e_c, axis=1)) != n_cells_cl):
        raise FormatError(path, "branch 'cluster_cell_E'", "one energy per entry of cluster_cell_ID",
                          "a different number of entries")
    K = int(n_cl.sum())
    cl_event = np.repeat(np.arange(n_ev), n_cl)
    occ_cluster = np.repeat(np.arange(K), n_cells_cl)
    occ_event = cl_event[occ_cluster]
    # unique cells per event (first occurrence wins)
    key_order = np.lexsort((np.arange(cell_id_all.size), cell_id_all, occ_event))
    se, sc = occ_event[key_order], cell_id_all[key_order]
    first = np.ones(se.size, bool)
    first[1:] = (se[1:] != se[:-1]) | (sc[1:] != sc[:-1])
    meta["n_shared_cells"] = int((~first).sum())
    row_of_sorted = np.cumsum(first) - 1
    occ_row = np.empty(cell_id_all.size, np.int64)
    occ_row[key_order] = row_of_sorted
    first_occ = key_order[first]                      # occurrence index of each unique cell, in cell-row order
    c_event, c_id, c_e = occ_event[first_occ], cell_id_all[first_occ], cell_e_all[first_occ]
    n_rows = c_id.size

    # ---------------------------------------------------------------- per-cell truth
    hi, he = opt("cluster_cell_hitsTruthIndex"), opt("cluster_cell_hitsTruthE")
    he_em = opt("cluster_cell_hitsTruthE_EM")
    if (hi is None) != (he is None):
        raise FormatError(path, "branches cluster_cell_hitsTruthIndex / cluster_cell_hitsTruthE",
                          "both or neither", "only one of them")
    has_truth = hi is not None
    meta["has_cell_truth"] = has_truth
    if has_truth:
        hl = [hi, he] + ([he_em] if he_em is not None else [])
        if hi.ndim == 4:                       # event -> cluster -> cell -> hit
            hl = [ak.flatten(x, axis=1) for x in hl]   # cluster -> cell -> hit
            n_hcell = np.asarray(ak.num(hl[0], axis=1), dtype=np.int64)
            if np.any(n_hcell < n_cells_cl):
                raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "a hit list for every cluster cell",
                                  f"fewer lists than cells in {int((n_hcell < n_cells_cl).sum())} clusters")
            if np.any(n_hcell > n_cells_cl):  # Athena: lists sized before the cell-energy threshold
                meta["n_truncated_hit_lists"] = int((n_hcell > n_cells_cl).sum())
                keep = ak.local_index(hl[0], axis=1) < ak.Array(n_cells_cl)
                hl = [x[keep] for x in hl]
            hl = [ak.flatten(x, axis=1) for x in hl]   # cell -> hit
            hcnt = np.asarray(ak.num(hl[0], axis=1), dtype=np.int64)
        elif hi.ndim == 2:                     # flattened: split by cluster_cell_nHitsTruth
            if "cluster_cell_nHitsTruth" not in names:
                raise FormatError(path, "branch 'cluster_cell_nHitsTruth'", "present for flattened hit lists",
                                  "no such branch")
            hcnt = flat(a["cluster_cell_nHitsTruth"], np.int64)
            if hcnt.size != cell_id_all.size:
                raise FormatError(path, "branch 'cluster_cell_nHitsTruth'", f"{cell_id_all.size} entries (one per "
                                  "cluster cell)", f"{hcnt.size}")
            hl = [ak.unflatten(ak.flatten(x), hcnt) for x in hl]
        else:
            raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "vector<vector<vector<int>>>",
                              f"type {ak.type(hi)}")
        h_local = flat(hl[0], np.int64)
        h_e = flat(hl[1])
        h_em = flat(hl[2]) if he_em is not None else np.full(h_e.size, np.nan)
        if h_e.size != h_local.size:
            raise FormatError(path, "branch 'cluster_cell_hitsTruthE'", "one energy per truth index",
                              f"{h_e.size} energies for {h_local.size} indices")
        h_occ = np.repeat(np.arange(cell_id_all.size), hcnt)
        # keep the hits of first occurrences only
        first_mask = np.zeros(cell_id_all.size, bool)
        first_mask[first_occ] = True
        km = first_mask[h_occ]
        h_occ, h_local, h_e, h_em = h_occ[km], h_local[km], h_e[km], h_em[km]
        h_row = occ_row[h_occ]
        h_event = c_event[h_row]
    else:
        h_row = h_local = h_event = np.zeros(0, np.int64)
        h_e = h_em = np.zeros(0)

    # ---------------------------------------------------------------- truth particles
    trk_pt = a["trackPt"]
    n_trk = np.asarray(ak.num(trk_pt, axis=1), dtype=np.int64)
    t_event = np.repeat(np.arange(n_ev), n_trk)
    tti = opt("trackTruthParticleIndex")
    t_local = flat(tti, np.int64) if tti is not None else np.full(t_event.size, -1, np.int64)
    truth_names = ("truthPartPdgId", "truthPartPt", "truthPartE", "truthPartEta", "truthPartPhi")
    tb = {k: opt(k) for k in truth_names}
    if tb["truthPartPdgId"] is not None:
        n_part = np.asarray(ak.num(tb["truthPartPdgId"], axis=1), dtype=np.int64)
        for k, v in tb.items():
            if v is not None and np.any(np.asarray(ak.num(v, axis=1)) != n_part):
                raise FormatError(path, f"branch {k!r}", "one value per truth particle (as truthPartPdgId)",
                                  "a different number")
    else:  # placeholders covering every referenced index
        need = np.zeros(n_ev, np.int64)
        if h_local.size:
            np.maximum.at(need, h_event, h_local + 1)
        if t_local.size:
            np.maximum.at(need, t_event, t_local + 1)
        n_part = need
    p_event = np.repeat(np.arange(n_ev), n_part)
    p_off = np.concatenate([[0], np.cumsum(n_part)])
    NP = int(n_part.sum())

    def tcol(k, dtype=np.float64, fill=np.nan):
        return flat(tb[k], dtype) if tb[k] is not None else np.full(NP, fill, dtype)

    pdg = tcol("truthPartPdgId", np.int64, 0)
    ppt, pe, peta, pphi = tcol("truthPartPt"), tcol("truthPartE"), tcol("truthPartEta"), tcol("truthPartPhi")
    if h_local.size and np.any((h_local < 0) | (h_local >= n_part[h_event])):
        raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "indices in [0, nTruthPart) of the event",
                          f"values in [{h_local.min()}, {h_local.max()}]")
    neg = h_e < 0  # negative truth energies: policy applied after the index check
    meta["n_negative_truth"] = int(neg.sum())
    if neg.any():
        if negative_truth == "error":
            raise FormatError(path, "branch 'cluster_cell_hitsTruthE'", "truth energies >= 0",
                              f"{int(neg.sum())} negative values (min {h_e.min():g} GeV)",
                              hint="read with negative_truth='drop', 'clip' or 'keep'")
        if negative_truth == "drop":
            h_row, h_event, h_local, h_e, h_em = h_row[~neg], h_event[~neg], h_local[~neg], h_e[~neg], h_em[~neg]
        elif negative_truth == "clip":
            h_e = np.where(neg, 0.0, h_e)
            h_em = np.where(neg, 0.0, h_em)
    bad_t = (t_local >= 0) & (t_local >= n_part[t_event])
    if bad_t.any():
        raise FormatError(path, "branch 'trackTruthParticleIndex'", "-1 or an index in [0, nTruthPart)",
                          f"{int(bad_t.sum())} indices beyond the truth list")
    keys = np.array(sorted(PDG_CHARGE))
    vals = np.array([PDG_CHARGE[k] for k in keys])
    j = np.clip(np.searchsorted(keys, pdg), 0, keys.size - 1)
    pcharge = np.where(keys[j] == pdg, vals[j], 0)
    px, py, pz = ppt * np.cos(pphi), ppt * np.sin(pphi), ppt * np.sinh(peta)
    particles = {"event": p_event, "pdg": pdg, "charge": pcharge,
                 "mass_gev": np.sqrt(np.maximum(pe ** 2 - (ppt * np.cosh(peta)) ** 2, 0.0)),
                 "energy_gev": pe, "px_gev": px, "py_gev": py, "pz_gev": pz, "pt_gev": ppt, "eta": peta, "phi": pphi,
                 "vertex_mm": np.full((NP, 3), np.nan), "parent": np.full(NP, -1, np.int64),
                 "showered": np.zeros(NP, bool)}
    h_particle = p_off[h_event] + h_local
    particles["showered"][h_particle] = True

    # ---------------------------------------------------------------- tracks
    T = t_event.size
    t_pt = flat(trk_pt)
    t_eta, t_phi = flat(a["trackEta"]), flat(a["trackPhi"])
    if t_eta.size != T or t_phi.size != T:
        raise FormatError(path, "branches trackEta / trackPhi", f"{T} values (as trackPt)",
                          f"{t_eta.size} / {t_phi.size}")

    def tflat(name, dtype=np.float64, fill=np.nan):
        v = opt(name)
        if v is None:
            return None if fill is None else np.full(T, fill, dtype)
        out = flat(v, dtype)
        if out.size != T:
            raise FormatError(path, f"branch {name!r}", f"{T} values (one per track)", f"{out.size}")
        return out

    t_p = tflat("trackP", fill=None)
    if t_p is None:
        t_p = t_pt * np.cosh(t_eta)
    lay_eta = np.full((T, len(LAYERS)), np.nan)
    lay_phi = np.full((T, len(LAYERS)), np.nan)
    for li, lay in enumerate(LAYERS):
        e_l, p_l = tflat(f"trackEta_{lay}"), tflat(f"trackPhi_{lay}")
        ok = np.isfinite(e_l) & np.isfinite(p_l) & (e_l > NO_POINT_THRESHOLD) & (p_l > NO_POINT_THRESHOLD)
        lay_eta[:, li] = np.where(ok, e_l, np.nan)
        lay_phi[:, li] = np.where(ok, p_l, np.nan)
    reached = np.isfinite(lay_eta)
    tracks = {"event": t_event, "particle": np.where(t_local >= 0, p_off[t_event] + t_local, -1),
              "pt_gev": t_pt, "p_gev": t_p, "eta": t_eta, "phi": t_phi,
              "charge": tflat("trackCharge", np.int64, 0), "true_pt_gev": np.full(T, np.nan),
              "chi2": tflat("trackChiSquared"), "ndf": tflat("trackNumberDOF", np.int64, -1),
              "layer_eta": lay_eta, "layer_phi": lay_phi, "layer_x_mm": np.full((T, len(LAYERS)), np.nan),
              "layer_y_mm": np.full((T, len(LAYERS)), np.nan), "layer_z_mm": np.full((T, len(LAYERS)), np.nan),
              "layer_reached": reached}

    # ---------------------------------------------------------------- cells: noise from CellGeo / geometry
    sigma = np.full(n_rows, np.nan)
    if cell_geo is not None:
        gid = cell_geo["cell_geo_ID"].astype(np.int64)
        o = np.argsort(gid)
        pos = np.clip(np.searchsorted(gid[o], c_id), 0, max(gid.size - 1, 0))
        found = gid[o][pos] == c_id if gid.size else np.zeros(n_rows, bool)
        sigma[found] = cell_geo["cell_geo_sigma"][o][pos[found]]
    elif geometry is not None and (c_id.size == 0 or (c_id.min() >= 0 and c_id.max() < geometry.n_cells)):
        sigma = geometry.cells["noise_sigma_gev"][c_id].astype(np.float64)
    true_e = np.bincount(h_row, h_e, minlength=n_rows) if has_truth else np.full(n_rows, np.nan)
    cells = {"event": c_event, "id": c_id, "energy_gev": c_e, "true_energy_gev": true_e, "noise_sigma_gev": sigma}
    o = np.argsort(h_row, kind="stable")
    hits = {"cell": h_row[o], "particle": h_particle[o], "energy_gev": h_e[o], "energy_em_gev": h_em[o]}
    events = TrackCellEvents(n_events=n_ev, geometry_name=(geometry.name if geometry is not None else "mltree"),
                             layer_names=list(LAYERS), particles=particles,
                             parents={k: np.zeros(0) for k in ("event", "pdg")}, tracks=tracks, cells=cells,
                             hits=hits, meta={"source": str(path)})

    # ---------------------------------------------------------------- clusters on the unique cell rows
    members = occ_row[np.arange(cell_id_all.size)]
    ce = opt("cluster_E")
    c_energy = flat(ce) if ce is not None else np.bincount(occ_cluster, cell_e_all, minlength=K)
    ceta, cphi = opt("cluster_Eta"), opt("cluster_Phi")
    if ceta is not None and cphi is not None:
        c_eta, c_phi = flat(ceta), flat(cphi)
    elif cell_geo is not None and "cell_geo_eta" in cell_geo:
        gid = cell_geo["cell_geo_ID"].astype(np.int64)
        o2 = np.argsort(gid)
        pos = np.clip(np.searchsorted(gid[o2], cell_id_all), 0, gid.size - 1)
        w = np.abs(cell_e_all)
        ge, gp = cell_geo["cell_geo_eta"][o2][pos], cell_geo["cell_geo_phi"][o2][pos]
        sw = np.maximum(np.bincount(occ_cluster, w, minlength=K), 1e-300)
        c_eta = np.bincount(occ_cluster, w * ge, minlength=K) / sw
        c_phi = np.arctan2(np.bincount(occ_cluster, w * np.sin(gp), minlength=K),
                           np.bincount(occ_cluster, w * np.cos(gp), minlength=K))
    else:
        c_eta = c_phi = np.full(K, np.nan)
    cell_cluster = np.full(n_rows, -1, np.int64)
    cell_cluster[occ_row[first_occ]] = occ_cluster[first_occ]
    clusters = TopoClusters(n_events=n_ev, event=cl_event, energy_gev=c_energy, eta=c_eta, phi=c_phi,
                            n_cells=n_cells_cl, cell_cluster=cell_cluster, cell_role=np.zeros(n_rows, np.int8),
                            members=members, member_offsets=np.concatenate([[0], np.cumsum(n_cells_cl)]),
                            meta={"source": str(path)})
    return MLTreeData(events=events, clusters=clusters, cell_geo=cell_geo, meta=meta)
