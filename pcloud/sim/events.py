"""Multi-particle events in the ATLAS-like barrel: truth particles, tracks, cell energies and per-cell truth.

This is the input side of the particle-flow studies of seed 002 (JetPointNet): events with a few charged and neutral
hadrons whose showers overlap, tracks for the charged ones extrapolated to every calorimeter layer, noisy cell
energies, and the energy each truth particle deposited in each cell (EM and non-EM parts).

Generators
----------
Truth particles come from the built-in decay gun (:mod:`pcloud.sim.decay_gun`, rho and Delta decays; the default)
or from Pythia8 (:mod:`pcloud.sim.pythia`, optional ``pythia8mc``); :func:`generate_events` chains the gun and
:func:`simulate_events`. The containers (:class:`~pcloud.core.events.TruthParticles`,
:class:`~pcloud.core.events.TrackCellEvents`) live in :mod:`pcloud.core.events`.

Nucleons: a proton is a charged hadron with a track that showers like a pi+ (the fast simulation has one charged
hadron shower model); a neutron is a neutral hadron without a track. Baryon number is conserved in the shower, so
a nucleon can only deposit its *kinetic* energy: nucleons are passed to the deposit function with E - m.
The deposit function showers every hadron with its pion parametrisation (see :func:`shower_pdg`).

Tracks and deposits
-------------------
Charged particles with true pT > ``track_pt_min_gev`` (0.5 GeV, the ATLAS particle-flow track selection,
Eur. Phys. J. C 77 (2017) 466) get a track: helix in B = 2 T (:mod:`pcloud.sim.tracks`), the crossing with every
layer's mid radius, measured pT with the ID resolution, chi2 and ndf. Track eta/phi at the perigee are the true
ones (angular resolution neglected). Charged particles that loop before the calorimeter front (2R < r_front)
deposit nothing in the calorimeter. The shower of a charged particle starts at its helix crossing of the front
surface with the local helix direction; neutral particles start at their vertex (the deposit function propagates
them straight to the front).

Cell energies and the noise window
----------------------------------
Cell energy = sum of the truth deposits + Gaussian electronic noise (``noise_sigma_gev`` of the cell's section).
Noise is only simulated in a *window*: in every layer, all cells whose centre lies within DeltaR < ``window_dr``
(default 0.4) of the point where some final-state particle of energy >= ``window_e_min_gev`` (default 0: all)
crosses that layer (helix for charged, straight line for neutral particles), plus every cell with a deposit.
Generator events with many soft particles (Pythia dijets: ~100 particles below 1 GeV) would otherwise open windows
over most of the calorimeter; ``generate_pythia_events`` therefore uses ``window_e_min_gev=1``. Cells outside the
window are absent (zero, no noise); this
mirrors the DeltaR-cut training samples of seed 002 and keeps events sparse. Events are processed in chunks of
``chunk_events`` (vectorised over all particles and cells of a chunk); no dense n_cells array is allocated per event.

Output: a :class:`~pcloud.core.events.TrackCellEvents` (layout in :mod:`pcloud.core.events`).
"""
from __future__ import annotations

import numpy as np

from ..core.events import TrackCellEvents, TruthParticles, offsets_from_index
from ..core.particles import BARYONS, NEUTRINOS, charge_of, mass_of
from . import tracks as trk
from .decay_gun import generate_gun


def shower_pdg(pdg) -> np.ndarray:
    """PDG id handed to the shower deposit function for each truth particle (0 = not showered).

    e, mu, gamma, pi0 and every hadron (|pdg| > 100) are passed as they are: the deposit function
    (:func:`pcloud.sim.deposit.deposit_particles`) showers all hadrons with its pion parametrisation, charged ones
    (pi+-, K+-, p, ...) with a MIP track before the first interaction and neutral ones (n, K0L, ...) without.
    So a proton showers like a pi+ (and has a track), a neutron like a neutral pion-like hadron without a track.
    Neutrinos and anything else return 0.
    """
    pdg = np.asarray(pdg, dtype=np.int64)
    a = np.abs(pdg)
    keep = np.isin(a, [11, 13, 22, 111]) | ((a > 100) & ~np.isin(a, list(NEUTRINOS)))
    return np.where(keep, pdg, 0).astype(np.int64)



