"""Writing MLTree files as Athena's MLTreeMaker does (branch list and units in :mod:`pcloud.io.mltree.layout`).

What pcloud writes, and where it follows Athena (MLTreeMaker.cxx, master 5fb825d) or deviates:

* Clusters: the topo-clusters given, in their order (pcloud numbers them by decreasing energy per event, as
  MLTreeMaker does), with MLTreeMaker's cluster selection E >= ``ClusterEmin`` = 0 (negative-energy noise clusters
  are not stored). ``cluster_E_LCCalib`` equals the EM-scale ``cluster_E``: pcloud has no local hadronic
  calibration. ``cluster_nCells`` is the size of the cluster before the cell threshold (as ``cluster->size()``).
* Cells: a cluster cell is stored when its energy is >= ``CellEthres`` = 5 MeV (``cell_threshold_gev``); the cells
  below are counted in the returned :class:`MLTreeWritten`. pcloud clusters do not share cells, so every cell ID
  appears once per event (JetPointNet's fork crashes on repeated IDs under numpy 2; Athena's split clusters do
  repeat them, which :func:`pcloud.io.mltree.read_mltree` handles).
* Per-cell truth: one (index, energy) list per *stored* cell, so the hit lists have exactly the length of the cell
  lists (both JetPointNet versions accept that; Athena's lists are ``cluster_nCells`` long with empty tails, which
  only the original version truncates). Contributions are ordered by increasing energy (Athena's order); all are
  kept by default (Athena keeps ``TruthParticlesPerCellLimt`` = 3 of them, the three *smallest* because of its
  comparator); ``max_truth_per_cell=N`` keeps the N largest. Energies in **MeV** as Athena's ``energyTotal()``.
* ``cluster_cell_hitsE_EM / nonEM`` from pcloud's EM / non-EM truth split; ``Invisible`` and ``Escaped`` are 0
  (the fast simulation has no invisible or escaping calibration hits).
* Tracks: all 21 ``trackEta_/trackPhi_`` layers; the ones pcloud's geometry lacks (presamplers, end-caps, HEC,
  gap and extended-barrel Tile) hold the sentinel -999999999, like a track without an intersection.
  ``trackSubtractedCaloEnergy`` (MeV) comes from the caller (e.g. the rule-based E/p subtraction), else -999.
  ``trackVisibleCalHitCaloEnergy`` = ``trackFullCalHitCaloEnergy`` = true deposits of the track's particle in the
  stored cells (GeV). ``trackMass`` is the charged-pion mass (ATLAS tracks are fitted with the pion hypothesis).
* CellGeo: every cell of the geometry, ``cell_geo_ID`` = pcloud flat cell index (strictly increasing, < 2^31),
  CaloSampling numbers by layer name, exact volume of the projective cell
  ``dphi (r1^3 - r0^3) (sinh eta1 - sinh eta0) / 3`` (mm^3), noise in MeV.
* Event scalars: ``runNumber`` 0, ``lumiBlock`` 0, ``coreFlags`` 0, ``mcChannelNumber`` 0, ``mcEventWeight`` 1,
  ``eventNumber`` = ``mcEventNumber`` = ``events.meta["event_number"]`` (default 0..N-1).

Containers: ``"ttree"`` (default) writes real TTrees through ROOT (:mod:`~pcloud.io.mltree.root_writer`, the
``root`` extra); ``"rntuple"`` writes the same columns as RNTuples with uproot (exact nesting, no ROOT needed; read
by uproot >= 5.4 and ROOT >= 6.34, not by JetPointNet's pinned uproot 5.3).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.atomic import atomic_output
from ...core.particles import M_PI_CHARGED
from .layout import CALO_SAMPLING, CELL_THRESHOLD_GEV, NO_POINT, NO_SUBTRACTION_MEV, TRACK_LAYERS
from .root_writer import Column, write_trees

CONTAINERS = ("ttree", "rntuple")


@dataclass
class MLTreeWritten:
    """What :func:`write_mltree` wrote (usable as a path: ``os.fspath``, ``read_mltree(written)``)."""

    path: Path
    container: str
    n_events: int
    n_tracks: int
    n_clusters: int
    n_cells: int
    n_cells_below_threshold: int
    energy_below_threshold_gev: float
    n_clusters_negative: int
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)

    def __fspath__(self) -> str:
        return str(self.path)


def _offsets(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))]).astype(np.int64)


def written_cell_mask(events, clusters, cell_threshold_gev: float = CELL_THRESHOLD_GEV,
                      cluster_e_min_gev: float | None = 0.0) -> np.ndarray:
    """Rows of ``events.cells`` that :func:`write_mltree` stores: members of a kept cluster with E >= threshold."""
    keep_cl = _kept_clusters(clusters, cluster_e_min_gev)
    cc = clusters.cell_cluster
    m = cc >= 0
    m[m] = keep_cl[cc[m]]
    return m & (np.asarray(events.cells["energy_gev"]) >= cell_threshold_gev)


def _kept_clusters(clusters, cluster_e_min_gev) -> np.ndarray:
    e = np.asarray(clusters.energy_gev, np.float64)
    return np.ones(e.size, bool) if cluster_e_min_gev is None else e >= cluster_e_min_gev


def _check_inputs(events, clusters, geometry, container, write_cell_geo, subtracted_energy_mev):
    if container not in CONTAINERS:
        raise ValueError(f"write_mltree: container must be one of {CONTAINERS}, found {container!r}")
    unknown = [lay for lay in events.layer_names if lay not in TRACK_LAYERS]
    if unknown:
        raise ValueError(f"write_mltree: event layers {unknown} are not MLTree track layers {list(TRACK_LAYERS)}")
    if clusters.cell_cluster.size != events.cells["id"].size:
        raise ValueError(f"write_mltree: clusters were built on {clusters.cell_cluster.size} cell rows, events have "
                         f"{events.cells['id'].size}")
    if write_cell_geo and geometry is None:
        raise ValueError("write_mltree: write_cell_geo=True needs the geometry")
    if geometry is not None:
        if any(s.kind != "etaphi" for s in geometry.sections):
            raise ValueError(f"write_mltree: MLTree files need an eta-phi geometry (atlas), found {geometry.name!r}")
        if getattr(events, "geometry_name", geometry.name) != geometry.name:
            raise ValueError(f"write_mltree: events were made in geometry {events.geometry_name!r}, given "
                             f"{geometry.name!r}")
    n_trk = events.tracks["event"].size
    if subtracted_energy_mev is not None and np.shape(subtracted_energy_mev) != (n_trk,):
        raise ValueError(f"write_mltree: subtracted_energy_mev must have one value per track ({n_trk}), found shape "
                         f"{np.shape(subtracted_energy_mev)}")


def _event_columns(events) -> list:
    n = events.n_events
    en = np.asarray(events.meta.get("event_number", np.arange(n)), np.int64)
    if en.shape != (n,):
        raise ValueError(f"write_mltree: events.meta['event_number'] must have {n} values, found shape {en.shape}")
    zeros = np.zeros(n)
    return [Column("runNumber", "int", zeros), Column("eventNumber", "long", en), Column("lumiBlock", "int", zeros),
            Column("coreFlags", "uint", zeros), Column("mcEventNumber", "int", en),
            Column("mcChannelNumber", "int", zeros), Column("mcEventWeight", "float", np.ones(n))]


def _truth_columns(events) -> list:
    P = events.particles
    off = events.particle_offsets
    local = np.arange(P["event"].size) - off[P["event"]]
    v = lambda name, kind, x: Column(name, kind, x, (off,))  # noqa: E731
    return [Column("nTruthPart", "int", np.diff(off)), v("truthPartPdgId", "int", P["pdg"]),
            v("truthPartStatus", "int", np.ones(local.size)), v("truthPartBarcode", "int", local + 1),
            v("truthPartPt", "float", P["pt_gev"]), v("truthPartE", "float", P["energy_gev"]),
            v("truthPartMass", "float", P["mass_gev"]), v("truthPartEta", "float", P["eta"]),
            v("truthPartPhi", "float", P["phi"])]


def _track_columns(events, hits_sel, subtracted_energy_mev) -> list:
    """Track branches; ``hits_sel`` are the hit rows of the stored cells (for the calibration-hit sums)."""
    T, H = events.tracks, events.hits
    off = events.track_offsets
    n = T["event"].size
    v = lambda name, kind, x: Column(name, kind, x, (off,))  # noqa: E731
    local_p = T["particle"] - events.particle_offsets[T["event"]]
    per_particle = np.bincount(H["particle"][hits_sel], H["energy_gev"][hits_sel],
                               minlength=events.particles["event"].size)
    calhit = np.where(T["particle"] >= 0, per_particle[np.maximum(T["particle"], 0)], 0.0)
    sub = np.full(n, NO_SUBTRACTION_MEV) if subtracted_energy_mev is None else subtracted_energy_mev
    cols = [Column("nTrack", "int", np.diff(off)), v("trackPt", "float", T["pt_gev"]), v("trackP", "float", T["p_gev"]),
            v("trackMass", "float", np.full(n, M_PI_CHARGED)), v("trackEta", "float", T["eta"]),
            v("trackPhi", "float", T["phi"]),
            v("trackTruthParticleIndex", "int", np.where(T["particle"] >= 0, local_p, -1)),
            v("trackVisibleCalHitCaloEnergy", "float", calhit), v("trackFullCalHitCaloEnergy", "float", calhit),
            v("trackSubtractedCaloEnergy", "float", sub), v("trackChiSquared", "float", T["chi2"]),
            v("trackNumberDOF", "int", T["ndf"]), v("trackD0", "float", T.get("d0_mm", np.zeros(n))),
            v("trackZ0", "float", T.get("z0_mm", np.zeros(n))), v("trackCharge", "int", T["charge"])]
    names = list(events.layer_names)
    for lay in TRACK_LAYERS:
        eta = phi = np.full(n, NO_POINT)
        if lay in names:
            li = names.index(lay)
            ok = np.asarray(T["layer_reached"][:, li], bool) & np.isfinite(T["layer_eta"][:, li]) \
                & np.isfinite(T["layer_phi"][:, li])
            eta = np.where(ok, T["layer_eta"][:, li], NO_POINT)
            phi = np.where(ok, T["layer_phi"][:, li], NO_POINT)
        cols += [v(f"trackEta_{lay}", "float", eta), v(f"trackPhi_{lay}", "float", phi)]
    return cols


def _cell_hits(events, rows, max_truth_per_cell):
    """Hit rows of the cells ``rows`` (in that order), per cell by increasing energy, and their counts per cell."""
    H = events.hits
    n_cells = events.cells["id"].size
    order = np.lexsort((-H["energy_gev"], H["cell"]))           # per cell: largest first
    start = np.searchsorted(H["cell"][order], np.arange(n_cells + 1))
    cnt = (start[1:] - start[:-1])[rows]
    if max_truth_per_cell is not None:
        cnt = np.minimum(cnt, int(max_truth_per_cell))
    first = np.repeat(start[:-1][rows] - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
    rank = np.arange(first.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    # reverse within each cell: increasing energy, as Athena stores them
    rev = np.repeat(np.cumsum(cnt) - cnt, cnt) + (np.repeat(cnt, cnt) - 1 - rank)
    return order[first[rev]], cnt


def _cluster_columns(events, clusters, keep_cl, cell_keep, max_truth_per_cell):
    """Cluster and cell-in-cluster branches; returns (columns, stored cell rows in cluster order)."""
    n_ev = events.n_events
    kc = np.nonzero(keep_cl)[0]
    ev_off = _offsets(np.bincount(clusters.event[kc], minlength=n_ev))
    mo = clusters.member_offsets
    owner = np.repeat(np.arange(mo.size - 1), np.diff(mo))
    mem = clusters.members
    ok = keep_cl[owner] & cell_keep[mem]
    rows = mem[ok]                                              # stored cells, cluster by cluster
    cl_off = _offsets(np.bincount(owner[ok], minlength=mo.size - 1)[kc])
    hit_rows, hcnt = _cell_hits(events, rows, max_truth_per_cell)
    cell_off = _offsets(hcnt)
    C, H = events.cells, events.hits
    e_c, eta_c = np.asarray(clusters.energy_gev)[kc], np.asarray(clusters.eta)[kc]
    em = np.bincount(H["cell"], H["energy_em_gev"], minlength=C["id"].size)[rows]
    tot = np.bincount(H["cell"], H["energy_gev"], minlength=C["id"].size)[rows]
    local_p = H["particle"][hit_rows] - events.particle_offsets[C["event"][H["cell"][hit_rows]]]
    v1 = lambda name, kind, x: Column(name, kind, x, (ev_off,))  # noqa: E731
    v2 = lambda name, kind, x: Column(name, kind, x, (ev_off, cl_off))  # noqa: E731
    v3 = lambda name, kind, x: Column(name, kind, x, (ev_off, cl_off, cell_off))  # noqa: E731
    cols = [Column("nCluster", "int", np.diff(ev_off)), v1("cluster_E", "float", e_c),
            v1("cluster_E_LCCalib", "float", e_c), v1("cluster_Pt", "float", e_c / np.cosh(eta_c)),
            v1("cluster_Eta", "float", eta_c), v1("cluster_Phi", "float", np.asarray(clusters.phi)[kc]),
            v1("cluster_nCells", "int", np.asarray(clusters.n_cells)[kc]),
            v2("cluster_cell_ID", "ulong", C["id"][rows]), v2("cluster_cell_E", "float", C["energy_gev"][rows]),
            v2("cluster_cell_hitsE_EM", "float", em), v2("cluster_cell_hitsE_nonEM", "float", tot - em),
            v2("cluster_cell_hitsE_Invisible", "float", np.zeros(rows.size)),
            v2("cluster_cell_hitsE_Escaped", "float", np.zeros(rows.size)),
            v3("cluster_cell_hitsTruthIndex", "int", local_p),
            v3("cluster_cell_hitsTruthE", "float", 1e3 * H["energy_gev"][hit_rows]),
            v3("cluster_cell_hitsTruthE_EM", "float", 1e3 * H["energy_em_gev"][hit_rows])]
    return cols, rows


def cell_volume_mm3(geometry) -> np.ndarray:
    """Volume (mm^3) of every cell of an eta-phi geometry: the projective cell between radii r0 and r1, eta0 and
    eta1 (z = r sinh eta) and azimuth width dphi has volume dphi (r1^3 - r0^3) (sinh eta1 - sinh eta0) / 3."""
    c = geometry.cells
    r0 = c["depth_mm"] - 0.5 * c["thickness_mm"]
    r1 = c["depth_mm"] + 0.5 * c["thickness_mm"]
    return c["dv"] * (r1 ** 3 - r0 ** 3) * (np.sinh(c["u"] + 0.5 * c["du"]) - np.sinh(c["u"] - 0.5 * c["du"])) / 3.0


def _cell_geo_columns(geometry) -> list:
    c = geometry.cells
    names = [nm for s in geometry.sections for nm in (s.layer_names or [f"{s.name}_{i}" for i in range(s.n_layers)])]
    unknown = [nm for nm in names if nm not in CALO_SAMPLING]
    if unknown:
        raise ValueError(f"write_mltree: geometry layers {unknown} have no ATLAS CaloSampling number")
    samp = np.array([CALO_SAMPLING[nm] for nm in names])[c["layer"]]
    off = np.array([0, geometry.n_cells], np.int64)
    v = lambda name, kind, x: Column(name, kind, x, (off,))  # noqa: E731
    return [v("cell_geo_ID", "ulong", np.arange(geometry.n_cells)), v("cell_geo_sampling", "ushort", samp),
            v("cell_geo_eta", "float", c["eta"]), v("cell_geo_phi", "float", c["phi"]),
            v("cell_geo_rPerp", "float", np.hypot(c["x"], c["y"])), v("cell_geo_deta", "float", c["du"]),
            v("cell_geo_dphi", "float", c["dv"]), v("cell_geo_volume", "float", cell_volume_mm3(geometry)),
            v("cell_geo_sigma", "float", 1e3 * c["noise_sigma_gev"])]


def _to_awkward(col: Column):
    import awkward as ak

    if not col.offsets:
        return col.values
    content = ak.contents.NumpyArray(col.values)
    for off in reversed(col.offsets):
        content = ak.contents.ListOffsetArray(ak.index.Index64(off), content)
    return ak.Array(content)


def write_rntuples(path, trees) -> None:
    """The same trees as :func:`~pcloud.io.mltree.root_writer.write_trees`, as RNTuples written by uproot."""
    import uproot

    with uproot.recreate(path) as f:
        for name, _title, _n, columns in trees:
            f.mkrntuple(name, {c.name: _to_awkward(c) for c in columns})


def write_mltree(path, events, clusters, geometry=None, container: str = "ttree", subtracted_energy_mev=None,
                 cell_threshold_gev: float = CELL_THRESHOLD_GEV, cluster_e_min_gev: float | None = 0.0,
                 max_truth_per_cell: int | None = None, write_cell_geo: bool = True) -> MLTreeWritten:
    """Write events (:class:`pcloud.core.events.TrackCellEvents`) and their topo-clusters
    (:class:`pcloud.core.clusters.TopoClusters` on ``events.cells`` rows) as an MLTree file, atomically.

    ``subtracted_energy_mev``: per track, ``trackSubtractedCaloEnergy`` (MeV; default -999). ``cell_threshold_gev``
    (Athena 0.005) and ``cluster_e_min_gev`` (Athena 0; None keeps every cluster) select what is stored;
    ``max_truth_per_cell`` keeps the N largest truth contributions of a cell (default all). See the module docstring
    for every branch and the container choice.
    """
    t0 = time.perf_counter()
    _check_inputs(events, clusters, geometry, container, write_cell_geo, subtracted_energy_mev)
    keep_cl = _kept_clusters(clusters, cluster_e_min_gev)
    stored = written_cell_mask(events, clusters, cell_threshold_gev, cluster_e_min_gev)
    cl_cols, rows = _cluster_columns(events, clusters, keep_cl, stored, max_truth_per_cell)
    hits_sel = stored[events.hits["cell"]]
    cols = _event_columns(events) + _truth_columns(events) + \
        _track_columns(events, hits_sel, subtracted_energy_mev) + cl_cols
    trees = [("EventTree", "EventTree", events.n_events, cols)]
    if write_cell_geo:
        trees.append(("CellGeo", "CellGeo", 1, _cell_geo_columns(geometry)))
    with atomic_output(path, suffix=".root") as tmp:
        (write_trees if container == "ttree" else write_rntuples)(tmp, trees)
    in_kept = clusters.cell_cluster >= 0
    in_kept[in_kept] = keep_cl[clusters.cell_cluster[in_kept]]
    below = in_kept & ~stored
    return MLTreeWritten(path=Path(os.fspath(path)), container=container, n_events=int(events.n_events),
                         n_tracks=int(events.tracks["event"].size), n_clusters=int(keep_cl.sum()),
                         n_cells=int(rows.size), n_cells_below_threshold=int(below.sum()),
                         energy_below_threshold_gev=float(np.sum(events.cells["energy_gev"][below])),
                         n_clusters_negative=int((~keep_cl).sum()), seconds=time.perf_counter() - t0,
                         notes={"cell_threshold_gev": cell_threshold_gev, "cluster_e_min_gev": cluster_e_min_gev,
                                "max_truth_per_cell": max_truth_per_cell})
