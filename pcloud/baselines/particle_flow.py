"""Non-learned particle-flow baselines; every one returns an :class:`~pcloud.core.attribution.Attribution`.

* :func:`rule_based` — topo-clusters + the ATLAS cell-based E/p subtraction (seed 002, backup slide "ATLAS p-flow
  algorithm [ATL-PERF-2015-09]"; ATLAS Collaboration, "Jet reconstruction and performance using particle flow with
  the ATLAS Detector", Eur. Phys. J. C 77 (2017) 466, section 6). Details and simplifications below.
* :func:`dr_nearest` — each cell within DeltaR < dr_max of a track goes wholly to the nearest track.
* :func:`random_baseline` — class-balanced ("smart") random: a cell within dr_max of a track is charged with the
  training-split probability, then given to one of the tracks within dr_max at random.
* :func:`trivial` — every cell to the majority class of the training split (all neutral, or all to the nearest
  track).

Distances: DeltaR between a cell centre and a track is measured to the track's extrapolated point *in the cell's
layer* (``events.tracks["layer_eta"/"layer_phi"]``), DeltaR^2 = Delta eta^2 + Delta phi^2 (phi wrapped). Only cells
with measured energy > 0 are ever attributed (cells at or below zero are noise and stay neutral, as the
Attribution contract requires); every baseline gives a cell either wholly or (rule-based ring scaling) partly to
one track, so sum(attributed) <= E_cell holds by construction.

Rule-based algorithm (vectorised: tracks are processed in order of decreasing pT, the k-th track of *every* event at
once, so the loop runs max(tracks per event) times)
-----------------------------------------------------------------------------------------------------------------
Cell energies ``rem`` start at the measured energies; each step works on what earlier tracks left.

1. Track selection: pT > ``pt_min_gev`` (0.5 GeV) and pT < ``pt_max_gev`` (ATLAS: 40 GeV; default no upper cut
   here, so every track of the benchmark is attributed), track reaching the second EM layer (EMB2).
2. Matching: topo-clusters with E_clus / p_trk > 0.1 are candidates; the distance is
   DeltaR' = sqrt((Delta eta / sigma_eta)^2 + (Delta phi / sigma_phi)^2) between the track extrapolated to EMB2 and
   the cluster centroid, with sigma_eta, sigma_phi the energy-weighted spreads of the cluster's cell centres
   (floored at ``min_cluster_width`` = 0.05 — our floor: single-cell clusters have zero width). The closest cluster
   with DeltaR' < 1.64 is matched (EPJC 77 (2017) 466, section 6.3); no match: the track takes nothing.
3. Expected deposit <E_dep> = p_trk <E/p>(p, |eta|) and its spread sigma(E_dep) = p_trk sigma(E/p)(p, |eta|) from
   :class:`EOpTable` (fitted on single charged pions of this fast simulation, see :func:`fit_eop_table`; ATLAS also
   bins in the layer of highest energy density, LHED, which we do not).
4. Split showers: if S = (E_matched - <E_dep>) / sigma(E_dep) < -1, further clusters whose centroid lies within
   DeltaR < 0.2 of the track are added in order of increasing DeltaR' until S >= -1 (section 6.4).
5. Subtraction (section 6.5): if <E_dep> >= E_matched, every positive cell of the matched clusters goes to the track.
   Otherwise cells are removed ring by ring: in every layer, rings around the extrapolated track of width = the
   layer's cell pitch sqrt(Delta eta Delta phi); layers are processed in order of decreasing energy density
   (sum of E_cell / V_cell of the matched cells in the layer; the densest layer is the LHED) and, within a layer,
   rings in order of increasing radius. Whole rings are taken while the running sum stays below <E_dep>; the ring
   that crosses it is scaled by the fraction still needed.
6. Remnant: if what is left of the matched clusters, E_matched - <E_dep>, is below 1.5 sigma(E_dep), the remaining
   positive cells of the matched clusters are given to the track as well (section 6.5).

Not done (documented simplifications): LHED binning of <E/p>, pile-up, the cluster splitter, and the special
treatment of high-pT tracks in dense cores (the "track-in-dense-environment" veto).

The E/p table
-------------
``EOP_TABLE`` below was made with ``fit_eop_table(get_geometry("atlas"), n_pions=40000, seed=2024)``: single pi+ and
pi- (equal numbers) with p log-uniform in [1, 200] GeV, eta uniform in [-1.35, 1.35], phi uniform, simulated with
:func:`pcloud.sim.events.simulate_events` (deposit mode "total", cell noise, the same noise window as the
benchmark events), topo-clustered (4/2/0), and E_ref = the summed energy of the topo-clusters whose centroid lies
within DeltaR < 0.2 of the track at EMB2 (the ATLAS reference definition). <E/p> is the mean of E_ref / p_trk and
sigma(E/p) its standard deviation, in bins of p (log edges) and |eta|; :meth:`EOpTable.expected` interpolates
linearly in log p between bin centres (constant beyond the ends) and takes the |eta| bin as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.attribution import Attribution, truth_attribution
from ..core.events import TruthParticles
from ..core.particles import M_PI_CHARGED
from ..geometry import get_geometry
from ..geometry.base import wrap_phi as _wrap
from ..pflow.topocluster import topo_cluster_events
from ..sim.events import simulate_events

# ------------------------------------------------------------------------------------------------ the E/p table
#: Shipped <E/p> table; regenerate with ``fit_eop_table(get_geometry("atlas"), n_pions=40000, seed=2024).to_dict()``.
EOP_TABLE: dict = {
    'p_centres_gev': [1.45622, 2.47298, 3.9141, 5.94785, 8.43391, 12.32225, 17.36883, 24.73132, 39.16274,
                      61.92922, 91.20446, 148.19366],
    'abs_eta_edges': [0.0, 0.45, 0.9, 1.4],
    'eop_mean': [
        [0.24732, 0.21918, 0.22703],
        [0.45244, 0.42223, 0.43858],
        [0.53451, 0.50923, 0.49942],
        [0.58088, 0.56064, 0.5352],
        [0.60385, 0.58788, 0.5662],
        [0.63235, 0.61343, 0.5924],
        [0.66695, 0.63676, 0.61876],
        [0.6809, 0.64951, 0.63782],
        [0.70508, 0.6789, 0.65548],
        [0.72276, 0.69995, 0.68032],
        [0.74084, 0.72442, 0.68831],
        [0.75285, 0.73802, 0.71298],
    ],
    'eop_sigma': [
        [0.25398, 0.24064, 0.23452],
        [0.18223, 0.1741, 0.16975],
        [0.14105, 0.14445, 0.14243],
        [0.13561, 0.13145, 0.13928],
        [0.12951, 0.12815, 0.14116],
        [0.12433, 0.13011, 0.14283],
        [0.12194, 0.1327, 0.14318],
        [0.12168, 0.13062, 0.14293],
        [0.12087, 0.12827, 0.14047],
        [0.11263, 0.1266, 0.14051],
        [0.11792, 0.12426, 0.14254],
        [0.12632, 0.12872, 0.14174],
    ],
    'n': [
        [1739, 1732, 1576],
        [1037, 1082, 994],
        [1278, 1273, 1248],
        [832, 780, 885],
        [913, 849, 918],
        [1003, 995, 1028],
        [797, 723, 767],
        [979, 1000, 1032],
        [1295, 1261, 1264],
        [1030, 1017, 1044],
        [985, 944, 977],
        [1451, 1410, 1421],
    ],
    'meta': {'geometry': 'atlas', 'n_pions': 40000, 'seed': 2024, 'p_range_gev': [1.0, 200.0],
             'p_edges_gev': [1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 110.0, 200.0],
             'cone_dr': 0.2, 'simulation': "pcloud parametrised fast simulation, deposit mode 'total', with noise"},
}


@dataclass
class EOpTable:
    """<E_dep/p> and sigma(E_dep/p) of single charged pions in bins of (p, |eta|).

    ``p_centres_gev`` (n_p,): mean p of the pions in each p bin (GeV); ``abs_eta_edges`` (n_eta + 1,);
    ``eop_mean``, ``eop_sigma``, ``n`` (n_p, n_eta).
    """

    p_centres_gev: np.ndarray
    abs_eta_edges: np.ndarray
    eop_mean: np.ndarray
    eop_sigma: np.ndarray
    n: np.ndarray
    meta: dict | None = None

    def __post_init__(self):
        self.p_centres_gev = np.asarray(self.p_centres_gev, np.float64)
        self.abs_eta_edges = np.asarray(self.abs_eta_edges, np.float64)
        self.eop_mean = np.asarray(self.eop_mean, np.float64)
        self.eop_sigma = np.asarray(self.eop_sigma, np.float64)
        self.n = np.asarray(self.n, np.int64)
        shape = (self.p_centres_gev.size, self.abs_eta_edges.size - 1)
        for k in ("eop_mean", "eop_sigma", "n"):
            if getattr(self, k).shape != shape:
                raise ValueError(f"EOpTable: {k} must have shape {shape} (p bins, |eta| bins), found "
                                 f"{getattr(self, k).shape}")
        if not np.all(np.isfinite(self.eop_mean)) or not np.all(self.eop_sigma > 0):
            raise ValueError("EOpTable: eop_mean must be finite and eop_sigma > 0 in every bin (refit with more pions)")
        if np.any(np.diff(self.p_centres_gev) <= 0):
            raise ValueError("EOpTable: p_centres_gev must increase")

    def expected(self, p_gev, eta) -> tuple[np.ndarray, np.ndarray]:
        """(<E_dep>, sigma(E_dep)) in GeV for tracks of momentum ``p_gev`` (GeV) and pseudorapidity ``eta``."""
        p = np.asarray(p_gev, np.float64)
        ae = np.abs(np.asarray(eta, np.float64))
        ib = np.clip(np.searchsorted(self.abs_eta_edges, ae, side="right") - 1, 0, self.abs_eta_edges.size - 2)
        lp = np.log(np.clip(p, 1e-3, None))
        lx = np.log(self.p_centres_gev)
        mean = np.empty_like(p)
        sig = np.empty_like(p)
        for b in range(self.abs_eta_edges.size - 1):  # loop over the few |eta| bins
            m = ib == b
            mean[m] = np.interp(lp[m], lx, self.eop_mean[:, b])
            sig[m] = np.interp(lp[m], lx, self.eop_sigma[:, b])
        return mean * p, sig * p

    def to_dict(self) -> dict:
        r = lambda a: np.round(np.asarray(a, np.float64), 5).tolist()  # noqa: E731
        return {"p_centres_gev": r(self.p_centres_gev), "abs_eta_edges": r(self.abs_eta_edges),
                "eop_mean": r(self.eop_mean), "eop_sigma": r(self.eop_sigma), "n": self.n.tolist(),
                "meta": dict(self.meta or {})}

    @classmethod
    def from_dict(cls, d: dict) -> "EOpTable":
        need = ("p_centres_gev", "abs_eta_edges", "eop_mean", "eop_sigma", "n")
        miss = [k for k in need if k not in d]
        if miss:
            raise ValueError(f"EOpTable.from_dict: missing keys {miss}; expected {list(need)}")
        return cls(*(d[k] for k in need), meta=d.get("meta"))


def default_eop_table() -> EOpTable:
    """The shipped table :data:`EOP_TABLE` (fitted on the ``atlas`` geometry, see the module docstring)."""
    if not EOP_TABLE:
        raise RuntimeError("default_eop_table: EOP_TABLE is empty; run fit_eop_table(get_geometry('atlas'))")
    return EOpTable.from_dict(EOP_TABLE)




def _layer_index(events, name: str) -> int:
    names = list(events.layer_names)
    if name not in names:
        raise ValueError(f"events have layers {names}; the rule-based baseline needs {name!r}")
    return names.index(name)


def _track_ref_point(events, layer: str = "EMB2") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eta, phi, reached) of every track at ``layer``."""
    li = _layer_index(events, layer)
    t = events.tracks
    reached = np.asarray(t["layer_reached"][:, li], bool) & np.isfinite(t["layer_eta"][:, li])
    return t["layer_eta"][:, li], t["layer_phi"][:, li], reached


