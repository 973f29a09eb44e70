"""Hand-built events and deterministic stand-ins shared by the particle-flow, simulation and metrics tests.

``line_deposit`` is a deterministic stand-in for :func:`pcloud.sim.deposit.deposit_particles`, used where a test
needs exact bookkeeping (e.g. chunking invariance): it deposits each particle's energy in the cells crossed by its
straight line (one cell per layer, energy split by layer thickness), EM part = all of it for e/gamma/pi0, none for
hadrons. ``make_events`` builds :class:`~pcloud.core.events.TrackCellEvents` from short tuples; ``make_hand_event``
is the one-event case with hand-set truth deposits of the cloud and segmenter tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcloud.core.events import TrackCellEvents
from pcloud.sim.tracks import layer_mid_radii_mm


@dataclass
class _Deposits:
    particle: np.ndarray
    cell: np.ndarray
    energy_gev: np.ndarray
    energy_em_gev: np.ndarray


def line_deposit(geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None):
    pdg = np.asarray(pdg)
    n = pdg.size
    radii = np.concatenate([0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1]) for s in geometry.sections])
    thick = np.concatenate([np.diff(s.layer_edges_mm) for s in geometry.sections])
    frac = thick / thick.sum()
    o = np.asarray(origin_mm, float)
    d = np.asarray(direction, float)
    dt = np.hypot(d[:, 0], d[:, 1])
    # straight line from the origin: transverse distance to radius r (origin near the axis or on the front)
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    r0 = o[:, 0] ** 2 + o[:, 1] ** 2
    t = (-b[:, None] + np.sqrt(np.maximum(b[:, None] ** 2 - dt[:, None] ** 2 * (r0[:, None] - radii ** 2), 0))
         ) / dt[:, None] ** 2
    pts = o[:, None, :] + t[..., None] * d[:, None, :]
    pts = pts.reshape(-1, 3)
    cell = geometry.locate(pts[:, 0], pts[:, 1], pts[:, 2])
    part = np.repeat(np.arange(n), radii.size)
    e = (np.asarray(energy_gev, float)[:, None] * frac[None, :]).ravel()
    em = np.isin(np.abs(pdg), [11, 22, 111])
    cell = cell.ravel()
    ok = cell >= 0
    return _Deposits(part[ok], cell[ok], e[ok], np.where(em[part], e, 0.0)[ok])


def cell_id(geometry, section: str, iu: int, iv: int) -> int:
    si = [s.name for s in geometry.sections].index(section)
    s = geometry.sections[si]
    return int(geometry.section_offsets[si] + iu * s.n_v + iv)


def centre(geometry, section: str, iu: int, iv: int) -> tuple[float, float]:
    c = cell_id(geometry, section, iu, iv)
    return float(geometry.cells["eta"][c]), float(geometry.cells["phi"][c])


def make_events(geometry, n_events, cells, tracks, particles, hits=()) -> TrackCellEvents:
    """cells: (event, section, iu, iv, energy_gev); tracks: (event, particle, eta, phi, p_gev) (same point in every
    layer); particles: (event, charge, eta, phi); hits: (cell index in ``cells``, particle, energy_gev)."""
    n_lay = len(geometry.sections)
    rows = sorted(((e, cell_id(geometry, s, iu, iv), en) for e, s, iu, iv, en in cells))
    order = np.argsort([e * (1 << 32) + cell_id(geometry, s, iu, iv) for e, s, iu, iv, _ in cells], kind="stable")
    inv = np.empty(len(cells), np.int64)
    inv[order] = np.arange(len(cells))
    ev = np.array([r[0] for r in rows], np.int64)
    cid = np.array([r[1] for r in rows], np.int64)
    en = np.array([r[2] for r in rows], np.float64)
    sig = geometry.cells["noise_sigma_gev"][cid] if cid.size else np.zeros(0)
    t = np.array(tracks, dtype=np.float64).reshape(-1, 5)
    nt = t.shape[0]
    p = np.array(particles, dtype=np.float64).reshape(-1, 4)
    h = np.array(hits, dtype=np.float64).reshape(-1, 3)
    h_cell = inv[h[:, 0].astype(np.int64)] if h.size else np.zeros(0, np.int64)
    ho = np.argsort(h_cell, kind="stable")
    h_e = h[:, 2][ho] if h.size else np.zeros(0)
    true_e = np.bincount(h_cell, h[:, 2] if h.size else None, minlength=cid.size) if h.size else np.zeros(cid.size)
    return TrackCellEvents(
        n_events=n_events, geometry_name=geometry.name, layer_names=[s.name for s in geometry.sections],
        particles={"event": p[:, 0].astype(np.int64), "charge": p[:, 1].astype(np.int64), "eta": p[:, 2],
                   "phi": p[:, 3], "pdg": np.where(p[:, 1] != 0, 211, 22).astype(np.int64),
                   "showered": np.ones(p.shape[0], bool), "parent": np.full(p.shape[0], -1, np.int64)},
        parents={"event": np.zeros(0, np.int64)},
        tracks={"event": t[:, 0].astype(np.int64), "particle": t[:, 1].astype(np.int64), "eta": t[:, 2],
                "phi": t[:, 3], "p_gev": t[:, 4], "pt_gev": t[:, 4] / np.cosh(t[:, 2]),
                "layer_eta": np.repeat(t[:, 2:3], n_lay, axis=1), "layer_phi": np.repeat(t[:, 3:4], n_lay, axis=1),
                "layer_reached": np.ones((nt, n_lay), bool)},
        cells={"event": ev, "id": cid, "energy_gev": en, "true_energy_gev": true_e, "noise_sigma_gev": sig},
        hits={"cell": h_cell[ho], "particle": (h[:, 1].astype(np.int64)[ho] if h.size else np.zeros(0, np.int64)),
              "energy_gev": h_e, "energy_em_gev": np.zeros(h_e.size)})


def _nearest_cell(g, layer, eta, phi):
    c = g.cells
    m = np.nonzero(c["layer"] == layer)[0]
    d = (c["eta"][m] - eta) ** 2 + (np.mod(c["phi"][m] - phi + np.pi, 2 * np.pi) - np.pi) ** 2
    return int(m[np.argmin(d)])


def make_hand_event(g):
    """One event: particle 0 = pi+ (track 0, pT 10 GeV) at (eta, phi) = (0.1, 0.2), particle 1 = pi0, particle 2 =
    pi- (track 1, pT 5 GeV) at (0.15, 0.25); cells (named by the dict below) with hand-set truth deposits."""
    names, radii = layer_mid_radii_mm(g)
    L = len(names)
    trk_eta, trk_phi = np.array([0.1, 0.15]), np.array([0.2, 0.25])
    lay_eta = np.repeat(trk_eta[:, None], L, 1)
    lay_phi = np.repeat(trk_phi[:, None], L, 1)
    r = np.broadcast_to(radii, (2, L))
    tracks = {"event": np.zeros(2, np.int64), "particle": np.array([0, 2]), "pt_gev": np.array([10.0, 5.0]),
              "p_gev": np.array([10.05, 5.06]), "eta": trk_eta, "phi": trk_phi, "charge": np.array([1, -1]),
              "true_pt_gev": np.array([10.0, 5.0]), "chi2": np.array([12.0, 30.0]), "ndf": np.array([12, 15]),
              "layer_eta": lay_eta, "layer_phi": lay_phi, "layer_x_mm": r * np.cos(lay_phi),
              "layer_y_mm": r * np.sin(lay_phi), "layer_z_mm": r * np.sinh(lay_eta),
              "layer_reached": np.ones((2, L), bool)}
    # name: (layer, eta, phi, measured E, {particle: true deposit})
    spec = {"c0": (1, 0.1, 0.2, 4.0, {0: 3.0, 1: 1.0}),     # focal 0.75 -> hard: focal
            "c1": (1, 0.15, 0.25, 4.1, {1: 2.0, 2: 2.0}),   # tie -> lowest index 1 (neutral); focal 0
            "c2": (1, 0.1, 0.3, 1.2, {2: 1.0}),             # other charged only
            "c3": (0, 0.12, 0.21, 0.05, {}),                # noise only
            "c4": (3, 0.1, 0.2, 0.9, {0: 1.0, 1: -0.5}),    # negative truth clipped -> focal fraction 1
            "c5": (1, 0.6, 0.2, 2.0, {1: 2.0})}             # outside DeltaR 0.2 of both tracks
    ids = {k: _nearest_cell(g, v[0], v[1], v[2]) for k, v in spec.items()}
    order = sorted(spec, key=lambda k: ids[k])
    row = {k: i for i, k in enumerate(order)}
    hits = sorted((row[k], p, e) for k in order for p, e in spec[k][4].items())
    cells = {"event": np.zeros(len(order), np.int64), "id": np.array([ids[k] for k in order]),
             "energy_gev": np.array([spec[k][3] for k in order]),
             "true_energy_gev": np.array([sum(spec[k][4].values()) for k in order]),
             "noise_sigma_gev": g.cells["noise_sigma_gev"][[ids[k] for k in order]]}
    hits = {"cell": np.array([h[0] for h in hits], np.int64), "particle": np.array([h[1] for h in hits], np.int64),
            "energy_gev": np.array([h[2] for h in hits], float), "energy_em_gev": np.zeros(len(hits))}
    particles = {"event": np.zeros(3, np.int64), "pdg": np.array([211, 111, -211]), "charge": np.array([1, 0, -1]),
                 "energy_gev": np.array([10.0, 8.0, 5.0]), "pt_gev": np.array([10.0, 8.0, 5.0]),
                 "eta": np.array([0.1, 0.12, 0.15]), "phi": np.array([0.2, 0.22, 0.25])}
    ev = TrackCellEvents(n_events=1, geometry_name=g.name, layer_names=list(names), particles=particles,
                         parents={}, tracks=tracks, cells=cells, hits=hits)
    return ev, row