# ---------------------------------------------------------------------------------------------- simulation
def _default_deposit():
    try:
        from .deposit import deposit_particles
    except ImportError as err:  # pragma: no cover - the shower module is developed alongside
        raise ImportError("pcloud.sim.deposit.deposit_particles is not available; pass deposit_fn=") from err
    return deposit_particles


def _window_offsets(section, window_dr: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer (du, dv) cell offsets whose centre lies within DeltaR < window_dr of a cell centre (uniform grids)."""
    deta = float(np.min(np.diff(section.u_edges)))
    dphi = float(np.min(np.diff(section.v_edges)))
    ku = int(np.ceil(window_dr / deta))
    kv = int(np.ceil(window_dr / dphi))
    du, dv = np.meshgrid(np.arange(-ku, ku + 1), np.arange(-kv, kv + 1), indexing="ij")
    keep = (du * deta) ** 2 + (dv * dphi) ** 2 < window_dr ** 2
    return du[keep].astype(np.int64), dv[keep].astype(np.int64)


def _window_cells(geometry, ev: np.ndarray, eta: np.ndarray, phi: np.ndarray, reached: np.ndarray,
                  window_dr: float) -> np.ndarray:
    """Keys event * n_cells + flat cell of the noise window (see module docstring). eta/phi/reached: (P, L)."""
    keys = []
    n_cells = geometry.n_cells
    gl = 0
    for si, s in enumerate(geometry.sections):
        du, dv = _window_offsets(s, window_dr)
        for lay in range(s.n_layers):
            m = reached[:, gl]
            gl += 1
            if not m.any():
                continue
            e_c, p_c, ev_c = eta[m, gl - 1], phi[m, gl - 1], ev[m]
            iu = np.searchsorted(s.u_edges, e_c, side="right") - 1
            v = s.v_edges[0] + np.mod(p_c - s.v_edges[0], s.v_edges[-1] - s.v_edges[0]) if s.v_periodic else p_c
            iv = np.searchsorted(s.v_edges, v, side="right") - 1
            # centres outside the layer still contribute the in-range part of their window
            iu = np.clip(iu, -len(du), s.n_u + len(du))
            U = iu[:, None] + du[None, :]
            V = iv[:, None] + dv[None, :]
            if s.v_periodic:
                V = np.mod(V, s.n_v)
            ok = (U >= 0) & (U < s.n_u) & (V >= 0) & (V < s.n_v)
            flat = geometry.section_offsets[si] + (lay * s.n_u + U) * s.n_v + V
            keys.append((ev_c[:, None] * n_cells + flat)[ok])
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def _check_simulation_args(geometry, window_dr: float, window_e_min_gev: float) -> None:
    """Reject non-collider geometries and invalid noise-window settings."""
    if geometry.frame != "collider":
        raise ValueError(f"simulate_events: geometry {geometry.name!r} is not a collider-frame (etaphi) geometry")
    if window_dr <= 0:
        raise ValueError(f"simulate_events: window_dr must be > 0, found {window_dr}")
    if not window_e_min_gev >= 0:
        raise ValueError(f"simulate_events: window_e_min_gev must be >= 0 GeV, found {window_e_min_gev}")


def _truth_kinematics(truth: TruthParticles) -> dict:
    """Per truth particle: charge, mass, momentum (P, 3), pT, |p|, eta and phi."""
    p3 = np.stack([truth.px_gev, truth.py_gev, truth.pz_gev], axis=1)
    pt = np.hypot(p3[:, 0], p3[:, 1])
    return {"charge": charge_of(truth.pdg), "mass": mass_of(truth.pdg), "p3": p3, "pt": pt,
            "ptot": np.linalg.norm(p3, axis=1),
            "eta": np.arcsinh(np.divide(p3[:, 2], pt, out=np.full(pt.shape, np.inf), where=pt > 0)),
            "phi": np.arctan2(p3[:, 1], p3[:, 0])}


def _simulate_tracks(geometry, truth: TruthParticles, kin: dict, rng, b_field_t: float, track_pt_min_gev: float,
                     track_eta_max: float) -> dict:
    """Tracks of the charged particles above the pT cut (all events at once): helix extrapolation to every layer,
    measured pT and charge, fit quality (draws: pT smearing, then chi2 / ndf)."""
    charge, pt, eta, phi, p3 = kin["charge"], kin["pt"], kin["eta"], kin["phi"], kin["p3"]
    ti = np.nonzero((charge != 0) & (pt > track_pt_min_gev) & (np.abs(eta) < track_eta_max))[0]
    ext = trk.extrapolate_to_layers(geometry, truth.vertex_mm[ti], p3[ti], charge[ti], b_field_t)
    pt_meas, q_meas = trk.smear_pt(pt[ti], charge[ti], rng)
    chi2, ndf = trk.draw_fit_quality(ti.size, rng)
    return {"event": truth.event[ti], "particle": ti.astype(np.int64), "pt_gev": pt_meas,
            "p_gev": pt_meas * np.cosh(eta[ti]), "eta": eta[ti], "phi": phi[ti], "charge": q_meas.astype(np.int64),
            "true_pt_gev": pt[ti], "chi2": chi2, "ndf": ndf, "layer_eta": ext.eta, "layer_phi": ext.phi,
            "layer_x_mm": ext.x_mm, "layer_y_mm": ext.y_mm, "layer_z_mm": ext.z_mm, "layer_reached": ext.reached}


def _shower_starts(truth: TruthParticles, kin: dict, r_front: float, b_field_t: float) -> dict:
    """What the deposit function gets per particle: shower pdg, deposited energy (nucleons: E - m), whether it
    showers, and the start point and direction at the calorimeter front (helix for charged, vertex for neutral)."""
    charge, p3 = kin["charge"], kin["p3"]
    front = trk.propagate_to_radius(truth.vertex_mm, p3, charge, [r_front], b_field_t)
    sp = shower_pdg(truth.pdg)
    e_dep = np.where(np.isin(np.abs(truth.pdg), list(BARYONS)), truth.energy_gev - kin["mass"], truth.energy_gev)
    charged = charge != 0
    showers = (sp != 0) & (e_dep > 0) & np.where(charged, front["reached"][:, 0], True)
    origin = np.where(charged[:, None], np.nan_to_num(np.stack([front["x"][:, 0], front["y"][:, 0],
                                                                front["z"][:, 0]], axis=1)), truth.vertex_mm)
    direction = np.where(charged[:, None], np.nan_to_num(front["direction"][:, 0]),
                         p3 / np.maximum(kin["ptot"], 1e-300)[:, None])
    return {"pdg": sp, "e_dep": e_dep, "showers": showers, "origin": origin, "direction": direction}


def _deposit_hits(geometry, starts: dict, srows: np.ndarray, rng, deposit_fn, deposit_mode: str) -> tuple:
    """Showers of the particle rows ``srows``: (particle row, flat cell, energy, EM energy) of every hit in the
    geometry."""
    if not srows.size:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), np.zeros(0)
    dep = deposit_fn(geometry, starts["pdg"][srows], starts["e_dep"][srows], starts["origin"][srows],
                     starts["direction"][srows], rng, mode=deposit_mode)
    h_part = srows[np.asarray(dep.particle, dtype=np.int64)]
    h_cell = np.asarray(dep.cell, dtype=np.int64)
    ok = (h_cell >= 0) & (h_cell < geometry.n_cells)
    return (h_part[ok], h_cell[ok], np.asarray(dep.energy_gev, dtype=np.float64)[ok],
            np.asarray(dep.energy_em_gev, dtype=np.float64)[ok])


def _merge_hits(h_key, h_part, h_e, h_em) -> tuple:
    """Sort hits by (event cell key, particle) and sum those of the same (particle, cell)."""
    order = np.lexsort((h_part, h_key))
    h_key, h_part, h_e, h_em = h_key[order], h_part[order], h_e[order], h_em[order]
    if h_key.size:
        new = np.concatenate([[True], (np.diff(h_key) != 0) | (np.diff(h_part) != 0)])
        grp = np.cumsum(new) - 1
        h_e = np.bincount(grp, h_e)
        h_em = np.bincount(grp, h_em)
        h_key, h_part = h_key[new], h_part[new]
    return h_key, h_part, h_e, h_em


def _simulate_chunk(geometry, truth, rows, starts, at_layers, rng, deposit_fn, deposit_mode, noise, window_dr,
                    window_e_min_gev) -> tuple:
    """Deposits, noise window and noisy cell energies of the particle ``rows`` of a chunk of events (draws: the
    showers, then the noise). Returns (cell columns, hit columns) with hit cells as rows of the chunk's cells."""
    n_cells = geometry.n_cells
    h_part, h_cell, h_e, h_em = _deposit_hits(geometry, starts, rows[starts["showers"][rows]], rng, deposit_fn,
                                              deposit_mode)
    h_key = truth.event[h_part] * n_cells + h_cell
    w_rows = rows[np.any(at_layers["reached"][rows], axis=1) & (truth.energy_gev[rows] >= window_e_min_gev)]
    win = _window_cells(geometry, truth.event[w_rows], at_layers["eta"][w_rows], at_layers["phi"][w_rows],
                        at_layers["reached"][w_rows], window_dr) if noise else np.zeros(0, np.int64)
    keys = np.unique(np.concatenate([h_key, win]))
    # combine hits of the same (particle, cell) (the deposit function sums already; be safe)
    h_key, h_part, h_e, h_em = _merge_hits(h_key, h_part, h_e, h_em)
    h_row = np.searchsorted(keys, h_key)
    true_e = np.bincount(h_row, h_e, minlength=keys.size)
    cid = keys % n_cells
    sig = geometry.cells["noise_sigma_gev"][cid]
    meas = true_e + (sig * rng.standard_normal(keys.size) if noise else 0.0)
    return (keys // n_cells, cid, meas, true_e, sig), (h_row, h_part, h_e, h_em)


def _join_chunks(cell_parts: list, hit_parts: list) -> tuple[dict, dict]:
    """Concatenate the chunks' cells and hits (hit cells shifted to rows of all cells)."""
    base = np.cumsum([0] + [len(c[0]) for c in cell_parts])
    cells = {"event": np.concatenate([c[0] for c in cell_parts]).astype(np.int64),
             "id": np.concatenate([c[1] for c in cell_parts]).astype(np.int64),
             "energy_gev": np.concatenate([c[2] for c in cell_parts]),
             "true_energy_gev": np.concatenate([c[3] for c in cell_parts]),
             "noise_sigma_gev": np.concatenate([c[4] for c in cell_parts])}
    hits = {"cell": np.concatenate([h[0] + b for h, b in zip(hit_parts, base)]).astype(np.int64),
            "particle": np.concatenate([h[1] for h in hit_parts]).astype(np.int64),
            "energy_gev": np.concatenate([h[2] for h in hit_parts]),
            "energy_em_gev": np.concatenate([h[3] for h in hit_parts])}
    return cells, hits


def _particle_tables(truth: TruthParticles, kin: dict, showers: np.ndarray) -> tuple[dict, dict]:
    """The ``particles`` and ``parents`` columns of :class:`TrackCellEvents`."""
    p3 = kin["p3"]
    particles = {"event": truth.event, "pdg": truth.pdg, "charge": kin["charge"], "mass_gev": kin["mass"],
                 "energy_gev": truth.energy_gev, "px_gev": p3[:, 0], "py_gev": p3[:, 1], "pz_gev": p3[:, 2],
                 "pt_gev": kin["pt"], "eta": kin["eta"], "phi": kin["phi"], "vertex_mm": truth.vertex_mm,
                 "parent": truth.parent, "showered": showers}
    parents = {"event": truth.parent_event, "pdg": truth.parent_pdg, "mass_gev": truth.parent_mass_gev,
               "energy_gev": truth.parent_energy_gev, "eta": truth.parent_eta, "phi": truth.parent_phi}
    return particles, parents


def simulate_events(geometry, truth: TruthParticles, rng: np.random.Generator, deposit_fn=None,
                    deposit_mode: str = "total", window_dr: float = 0.4, b_field_t: float = trk.B_FIELD_T,
                    track_pt_min_gev: float = 0.5, track_eta_max: float = 2.5, noise: bool = True,
                    chunk_events: int = 256, window_e_min_gev: float = 0.0) -> TrackCellEvents:
    """Tracks, cell energies and per-cell truth for the events of ``truth`` in a collider-frame geometry.

    ``deposit_fn`` defaults to :func:`pcloud.sim.deposit.deposit_particles` (same signature). See the module
    docstring for the physics, the noise window and the output layout.
    """
    _check_simulation_args(geometry, window_dr, window_e_min_gev)
    deposit_fn = deposit_fn or _default_deposit()
    n_ev = truth.n_events
    layer_names, radii = trk.layer_mid_radii_mm(geometry)
    r_front = float(geometry.sections[0].layer_edges_mm[0])
    kin = _truth_kinematics(truth)
    # draws in this order: track smearing (all events), then per chunk of events the showers and the noise
    tracks = _simulate_tracks(geometry, truth, kin, rng, b_field_t, track_pt_min_gev, track_eta_max)
    starts = _shower_starts(truth, kin, r_front, b_field_t)
    at_layers = trk.propagate_to_radius(truth.vertex_mm, kin["p3"], kin["charge"], radii, b_field_t)
    cell_parts, hit_parts = [], []
    off = offsets_from_index(truth.event, n_ev)
    for c0 in range(0, n_ev, chunk_events):  # chunks of events, vectorised inside
        rows = np.arange(off[c0], off[min(n_ev, c0 + chunk_events)])
        c, h = _simulate_chunk(geometry, truth, rows, starts, at_layers, rng, deposit_fn, deposit_mode, noise,
                               window_dr, window_e_min_gev)
        cell_parts.append(c)
        hit_parts.append(h)
    cells, hits = _join_chunks(cell_parts, hit_parts)
    particles, parents = _particle_tables(truth, kin, starts["showers"])
    meta = {"deposit_mode": deposit_mode, "window_dr": window_dr, "b_field_t": b_field_t,
            "track_pt_min_gev": track_pt_min_gev, "noise": noise, "window_e_min_gev": window_e_min_gev,
            "simulation": "pcloud parametrised fast simulation (not Geant4)"}
    return TrackCellEvents(n_events=n_ev, geometry_name=geometry.name, layer_names=list(layer_names),
                           particles=particles, parents=parents, tracks=tracks, cells=cells, hits=hits, meta=meta)


def generate_events(geometry, n_events: int, rng: np.random.Generator, deposit_fn=None, sim_kwargs=None,
                    **gun_kwargs) -> TrackCellEvents:
    """Built-in gun (:func:`generate_gun` keyword arguments) followed by :func:`simulate_events`."""
    truth = generate_gun(n_events, rng, **gun_kwargs)
    return simulate_events(geometry, truth, rng, deposit_fn=deposit_fn, **(sim_kwargs or {}))