def fit_eop_table(geometry, n_pions: int = 40000, seed: int = 2024, p_range_gev=(1.0, 200.0),
                  p_edges_gev=(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 110, 200), abs_eta_edges=(0.0, 0.45, 0.9, 1.4),
                  eta_max: float = 1.35, cone_dr: float = 0.2, chunk: int = 5000) -> EOpTable:
    """Fit <E/p> and sigma(E/p) of single charged pions in (p, |eta|) bins (see the module docstring)."""

    if n_pions < 10 * (len(p_edges_gev) - 1) * (len(abs_eta_edges) - 1):
        raise ValueError(f"fit_eop_table: n_pions = {n_pions} is too small for the {len(p_edges_gev) - 1} x "
                         f"{len(abs_eta_edges) - 1} bins (need >= 10 per bin)")
    rng = np.random.default_rng(seed)
    ps, etas, eops = [], [], []
    for c0 in range(0, n_pions, chunk):  # chunks of single-pion events
        n = min(chunk, n_pions - c0)
        p = np.exp(rng.uniform(np.log(p_range_gev[0]), np.log(p_range_gev[1]), n))
        eta = rng.uniform(-eta_max, eta_max, n)
        phi = rng.uniform(-np.pi, np.pi, n)
        pt = p / np.cosh(eta)
        pdg = np.where(np.arange(n) % 2 == 0, 211, -211)
        truth = TruthParticles(n_events=n, event=np.arange(n), pdg=pdg, px_gev=pt * np.cos(phi),
                               py_gev=pt * np.sin(phi), pz_gev=pt * np.sinh(eta),
                               energy_gev=np.sqrt(p ** 2 + M_PI_CHARGED ** 2), vertex_mm=np.zeros((n, 3)),
                               parent=np.full(n, -1))
        ev = simulate_events(geometry, truth, rng)
        cl = topo_cluster_events(geometry, ev)
        te, tp, ok = _track_ref_point(ev)
        tev = ev.tracks["event"]
        # clusters of the track's event within the cone (one track per event at most)
        trk_of_event = np.full(n, -1)
        trk_of_event[tev] = np.arange(tev.size)
        k_trk = trk_of_event[cl.event]
        has = k_trk >= 0
        dr = np.full(cl.event.size, np.inf)
        dr[has] = np.hypot(cl.eta[has] - te[k_trk[has]], _wrap(cl.phi[has] - tp[k_trk[has]]))
        inside = has & (dr < cone_dr)
        e_ref = np.bincount(k_trk[inside], cl.energy_gev[inside], minlength=tev.size)
        ps.append(ev.tracks["p_gev"][ok])
        etas.append(ev.tracks["eta"][ok])
        eops.append(e_ref[ok] / ev.tracks["p_gev"][ok])
    p, eta, eop = np.concatenate(ps), np.concatenate(etas), np.concatenate(eops)
    pe = np.asarray(p_edges_gev, np.float64)
    ee = np.asarray(abs_eta_edges, np.float64)
    ip = np.searchsorted(pe, p, side="right") - 1
    ie = np.searchsorted(ee, np.abs(eta), side="right") - 1
    ok = (ip >= 0) & (ip < pe.size - 1) & (ie >= 0) & (ie < ee.size - 1)
    flat = ip[ok] * (ee.size - 1) + ie[ok]
    nb = (pe.size - 1) * (ee.size - 1)
    cnt = np.bincount(flat, minlength=nb)
    s1 = np.bincount(flat, eop[ok], minlength=nb)
    s2 = np.bincount(flat, eop[ok] ** 2, minlength=nb)
    if np.any(cnt < 2):
        raise ValueError(f"fit_eop_table: empty (p, |eta|) bins {np.nonzero(cnt < 2)[0].tolist()}; use more pions")
    mean = s1 / cnt
    sig = np.sqrt(np.maximum(s2 / cnt - mean ** 2, 0) * cnt / (cnt - 1))
    pc = np.bincount(ip[ok], p[ok], minlength=pe.size - 1) / np.bincount(ip[ok], minlength=pe.size - 1)
    sh = (pe.size - 1, ee.size - 1)
    return EOpTable(pc, ee, mean.reshape(sh), np.maximum(sig.reshape(sh), 1e-3), cnt.reshape(sh),
                    meta={"geometry": geometry.name, "n_pions": int(n_pions), "seed": int(seed),
                          "p_range_gev": list(p_range_gev), "p_edges_gev": pe.tolist(), "cone_dr": cone_dr,
                          "simulation": "pcloud parametrised fast simulation, deposit mode 'total', with noise"})


