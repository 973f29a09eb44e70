"""Reading MLTree files (real Athena ones and pcloud's) into :class:`pcloud.core.events.TrackCellEvents`.

:func:`read_mltree` runs these named steps (each a function below):

1. ``_open_root`` / ``_event_arrays``: open the file, check the required branches, read the branches pcloud uses
   (only those) for an entry range; unreadable, truncated or non-ROOT files give one :class:`FormatError` naming the
   file.
2. ``_read_cell_geo``: CellGeo from the file, or from a separate geometry file (``geo=``); container order (not
   necessarily sorted); noise from ``cell_geo_sigma`` or ``cell_geo_electronicNoise`` (MeV -> GeV).
3. ``_cluster_occurrences``: cells per cluster (``vector<vector<...>>``); the same ID may occur in several clusters.
4. ``_cell_truth``: per-cell truth lists, longer lists truncated to the cell list (Athena sizes them
   ``cluster_nCells``, with empty tails; counted), ``hitsTruthE`` MeV -> GeV, index range check, negative energies
   per ``negative_truth``.
5. ``_merge_shared``: one entry per (event, file cell ID). Athena's cluster splitter shares a cell between two
   clusters with weights w1 + w2 = 1 and MLTreeMaker stores E * w in each (ATLAS, "Topological cell clustering in
   the ATLAS calorimeters and its performance in LHC Run 1", Eur. Phys. J. C 77 (2017) 490, section 4.3), so the
   energies of repeated IDs are **summed**; the truth (unweighted calibration hits) is taken from the first
   occurrence.
6. ``_map_to_geometry``: each file cell onto a pcloud cell (:mod:`~pcloud.io.mltree.cellmap`); cells of samplings or
   regions the pcloud geometry lacks are dropped and counted (number and energy fraction in
   ``meta["cell_mapping"]``); several file cells in one pcloud cell are summed (energy, per-particle truth; noise
   added in quadrature).
7. ``_truth_particles``, ``_tracks``: truth particles (placeholders if the branches are missing) and tracks with
   their layer points; the sentinel (< -1e5) and NaN mean "not reached"; track points get x, y, z on the pcloud
   layer's mid radius (the convention of pcloud's own track extrapolation).
8. ``_clusters``: :class:`~pcloud.core.clusters.TopoClusters` on the pcloud cell rows.

Missing optional branches (they depend on MLTreeMaker's job flags) get the defaults of :data:`DEFAULTS`, listed in
``meta["missing_branches"]`` and ``meta["defaults"]``. Files of the flattened layout written by pcloud before the
nested writer are not read (FormatError).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError
from .cellmap import NO_SUCH_LAYER, OUTSIDE, build_cellmap
from .layout import CELL_TRUTH, NO_POINT_THRESHOLD, NOISE_BRANCHES, REQUIRED

SIGMA_UNIT_SCALE = {"MeV": 1e3, "GeV": 1.0}
NEGATIVE_TRUTH = ("drop", "clip", "keep", "error")
#: defaults of the optional branches a file may lack (MLTreeMaker job flags, see layout)
DEFAULTS = {"trackP": "pT cosh(eta)", "trackChiSquared": "NaN", "trackNumberDOF": "-1",
            "trackTruthParticleIndex": "-1 (no truth link)", "trackCharge": "0", "eventNumber": "entry index",
            "cluster_E": "sum of the cluster's cell energies", "cluster_Eta": "|E|-weighted mean of the cells",
            "cluster_Phi": "|E|-weighted circular mean of the cells",
            "truthPartPdgId": "placeholder particles (pdg 0) covering every referenced index",
            "truthPartPt": "NaN", "truthPartE": "NaN", "truthPartEta": "NaN", "truthPartPhi": "NaN",
            "truthPartMass": "from E, pT, eta",
            "cluster_cell_hitsTruthIndex": "no per-cell truth (has_cell_truth False, true energies NaN)",
            "cluster_cell_hitsTruthE": "no per-cell truth", "cluster_cell_hitsTruthE_EM": "NaN (no EM split)",
            "trackEta_<layer>": "layer not reached"}
#: EventTree branches the reader uses (besides trackEta_/trackPhi_ of the geometry's layers)
USED = REQUIRED + CELL_TRUTH + (
    "eventNumber", "trackP", "trackChiSquared", "trackNumberDOF", "trackTruthParticleIndex", "trackCharge",
    "truthPartPdgId", "truthPartPt", "truthPartE", "truthPartMass", "truthPartEta", "truthPartPhi", "cluster_E",
    "cluster_Eta", "cluster_Phi", "cluster_nCells", "cluster_cell_hitsTruthE_EM")


@dataclass
class MLTreeData:
    """What :func:`read_mltree` returns: events (cells = the pcloud cells holding the file's clustered cells),
    clusters on those cell rows, the CellGeo columns (numpy, container order) or None, reading notes in ``meta``."""

    events: object
    clusters: object
    cell_geo: dict | None
    meta: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ helpers
def _ak():
    import awkward as ak
    return ak


def _flat(x, dtype=np.float64) -> np.ndarray:
    return np.asarray(_ak().flatten(x, axis=None), dtype=dtype)


def _num(x, axis=1) -> np.ndarray:
    return np.asarray(_ak().num(x, axis=axis), dtype=np.int64)


def _offsets(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))]).astype(np.int64)


@contextlib.contextmanager
def _unreadable(path, what: str):
    """Turn any non-FormatError raised while reading into one FormatError naming the file."""
    try:
        yield
    except FormatError:
        raise
    except Exception as err:  # uproot raises many types for truncated / corrupt files
        first = (str(err).splitlines() or [""])[0][:200]
        raise FormatError(path, what, "a readable ROOT file",
                          f"an unreadable file, truncated or corrupt ({type(err).__name__}: {first})") from None


# ------------------------------------------------------------------------------------------------ step 1: file
def _open_root(path):
    import uproot

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with _unreadable(path, "file"):
        return uproot.open(path)


def _tree(f, name, path):
    with _unreadable(path, "file"):
        keys = [k.split(";")[0] for k in f.keys(recursive=False)]
    if name not in keys:
        raise FormatError(path, f"tree {name!r}", f"a TTree or RNTuple named {name!r}", f"keys {sorted(set(keys))}")
    with _unreadable(path, f"tree {name!r}"):
        return f[name]


def _event_arrays(t, path, layer_names, entry_start, entry_stop):
    """Arrays of the branches pcloud uses (those the tree has), for entries ``entry_start:entry_stop``."""
    with _unreadable(path, "tree 'EventTree'"):
        names = set(t.keys())
    missing = [b for b in REQUIRED if b not in names]
    if missing:
        raise FormatError(path, f"EventTree branches {missing}", f"the required MLTree branches {list(REQUIRED)}",
                          f"{len(names)} branches without them")
    if "cluster_cell_hitsTruthE_EM" in names and "runNumber" not in names:
        raise FormatError(path, "EventTree", "an MLTree file (MLTreeMaker always writes runNumber)",
                          "a file of an earlier pcloud version (per-cell truth in GeV, no runNumber)",
                          hint="write it again with this version")
    wanted = [b for b in USED + tuple(f"track{c}_{lay}" for lay in layer_names for c in ("Eta", "Phi"))
              if b in names]
    with _unreadable(path, "tree 'EventTree' (branch data)"):
        return t.arrays(wanted, entry_start=entry_start, entry_stop=entry_stop)


# ------------------------------------------------------------------------------------------------ step 2: CellGeo
def _read_cell_geo(f, path, geo, sigma_unit):
    """CellGeo columns (numpy, ``sigma_gev`` added) from ``geo`` (a separate file) or the file; None if absent."""
    src, src_path = f, path
    if geo is not None:
        src_path = Path(geo)
        src = _open_root(src_path)
    with _unreadable(src_path, "file"):
        keys = [k.split(";")[0] for k in src.keys(recursive=False)]
    if "CellGeo" not in keys:
        if geo is not None:
            raise FormatError(src_path, "tree 'CellGeo'", "a CellGeo tree (geometry file)", f"keys {sorted(keys)}")
        return None
    with _unreadable(src_path, "tree 'CellGeo'"):
        g = src["CellGeo"]
        gn = set(g.keys())
        need = ("cell_geo_ID", "cell_geo_sampling", "cell_geo_eta", "cell_geo_phi")
        if any(k not in gn for k in need):
            raise FormatError(src_path, "CellGeo branches", f"at least {list(need)}", f"branches {sorted(gn)}")
        ga = g.arrays(sorted(gn), entry_stop=1)
    if len(ga) < 1:
        raise FormatError(src_path, "tree 'CellGeo'", "one entry", "0 entries")
    cg = {k: np.asarray(ga[k][0]) for k in gn}
    lens = {k: v.size for k, v in cg.items() if v.ndim == 1}
    if len(set(lens.values())) > 1:
        raise FormatError(src_path, "tree 'CellGeo'", "vectors of one length (one value per cell)", f"lengths {lens}")
    noise = next((k for k in NOISE_BRANCHES if k in cg), None)
    if noise is not None:
        cg["sigma_gev"] = cg[noise].astype(np.float64) / SIGMA_UNIT_SCALE[sigma_unit]
    return cg


# ------------------------------------------------------------------------------------------------ step 3: clusters
def _cluster_occurrences(a, path) -> dict:
    """Per event clusters, per cluster cells: ``n_cl`` (events), ``n_cells`` (clusters), and per occurrence (a cell
    of a cluster) ``id``, ``e`` (GeV), ``cluster``, ``event``."""
    ak = _ak()
    ids = a["cluster_cell_ID"]
    if ids.ndim != 3:
        raise FormatError(path, "branch 'cluster_cell_ID'", "vector<vector<unsigned long>> (cells per cluster)",
                          f"type {ak.type(ids)} (pcloud's old flattened layout is no longer read; rewrite the file)")
    e = a["cluster_cell_E"]
    n_cl = _num(ids, 1)
    n_cells = _num(ak.flatten(ids, axis=1), 1)
    if e.ndim != 3 or np.any(_num(e, 1) != n_cl) or np.any(_num(ak.flatten(e, axis=1), 1) != n_cells):
        raise FormatError(path, "branch 'cluster_cell_E'", "one energy per entry of cluster_cell_ID (same nesting)",
                          f"type {ak.type(e)} with other lengths")
    cl_event = np.repeat(np.arange(n_cl.size), n_cl)
    occ_cluster = np.repeat(np.arange(n_cells.size), n_cells)
    return {"n_cl": n_cl, "n_cells": n_cells, "cl_event": cl_event, "cluster": occ_cluster,
            "event": cl_event[occ_cluster], "id": _flat(ids, np.int64), "e": _flat(e)}


# ------------------------------------------------------------------------------------------------ step 4: truth
def _truth_lists(a, occ, path, meta):
    """Per-cell truth lists cut to the cell lists: (index, energy MeV, EM MeV or None, counts per occurrence)."""
    ak = _ak()
    hl = [a[k] for k in CELL_TRUTH] + ([a["cluster_cell_hitsTruthE_EM"]] if "cluster_cell_hitsTruthE_EM" in a.fields
                                       else [])
    if any(x.ndim != 4 for x in hl):
        raise FormatError(path, "branches cluster_cell_hitsTruthIndex / _hitsTruthE",
                          "vector<vector<vector<...>>> (per cluster, per cell)", f"type {ak.type(hl[0])}")
    hl = [ak.flatten(x, axis=1) for x in hl]                       # cluster -> cell -> entry
    n_lists = _num(hl[0], 1)
    if any(np.any(_num(x, 1) != n_lists) for x in hl[1:]):
        raise FormatError(path, "branch 'cluster_cell_hitsTruthE'", "one list per list of hitsTruthIndex",
                          "a different number of lists")
    short = n_lists < occ["n_cells"]
    if short.any():
        raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "a truth list for every cluster cell",
                          f"fewer lists than cells in {int(short.sum())} clusters")
    long_ = n_lists > occ["n_cells"]
    meta["n_truncated_hit_lists"] = int(long_.sum())
    if long_.any():                                                # Athena: lists sized before the cell threshold
        keep = ak.local_index(hl[0], axis=1) < ak.Array(occ["n_cells"])
        hl = [x[keep] for x in hl]
    hl = [ak.flatten(x, axis=1) for x in hl]                       # cell -> entry
    cnt = _num(hl[0], 1)
    if any(np.any(_num(x, 1) != cnt) for x in hl[1:]):
        raise FormatError(path, "branch 'cluster_cell_hitsTruthE'", "one energy per truth index",
                          "lists of other lengths")
    return _flat(hl[0], np.int64), _flat(hl[1]), (_flat(hl[2]) if len(hl) > 2 else None), cnt


def _cell_truth(a, occ, path, meta, negative_truth) -> dict | None:
    """Per truth entry: ``occ`` (occurrence), ``local`` (particle index in the event), ``e``, ``em`` (GeV)."""
    present = [k in a.fields for k in CELL_TRUTH]
    meta["has_cell_truth"] = all(present)
    if any(present) and not all(present):
        raise FormatError(path, "branches cluster_cell_hitsTruthIndex / cluster_cell_hitsTruthE", "both or neither",
                          "only one of them")
    if not all(present):
        return None
    local, e_mev, em_mev, cnt = _truth_lists(a, occ, path, meta)
    h = {"occ": np.repeat(np.arange(cnt.size), cnt), "local": local, "e": e_mev * 1e-3,
         "em": em_mev * 1e-3 if em_mev is not None else np.full(local.size, np.nan)}
    return h


def _negative_truth(h, path, meta, policy) -> dict:
    neg = h["e"] < 0
    meta["n_negative_truth"] = int(neg.sum())
    if not neg.any() or policy == "keep":
        return h
    if policy == "error":
        raise FormatError(path, "branch 'cluster_cell_hitsTruthE'", "truth energies >= 0",
                          f"{int(neg.sum())} negative values (min {h['e'].min() * 1e3:g} MeV)",
                          hint="read with negative_truth='drop', 'clip' or 'keep'")
    if policy == "drop":
        return {k: v[~neg] for k, v in h.items()}
    return {**h, "e": np.where(neg, 0.0, h["e"]), "em": np.where(neg, 0.0, h["em"])}


def require_truth(data: MLTreeData, purpose: str) -> None:
    """Raise a one-line :class:`FormatError` naming the file and the branch if ``data`` has no per-cell truth."""
    if not data.meta.get("has_cell_truth", False):
        raise FormatError(data.meta.get("file"), "branch 'cluster_cell_hitsTruthIndex'",
                          f"per-cell truth (needed for {purpose})",
                          "a file without it (MLTreeMaker ran without TruthParticlesPerCell)")


# ------------------------------------------------------------------------------------------------ step 5: shared cells
def _merge_shared(occ, h, meta):
    """One entry per (event, file cell ID): energies of repeated IDs summed (split clusters), truth of the first
    occurrence. Returns (unique cells {event, id, e}, unique index of each occurrence, truth re-indexed)."""
    n = occ["id"].size
    o = np.lexsort((np.arange(n), occ["id"], occ["event"]))
    ev_s, id_s = occ["event"][o], occ["id"][o]
    first = np.ones(n, bool)
    first[1:] = (ev_s[1:] != ev_s[:-1]) | (id_s[1:] != id_s[:-1])
    occ_u = np.empty(n, np.int64)
    occ_u[o] = np.cumsum(first) - 1
    first_occ = o[first]
    nu = first_occ.size
    meta["n_shared_cells"] = int(n - nu)
    u = {"event": occ["event"][first_occ], "id": occ["id"][first_occ],
         "e": np.bincount(occ_u, occ["e"], minlength=nu)}
    if h is not None:
        is_first = np.zeros(n, bool)
        is_first[first_occ] = True
        keep = is_first[h["occ"]]
        h = {k: v[keep] for k, v in h.items()}
        h["u"] = occ_u[h["occ"]]
    return u, occ_u, h


# ------------------------------------------------------------------------------------------------ step 6: mapping
def _map_to_geometry(u, h, cmap, geometry, p_off, meta):
    """pcloud cell rows (sorted by event, cell) from the unique file cells; returns (cells, row of each unique file
    cell or -1, hits on the rows)."""
    cell, reason, sigma = cmap.lookup(u["id"])
    sigma = np.where(np.isfinite(sigma), sigma, np.asarray(geometry.cells["noise_sigma_gev"])[np.maximum(cell, 0)])
    ok = cell >= 0
    n_cells = geometry.n_cells
    keys, inv = np.unique(u["event"][ok] * n_cells + cell[ok], return_inverse=True)
    u_row = np.full(cell.size, -1, np.int64)
    u_row[ok] = inv
    e_ok = u["e"][ok]
    cells = {"event": keys // n_cells, "id": keys % n_cells, "energy_gev": np.bincount(inv, e_ok, minlength=keys.size),
             "noise_sigma_gev": np.sqrt(np.bincount(inv, sigma[ok] ** 2, minlength=keys.size))}
    e_all = float(np.sum(u["e"]))
    meta["cell_mapping"] = {
        "mode": cmap.mode, "n_file_cells": int(cell.size), "n_mapped": int(ok.sum()), "n_pcloud_cells": int(keys.size),
        "n_dropped_no_layer": int((reason == NO_SUCH_LAYER).sum()), "n_dropped_outside": int((reason == OUTSIDE).sum()),
        "energy_file_cells_gev": e_all, "energy_dropped_gev": float(np.sum(u["e"][~ok])),
        "energy_fraction_dropped": float(np.sum(u["e"][~ok]) / e_all) if e_all > 0 else 0.0,
        "n_merged_into_shared_pcloud_cells": int(ok.sum() - keys.size)}
    if h is None:
        return cells, u_row, None
    row = u_row[h["u"]]
    m = row >= 0
    part = p_off[u["event"][h["u"][m]]] + h["local"][m]
    key, hinv = np.unique(row[m] * (int(p_off[-1]) + 1) + part, return_inverse=True)
    hits = {"cell": key // (int(p_off[-1]) + 1), "particle": key % (int(p_off[-1]) + 1),
            "energy_gev": np.bincount(hinv, h["e"][m], minlength=key.size),
            "energy_em_gev": np.bincount(hinv, h["em"][m], minlength=key.size)}
    return cells, u_row, hits


# ------------------------------------------------------------------------------------------------ step 7: particles
def _n_particles(a, n_ev, occ, h, t_event, t_local, path) -> np.ndarray:
    """Truth particles per event: from truthPartPdgId (indices checked against it), else enough placeholders."""
    if "truthPartPdgId" in a.fields:
        n_part = _num(a["truthPartPdgId"])
        if h is not None and h["local"].size:
            ev = occ["event"][h["occ"]]
            if np.any((h["local"] < 0) | (h["local"] >= n_part[ev])):
                raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "indices in [0, nTruthPart) of the "
                                  "event", f"values in [{h['local'].min()}, {h['local'].max()}]")
        bad = (t_local >= n_part[t_event]) | (t_local < -1)
        if bad.any():
            raise FormatError(path, "branch 'trackTruthParticleIndex'", "-1 or an index in [0, nTruthPart)",
                              f"{int(bad.sum())} indices outside")
        return n_part
    need = np.zeros(n_ev, np.int64)
    if h is not None and h["local"].size:
        if h["local"].min() < 0:
            raise FormatError(path, "branch 'cluster_cell_hitsTruthIndex'", "indices >= 0", "negative indices")
        np.maximum.at(need, occ["event"][h["occ"]], h["local"] + 1)
    if t_local.size:
        np.maximum.at(need, t_event, t_local + 1)
    return need


def _truth_particles(a, n_part, path, meta) -> dict:
    from ...core.particles import PDG_CHARGE

    NP = int(n_part.sum())

    def col(k, dtype=np.float64, fill=np.nan):
        if k not in a.fields:
            meta["missing_branches"].append(k)
            return np.full(NP, fill, dtype)
        v = _flat(a[k], dtype)
        if v.size != NP:
            raise FormatError(path, f"branch {k!r}", f"{NP} values (one per truth particle, as truthPartPdgId)",
                              f"{v.size}")
        return v

    pdg = col("truthPartPdgId", np.int64, 0)
    pt, e, eta, phi = col("truthPartPt"), col("truthPartE"), col("truthPartEta"), col("truthPartPhi")
    mass = col("truthPartMass")
    mass = np.where(np.isfinite(mass), mass, np.sqrt(np.maximum(e ** 2 - (pt * np.cosh(eta)) ** 2, 0.0)))
    keys = np.array(sorted(PDG_CHARGE))
    vals = np.array([PDG_CHARGE[k] for k in keys])
    j = np.clip(np.searchsorted(keys, pdg), 0, keys.size - 1)
    return {"event": np.repeat(np.arange(n_part.size), n_part), "pdg": pdg,
            "charge": np.where(keys[j] == pdg, vals[j], 0), "mass_gev": mass, "energy_gev": e,
            "px_gev": pt * np.cos(phi), "py_gev": pt * np.sin(phi), "pz_gev": pt * np.sinh(eta), "pt_gev": pt,
            "eta": eta, "phi": phi, "vertex_mm": np.full((NP, 3), np.nan), "parent": np.full(NP, -1, np.int64),
            "showered": np.zeros(NP, bool)}


# ------------------------------------------------------------------------------------------------ step 7: tracks
def _track_index(a, path, meta):
    """(event of each track, truth index of each track) from trackPt / trackTruthParticleIndex."""
    n_trk = _num(a["trackPt"])
    t_event = np.repeat(np.arange(n_trk.size), n_trk)
    if "trackTruthParticleIndex" not in a.fields:
        meta["missing_branches"].append("trackTruthParticleIndex")
        return t_event, np.full(t_event.size, -1, np.int64)
    t_local = _flat(a["trackTruthParticleIndex"], np.int64)
    if t_local.size != t_event.size:
        raise FormatError(path, "branch 'trackTruthParticleIndex'", f"{t_event.size} values (one per track)",
                          f"{t_local.size}")
    return t_event, t_local


def _tracks(a, geometry, layer_names, t_event, t_local, p_off, path, meta) -> dict:
    T = t_event.size

    def col(name, dtype=np.float64, fill=np.nan, record=True):
        if name not in a.fields:
            if record:
                meta["missing_branches"].append(name)
            return None if fill is None else np.full(T, fill, dtype)
        v = _flat(a[name], dtype)
        if v.size != T:
            raise FormatError(path, f"branch {name!r}", f"{T} values (one per track, as trackPt)", f"{v.size}")
        return v

    pt, eta, phi = col("trackPt"), col("trackEta"), col("trackPhi")
    p = col("trackP", fill=None)
    L = len(layer_names)
    lay = {c: np.full((T, L), np.nan) for c in ("eta", "phi", "x", "y", "z")}
    radii = np.concatenate([0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1]) for s in geometry.sections])
    for li, name in enumerate(layer_names):
        e_l, p_l = col(f"trackEta_{name}", record=False), col(f"trackPhi_{name}", record=False)
        if f"trackEta_{name}" not in a.fields or f"trackPhi_{name}" not in a.fields:
            meta["missing_branches"].append(f"trackEta_{name}/trackPhi_{name}")
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(e_l) & np.isfinite(p_l) & (e_l > NO_POINT_THRESHOLD) & (p_l > NO_POINT_THRESHOLD)
        lay["eta"][ok, li], lay["phi"][ok, li] = e_l[ok], p_l[ok]
        lay["x"][ok, li] = radii[li] * np.cos(p_l[ok])
        lay["y"][ok, li] = radii[li] * np.sin(p_l[ok])
        lay["z"][ok, li] = radii[li] * np.sinh(e_l[ok])
    return {"event": t_event, "particle": np.where(t_local >= 0, p_off[t_event] + t_local, -1), "pt_gev": pt,
            "p_gev": p if p is not None else pt * np.cosh(eta), "eta": eta, "phi": phi,
            "charge": col("trackCharge", np.int64, 0), "true_pt_gev": np.full(T, np.nan),
            "chi2": col("trackChiSquared"), "ndf": col("trackNumberDOF", np.int64, -1),
            "layer_eta": lay["eta"], "layer_phi": lay["phi"], "layer_x_mm": lay["x"], "layer_y_mm": lay["y"],
            "layer_z_mm": lay["z"], "layer_reached": np.isfinite(lay["eta"])}


# ------------------------------------------------------------------------------------------------ step 8: clusters
def _clusters(a, occ, occ_u, u_row, cells, geometry, path, meta):
    from ...core.clusters import TopoClusters

    K = occ["n_cells"].size
    n_rows = cells["id"].size
    row = u_row[occ_u]
    m = row >= 0
    key = np.unique(occ["cluster"][m] * (n_rows + 1) + row[m])
    cl, members = key // (n_rows + 1), key % (n_rows + 1)
    cell_cluster = np.full(n_rows, -1, np.int64)
    o = np.lexsort((cl, members))
    firsts = o[np.r_[True, members[o][1:] != members[o][:-1]]] if o.size else o
    cell_cluster[members[firsts]] = cl[firsts]
    n_cells = np.bincount(cl, minlength=K)

    def col(name):
        if name not in a.fields:
            meta["missing_branches"].append(name)
            return None
        v = _flat(a[name])
        if v.size != K:
            raise FormatError(path, f"branch {name!r}", f"{K} values (one per cluster of cluster_cell_ID)", f"{v.size}")
        return v

    energy, eta, phi = col("cluster_E"), col("cluster_Eta"), col("cluster_Phi")
    if energy is None:
        energy = np.bincount(occ["cluster"], occ["e"], minlength=K)
    if eta is None or phi is None:
        cid = cells["id"][row[m]]
        w = np.abs(occ["e"][m])
        c = occ["cluster"][m]
        sw = np.maximum(np.bincount(c, w, minlength=K), 1e-300)
        g_eta, g_phi = np.asarray(geometry.cells["eta"])[cid], np.asarray(geometry.cells["phi"])[cid]
        eta = np.bincount(c, w * g_eta, minlength=K) / sw
        phi = np.arctan2(np.bincount(c, w * np.sin(g_phi), minlength=K), np.bincount(c, w * np.cos(g_phi), minlength=K))
    n_file = _flat(a["cluster_nCells"], np.int64) if "cluster_nCells" in a.fields else None
    meta["n_clusters_without_cells"] = int((n_cells == 0).sum())
    return TopoClusters(n_events=occ["n_cl"].size, event=occ["cl_event"], energy_gev=energy, eta=eta, phi=phi,
                        n_cells=n_cells, cell_cluster=cell_cluster, cell_role=np.zeros(n_rows, np.int8),
                        members=members, member_offsets=_offsets(n_cells),
                        meta={"source": str(path), "cluster_nCells": n_file})


# ------------------------------------------------------------------------------------------------ driver
def _check_options(negative_truth, sigma_unit):
    if negative_truth not in NEGATIVE_TRUTH:
        raise ValueError(f"read_mltree: negative_truth must be one of {NEGATIVE_TRUTH}, found {negative_truth!r}")
    if sigma_unit not in SIGMA_UNIT_SCALE:
        raise ValueError(f"read_mltree: sigma_unit must be one of {sorted(SIGMA_UNIT_SCALE)}, found {sigma_unit!r}")


def _geometry(geometry):
    if geometry is None:
        from ...geometry import get_geometry
        return get_geometry("atlas")
    return geometry


def _layer_names(geometry) -> list:
    return [nm for s in geometry.sections for nm in (s.layer_names or [f"{s.name}_{i}" for i in range(s.n_layers)])]


def _read_entries(t, path, geometry, cmap, cell_geo, start, stop, negative_truth, container):
    """Steps 1 (branch data) and 3-8 for one entry range."""
    from ...core.events import TrackCellEvents

    meta = {"file": str(path), "container": container, "missing_branches": [], "n_negative_truth": 0,
            "n_shared_cells": 0, "n_truncated_hit_lists": 0}
    layer_names = _layer_names(geometry)
    a = _event_arrays(t, path, layer_names, start, stop)
    n_ev = len(a)
    occ = _cluster_occurrences(a, path)
    t_event, t_local = _track_index(a, path, meta)
    h = _cell_truth(a, occ, path, meta, negative_truth)
    n_part = _n_particles(a, n_ev, occ, h, t_event, t_local, path)
    if h is not None:
        h = _negative_truth(h, path, meta, negative_truth)
    particles = _truth_particles(a, n_part, path, meta)
    p_off = _offsets(n_part)
    u, occ_u, h = _merge_shared(occ, h, meta)
    cells, u_row, hits = _map_to_geometry(u, h, cmap, geometry, p_off, meta)
    if hits is None:
        hits = {"cell": np.zeros(0, np.int64), "particle": np.zeros(0, np.int64), "energy_gev": np.zeros(0),
                "energy_em_gev": np.zeros(0)}
        cells["true_energy_gev"] = np.full(cells["id"].size, np.nan)
    else:
        cells["true_energy_gev"] = np.bincount(hits["cell"], hits["energy_gev"], minlength=cells["id"].size)
    particles["showered"][hits["particle"]] = True
    tracks = _tracks(a, geometry, layer_names, t_event, t_local, p_off, path, meta)
    clusters = _clusters(a, occ, occ_u, u_row, cells, geometry, path, meta)
    first = 0 if start is None else int(start)
    en = _flat(a["eventNumber"], np.int64) if "eventNumber" in a.fields else first + np.arange(n_ev)
    if "eventNumber" not in a.fields:
        meta["missing_branches"].append("eventNumber")
    meta["defaults"] = {k: DEFAULTS.get(k.split("/")[0] if not k.startswith("trackEta_") else "trackEta_<layer>",
                                        "") for k in meta["missing_branches"]}
    events = TrackCellEvents(n_events=n_ev, geometry_name=geometry.name, layer_names=layer_names, particles=particles,
                             parents={k: np.zeros(0) for k in ("event", "pdg")}, tracks=tracks, cells=cells, hits=hits,
                             meta={"source": str(path), "event_number": en})
    return MLTreeData(events=events, clusters=clusters, cell_geo=cell_geo, meta=meta)


@contextlib.contextmanager
def _opened(path, geometry, tree, geo, sigma_unit):
    """(file, event tree, geometry, cell map, CellGeo columns, container) of an MLTree file, closed afterwards."""
    f = _open_root(path)
    try:
        t = _tree(f, tree, path)
        container = "rntuple" if "RNTuple" in type(t).__name__ else "ttree"
        cell_geo = _read_cell_geo(f, path, geo, sigma_unit)
        g = _geometry(geometry)
        yield t, g, build_cellmap(cell_geo, g, geo or path), cell_geo, container
    finally:
        f.close()


def read_mltree(path, geometry=None, negative_truth: str = "drop", tree: str = "EventTree", geo=None,
                sigma_unit: str = "MeV", entry_start: int | None = None, entry_stop: int | None = None) -> MLTreeData:
    """Read an MLTree file onto ``geometry`` (default: pcloud's ``atlas``); the steps are in the module docstring.

    ``geo``: a separate ROOT file holding the CellGeo tree (JetPointNet's ``GEO_FILE_LOC``). ``negative_truth``:
    negative calibration-hit energies are dropped (default), clipped to 0, kept or an error. ``sigma_unit``: unit of
    the CellGeo noise (MeV in Athena and pcloud files). ``entry_start``/``entry_stop``: event range.
    """
    _check_options(negative_truth, sigma_unit)
    with _opened(path, geometry, tree, geo, sigma_unit) as (t, g, cmap, cell_geo, container):
        return _read_entries(t, Path(path), g, cmap, cell_geo, entry_start, entry_stop, negative_truth,
                             container)


def iter_mltree(path, chunk_events: int = 1000, geometry=None, negative_truth: str = "drop", tree: str = "EventTree",
                geo=None, sigma_unit: str = "MeV"):
    """:class:`MLTreeData` of consecutive chunks of ``chunk_events`` events (the file is opened and its CellGeo mapped
    once); event numbers from ``eventNumber``."""
    _check_options(negative_truth, sigma_unit)
    if chunk_events < 1:
        raise ValueError(f"iter_mltree: chunk_events must be >= 1, found {chunk_events}")
    with _opened(path, geometry, tree, geo, sigma_unit) as (t, g, cmap, cell_geo, container):
        n = int(t.num_entries)
        for a in range(0, n, chunk_events):
            yield _read_entries(t, Path(path), g, cmap, cell_geo, a, min(a + chunk_events, n), negative_truth,
                                container)