# ------------------------------------------------------------------------------------------------ shared helpers
def _geometry_of(events, geometry):
    if geometry is not None:
        return geometry

    try:
        return get_geometry(events.geometry_name)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"events.geometry_name = {events.geometry_name!r} is not a known geometry; pass geometry=") \
            from err


def _cell_geometry(events, geometry):
    """Per cell row: (eta, phi, global layer index) of the cell centre."""
    g = _geometry_of(events, geometry)
    cid = events.cells["id"]
    if cid.size and (cid.min() < 0 or cid.max() >= g.n_cells):
        raise ValueError(f"events.cells['id'] must be flat indices of geometry {g.name!r} in [0, {g.n_cells}), found "
                         f"[{cid.min()}, {cid.max()}]")
    layer = np.asarray(g.cells["layer"], np.int64)[cid]
    if layer.size and layer.max() >= events.n_layers:
        raise ValueError(f"geometry {g.name!r} has more layers than events.layer_names {events.layer_names}")
    return np.asarray(g.cells["eta"], np.float64)[cid], np.asarray(g.cells["phi"], np.float64)[cid], layer


def cell_track_pairs(events, geometry=None, cell_rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (cell row, track row) pairs of the same event, with DeltaR between the cell centre and the track's
    extrapolated point in the cell's layer (``inf`` where the track does not reach that layer).

    ``cell_rows``: the cells to pair (default: every cell with measured energy > 0). Vectorised: the pairs are built
    with ``np.repeat`` over the (few) tracks of each cell's event.
    """
    c_eta, c_phi, c_layer = _cell_geometry(events, geometry)
    if cell_rows is None:
        cell_rows = np.nonzero(events.cells["energy_gev"] > 0)[0]
    cell_rows = np.asarray(cell_rows, np.int64)
    ev = events.cells["event"][cell_rows]
    t0 = events.track_offsets[ev]
    nt = events.track_offsets[ev + 1] - t0
    pc = np.repeat(cell_rows, nt)
    pt = np.repeat(t0 - np.cumsum(nt) + nt, nt) + np.arange(int(nt.sum()))
    lay = c_layer[pc]
    te = events.tracks["layer_eta"][pt, lay]
    tp = events.tracks["layer_phi"][pt, lay]
    ok = np.asarray(events.tracks["layer_reached"][pt, lay], bool) & np.isfinite(te) & np.isfinite(tp)
    dr = np.full(pc.size, np.inf)
    dr[ok] = np.hypot(c_eta[pc[ok]] - te[ok], _wrap(c_phi[pc[ok]] - tp[ok]))
    return pc, pt.astype(np.int64), dr


def _nearest(pc, pt, dr):
    """Per cell of the pairs: (cell rows, nearest track row, its DeltaR)."""
    if pc.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    o = np.lexsort((dr, pc))
    first = o[np.r_[True, np.diff(pc[o]) != 0]]
    return pc[first], pt[first], dr[first]


def dr_nearest(events, geometry=None, dr_max: float = 0.2) -> Attribution:
    """Each positive cell within DeltaR < ``dr_max`` of some track goes wholly to the nearest track (DeltaR to the
    track's point in the cell's layer); all other cells stay neutral."""
    if not dr_max > 0:
        raise ValueError(f"dr_nearest: dr_max must be > 0, found {dr_max}")
    c, t, d = _nearest(*cell_track_pairs(events, geometry))
    keep = d < dr_max
    c, t = c[keep], t[keep]
    return Attribution(c, t, events.cells["energy_gev"][c], method="dr_nearest" if np.isfinite(dr_max) else
                       "nearest_track")


def random_baseline(events, prior: float, seed: int = 0, geometry=None, dr_max: float = 0.2) -> Attribution:
    """Class-balanced ("smart") random attribution.

    Every positive cell within DeltaR < ``dr_max`` of at least one track is charged with probability ``prior`` (the
    fraction of such cells that are charged in the training split, see :func:`charged_prior`) and then goes wholly
    to one of the tracks within ``dr_max``, drawn uniformly; otherwise it stays neutral. Seeded (``seed``).
    """
    prior = float(prior)
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"random_baseline: prior must be a probability in [0, 1], found {prior}")
    pc, pt, dr = cell_track_pairs(events, geometry)
    m = dr < dr_max
    pc, pt = pc[m], pt[m]
    rng = np.random.default_rng(seed)
    o = np.lexsort((rng.random(pc.size), pc))  # random order of the tracks within each cell
    first = o[np.r_[True, np.diff(pc[o]) != 0]] if pc.size else np.zeros(0, np.int64)
    c, t = pc[first], pt[first]
    charged = rng.random(c.size) < prior
    c, t = c[charged], t[charged]
    return Attribution(c, t, events.cells["energy_gev"][c], method="random")


def trivial(events, majority: str, geometry=None) -> Attribution:
    """Every cell to the training-split majority class: ``"neutral"`` (empty attribution) or ``"charged"`` (every
    positive cell of an event with tracks goes to the nearest track, whatever the distance)."""
    if majority == "neutral":
        z = np.zeros(0, np.int64)
        return Attribution(z, z, np.zeros(0), method="trivial")
    if majority == "charged":
        a = dr_nearest(events, geometry, dr_max=np.inf)
        a.method = "trivial"
        return a
    raise ValueError(f"trivial: majority must be 'neutral' or 'charged', found {majority!r}")


def _truth_labels(events) -> np.ndarray:

    e = events.cells["energy_gev"]
    return truth_attribution(events).dominant_track(e.size, e)


def charged_prior(events, geometry=None, dr_max: float = 0.2, cell_mask=None) -> float:
    """Fraction of the positive cells within DeltaR < ``dr_max`` of a track (and in ``cell_mask``, if given) whose
    truth label (dominant contribution, :meth:`Attribution.dominant_track`) is a track. Use the training split."""
    c, _, d = _nearest(*cell_track_pairs(events, geometry))
    c = c[d < dr_max]
    if cell_mask is not None:
        c = c[np.asarray(cell_mask, bool)[c]]
    if c.size == 0:
        raise ValueError("charged_prior: no positive cell within dr_max of a track in these events")
    return float(np.mean(_truth_labels(events)[c] >= 0))


def majority_class(events, cell_mask=None) -> str:
    """``"charged"`` if most positive cells (in ``cell_mask``, if given) are truth-labelled charged, else
    ``"neutral"``. Use the training split."""
    m = events.cells["energy_gev"] > 0
    if cell_mask is not None:
        m &= np.asarray(cell_mask, bool)
    if not m.any():
        raise ValueError("majority_class: no positive cell in these events")
    return "charged" if np.mean(_truth_labels(events)[m] >= 0) > 0.5 else "neutral"


# ------------------------------------------------------------------------------------------------ rule-based
def _segment_cumsum_exclusive(values, group_start_flag):
    """Cumulative sum of ``values`` restarting at each True of ``group_start_flag``, exclusive (sum before)."""
    cs = np.cumsum(values)
    start_idx = np.maximum.accumulate(np.where(group_start_flag, np.arange(values.size), 0))
    base = cs[start_idx] - values[start_idx]
    return cs - values - base


def _cell_volume_mm3(geometry, cell_id):
    """Cell volume in the collider frame: thickness x (r d phi) x (r d eta / cosh eta) (mm^3)."""
    c = geometry.cells
    r = np.asarray(c["depth_mm"], np.float64)[cell_id]
    return (np.asarray(c["thickness_mm"], np.float64)[cell_id] * r * np.asarray(c["dv"], np.float64)[cell_id]
            * r * np.asarray(c["du"], np.float64)[cell_id] / np.cosh(np.asarray(c["eta"], np.float64)[cell_id]))


@dataclass
class _RuleBasedInputs:
    """What :func:`rule_based` computes once per call: cell geometry, per-track reference points and expected
    deposits, and the topo-cluster membership of the cells."""

    tracks: dict              # events.tracks
    c_eta: np.ndarray         # per cell row: centre eta, phi, global layer, volume (mm^3)
    c_phi: np.ndarray
    c_layer: np.ndarray
    vol: np.ndarray
    pitch: np.ndarray         # per layer: cell pitch sqrt(d eta d phi)
    te_ref: np.ndarray        # per track: (eta, phi, reached) at the reference layer, momentum, <E_dep>, sigma
    tp_ref: np.ndarray
    ref_reached: np.ndarray
    p_trk: np.ndarray
    e_dep: np.ndarray
    s_dep: np.ndarray
    cell_cl: np.ndarray       # per cell row: cluster index (-1 none)
    in_cl: np.ndarray         # cell rows in a cluster
    cl_off: np.ndarray        # cluster offsets per event
    n_clusters: int
    n_lay: int


def _layer_pitch(geometry, n_lay: int) -> np.ndarray:
    """Cell pitch sqrt(d eta d phi) of every layer (median cell sizes)."""
    pitch = np.zeros(n_lay)
    for li in range(n_lay):  # the few layers
        sel = np.asarray(geometry.cells["layer"]) == li
        pitch[li] = np.sqrt(np.median(np.asarray(geometry.cells["du"])[sel]) *
                            np.median(np.asarray(geometry.cells["dv"])[sel]))
    return pitch


def _rank_by_pt(events, pt: np.ndarray) -> np.ndarray:
    """Rank of every track in its event by decreasing pT."""
    n_tracks = pt.size
    order = np.lexsort((-pt, events.tracks["event"]))
    rank = np.empty(n_tracks, np.int64)
    rank[order] = np.arange(n_tracks) - events.track_offsets[events.tracks["event"][order]]
    return rank


def _cluster_kinematics(inp: _RuleBasedInputs, cc, e_now, min_width: float) -> dict:
    """Per cluster, from what is left of its cells (``e_now`` of the clustered rows, clusters ``cc``): energy ``E``,
    positive weight sum ``sw``, centroid ``eta``, ``phi`` and widths ``s_eta``, ``s_phi`` floored at ``min_width``."""
    K, in_cl = inp.n_clusters, inp.in_cl
    c_eta, c_phi = inp.c_eta[in_cl], inp.c_phi[in_cl]
    w = np.clip(e_now, 0, None)
    E_k = np.bincount(cc, e_now, minlength=K)
    sw = np.bincount(cc, w, minlength=K)
    safe = np.where(sw > 0, sw, 1.0)
    eta_k = np.bincount(cc, w * c_eta, minlength=K) / safe
    phi_k = np.arctan2(np.bincount(cc, w * np.sin(c_phi), minlength=K), np.bincount(cc, w * np.cos(c_phi), minlength=K))
    s_eta = np.sqrt(np.bincount(cc, w * (c_eta - eta_k[cc]) ** 2, minlength=K) / safe)
    s_phi = np.sqrt(np.bincount(cc, w * _wrap(c_phi - phi_k[cc]) ** 2, minlength=K) / safe)
    return {"E": E_k, "sw": sw, "eta": eta_k, "phi": phi_k, "s_eta": np.maximum(s_eta, min_width),
            "s_phi": np.maximum(s_phi, min_width)}


def _match_clusters(inp: _RuleBasedInputs, T, kin: dict, match_dr_prime: float, min_eop_match: float):
    """Match each track of ``T`` to its closest candidate cluster in DeltaR' (step 2 of the module docstring).

    Returns the (track, cluster) pairs of the same event ``(pi, pk, dr, drp)`` (index into T, cluster, DeltaR,
    DeltaR'), ``cl_trk`` (cluster -> index into T of its track, -1), ``matched`` and the matched energy per track;
    None when no track has a candidate."""
    ev = inp.tracks["event"][T]
    cl_off = inp.cl_off
    n_k = cl_off[ev + 1] - cl_off[ev]
    pi = np.repeat(np.arange(T.size), n_k)
    pk = np.repeat(cl_off[ev] - np.cumsum(n_k) + n_k, n_k) + np.arange(int(n_k.sum()))
    deta = kin["eta"][pk] - inp.te_ref[T[pi]]
    dphi = _wrap(kin["phi"][pk] - inp.tp_ref[T[pi]])
    dr = np.hypot(deta, dphi)
    drp = np.hypot(deta / kin["s_eta"][pk], dphi / kin["s_phi"][pk])
    cand = (kin["sw"][pk] > 0) & (kin["E"][pk] / inp.p_trk[T[pi]] > min_eop_match) & (drp < match_dr_prime)
    cl_trk = np.full(inp.n_clusters, -1, np.int64)
    ci = np.nonzero(cand)[0]
    if ci.size == 0:
        return None
    o = ci[np.lexsort((drp[ci], pi[ci]))]
    prim = o[np.r_[True, np.diff(pi[o]) != 0]]
    matched = np.zeros(T.size, bool)
    matched[pi[prim]] = True
    cl_trk[pk[prim]] = pi[prim]
    e_m = np.zeros(T.size)
    e_m[pi[prim]] = kin["E"][pk[prim]]
    return (pi, pk, dr, drp), cl_trk, matched, e_m


def _add_split_clusters(pairs, cl_trk, matched, e_m, e_dep, s_dep, kin: dict, split_dr: float,
                        split_significance: float) -> None:
    """Split showers (step 4): for matched tracks with (E_matched - <E_dep>) / sigma < ``split_significance``, add
    the clusters within ``split_dr`` in order of increasing DeltaR' while the significance stays below it.
    Updates ``cl_trk`` and ``e_m`` in place."""
    pi, pk, dr, drp = pairs
    E_k = kin["E"]
    need = matched & ((e_m - e_dep) / s_dep < split_significance)
    extra = np.nonzero(need[pi] & (cl_trk[pk] < 0) & (dr < split_dr) & (E_k[pk] > 0) & (kin["sw"][pk] > 0))[0]
    if extra.size:
        extra = extra[np.lexsort((drp[extra], pi[extra]))]
        start = np.r_[True, np.diff(pi[extra]) != 0]
        before = _segment_cumsum_exclusive(E_k[pk[extra]], start)
        add = e_m[pi[extra]] + before < e_dep[pi[extra]] + split_significance * s_dep[pi[extra]]
        extra = extra[add]
        cl_trk[pk[extra]] = pi[extra]
        e_m += np.bincount(pi[extra], E_k[pk[extra]], minlength=e_m.size)


def _ring_fractions(inp: _RuleBasedInputs, T, r_rows, r_ti, r_e, rem, e_dep) -> np.ndarray:
    """Fraction of each cell (rows ``r_rows`` of tracks ``r_ti``, energy ``r_e``) that ring-by-ring subtraction
    gives to its track (step 5): layers by decreasing energy density, rings of the layer's pitch by radius, whole
    rings while the running sum stays below <E_dep>, the crossing ring scaled."""
    tr_all, n_lay = inp.tracks, inp.n_lay
    lay = inp.c_layer[r_rows]
    tr = T[r_ti]
    te = tr_all["layer_eta"][tr, lay]
    tp = tr_all["layer_phi"][tr, lay]
    ok = np.asarray(tr_all["layer_reached"][tr, lay], bool) & np.isfinite(te) & np.isfinite(tp)
    te = np.where(ok, te, inp.te_ref[tr])
    tp = np.where(ok, tp, inp.tp_ref[tr])
    ring = np.floor(np.hypot(inp.c_eta[r_rows] - te, _wrap(inp.c_phi[r_rows] - tp)) / inp.pitch[lay]).astype(np.int64)
    # layer order per track: decreasing energy density sum(E / V) of its matched cells
    tl = r_ti * n_lay + lay
    dens = np.bincount(tl, rem[r_rows] / inp.vol[r_rows], minlength=T.size * n_lay).reshape(T.size, n_lay)
    lrank = np.argsort(np.argsort(-dens, axis=1, kind="stable"), axis=1)[r_ti, lay]
    o = np.lexsort((ring, lrank, r_ti))
    key = (r_ti[o] * n_lay + lrank[o]) * (int(ring.max()) + 1) + ring[o]
    new_ring = np.r_[True, np.diff(key) != 0]
    gid = np.cumsum(new_ring) - 1
    ring_e = np.bincount(gid, r_e[o])
    ring_trk = r_ti[o][new_ring]
    ring_start = np.r_[True, np.diff(ring_trk) != 0]
    before = _segment_cumsum_exclusive(ring_e, ring_start)
    f_ring = np.clip((e_dep[ring_trk] - before) / np.where(ring_e > 0, ring_e, 1.0), 0.0, 1.0)
    f = np.empty(r_rows.size)
    f[o] = f_ring[gid]
    return f


def _subtracted_fraction(inp: _RuleBasedInputs, T, rows, ti, e_cell, rem, e_m, e_dep, s_dep,
                         remnant_sigma: float) -> np.ndarray:
    """Fraction of each matched cell (``rows``, track index ``ti`` into T) given to its track: all of it when
    <E_dep> >= E_matched, else ring by ring, then all of the remnant within ``remnant_sigma`` (steps 5-6)."""
    take_all = e_dep[ti] >= e_m[ti]
    frac = np.ones(rows.size)
    ring_rows = np.nonzero(~take_all)[0]
    if ring_rows.size:
        r_ti = ti[ring_rows]
        frac[ring_rows] = _ring_fractions(inp, T, rows[ring_rows], r_ti, e_cell[ring_rows], rem, e_dep)
        # remnant removal: what is left of the matched clusters within remnant_sigma of the expectation
        remnant = (e_m - e_dep) < remnant_sigma * s_dep
        frac[ring_rows[remnant[r_ti]]] = 1.0
    return frac


def _rule_based_inputs(events, g, clusters, table: EOpTable, ref_layer: str) -> _RuleBasedInputs:
    """Cell geometry, track reference points and <E_dep> expectations, and cluster membership (validated)."""
    T_all = events.tracks
    c_eta, c_phi, c_layer = _cell_geometry(events, g)
    n_lay = events.n_layers
    pitch = _layer_pitch(g, n_lay)
    vol = _cell_volume_mm3(g, events.cells["id"])
    te_ref, tp_ref, reached_ref = _track_ref_point(events, ref_layer)
    p_trk = np.asarray(T_all["p_gev"], np.float64)
    e_dep_all, s_dep_all = table.expected(p_trk, T_all["eta"])
    return _RuleBasedInputs(tracks=T_all, c_eta=c_eta, c_phi=c_phi, c_layer=c_layer, vol=vol, pitch=pitch,
                            te_ref=te_ref, tp_ref=tp_ref, ref_reached=reached_ref, p_trk=p_trk, e_dep=e_dep_all,
                            s_dep=np.maximum(s_dep_all, 1e-6), cell_cl=clusters.cell_cluster,
                            in_cl=np.nonzero(clusters.cell_cluster >= 0)[0], cl_off=clusters.offsets,
                            n_clusters=clusters.event.size, n_lay=n_lay)


def rule_based(events, geometry=None, clusters=None, eop_table: EOpTable | None = None, pt_min_gev: float = 0.5,
               pt_max_gev: float = np.inf, match_dr_prime: float = 1.64, min_eop_match: float = 0.1,
               min_cluster_width: float = 0.05, split_dr: float = 0.2, split_significance: float = -1.0,
               remnant_sigma: float = 1.5, ref_layer: str = "EMB2") -> Attribution:
    """ATLAS-style rule-based particle flow: topo-clusters + cell-based E/p subtraction (module docstring).

    ``clusters``: :class:`~pcloud.core.clusters.TopoClusters` on ``events.cells`` rows (default: the 4/2/0
    topo-clusters of the events). ``eop_table``: default :func:`default_eop_table`.
    """

    g = _geometry_of(events, geometry)
    if clusters is None:
        clusters = topo_cluster_events(g, events)
    n_cells = events.cells["id"].size
    if clusters.cell_cluster.size != n_cells:
        raise ValueError(f"rule_based: clusters were built on {clusters.cell_cluster.size} cell rows, events have "
                         f"{n_cells}")
    inp = _rule_based_inputs(events, g, clusters, eop_table or default_eop_table(), ref_layer)
    pt = np.asarray(inp.tracks["pt_gev"], np.float64)
    selected = (pt > pt_min_gev) & (pt < pt_max_gev) & inp.ref_reached
    rank = _rank_by_pt(events, pt)
    rem = np.asarray(events.cells["energy_gev"], np.float64).copy()
    out_c, out_t, out_e = [], [], []
    for k in range(int(rank.max()) + 1 if pt.size else 0):  # the k-th track of every event at once
        T = np.nonzero((rank == k) & selected)[0]
        if T.size == 0 or inp.n_clusters == 0:
            continue
        cc, e_now = inp.cell_cl[inp.in_cl], rem[inp.in_cl]
        kin = _cluster_kinematics(inp, cc, e_now, min_cluster_width)
        match = _match_clusters(inp, T, kin, match_dr_prime, min_eop_match)
        if match is None:
            continue
        pairs, cl_trk, matched, e_m = match
        e_dep, s_dep = inp.e_dep[T], inp.s_dep[T]
        _add_split_clusters(pairs, cl_trk, matched, e_m, e_dep, s_dep, kin, split_dr, split_significance)
        rows = inp.in_cl[(cl_trk[cc] >= 0) & (e_now > 0)]  # cells of the matched clusters with energy left
        if rows.size == 0:
            continue
        ti = cl_trk[inp.cell_cl[rows]]
        e_cell = rem[rows]
        frac = _subtracted_fraction(inp, T, rows, ti, e_cell, rem, e_m, e_dep, s_dep, remnant_sigma)
        give = e_cell * frac
        nz = give > 0
        out_c.append(rows[nz])
        out_t.append(T[ti[nz]])
        out_e.append(give[nz])
        rem[rows] = np.where(frac >= 1.0, 0.0, e_cell - give)
    if out_c:
        return Attribution(np.concatenate(out_c), np.concatenate(out_t), np.concatenate(out_e), method="rule_based")
    z = np.zeros(0, np.int64)
    return Attribution(z, z, np.zeros(0), method="rule_based")
