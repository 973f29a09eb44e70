"""The kinematic oracle: the best cell labels that the true particle kinematics alone can give.

Why
===
The truth oracle (:class:`pcloud.pflow.learned.OracleSegmenter`) knows every cell's true deposits, so its F1 is not
a ceiling that a learned method could approach: below the noise a cell's label is set by a deposit far smaller than
its noise, which no measurement reveals. This oracle knows less: the type, momentum and vertex of every final-state
particle of the event (charged *and* neutral) and the calorimeter response *on average*, but not how this event's
showers fluctuated. It is the Bayes decision for the label of each cell given the kinematics:

    label(cell) = argmax_c P(class c deposits the most energy in the cell | particle kinematics),

classes c = each track's particle, and "neutral" (all particles without a track, deposits summed), exactly the
label rule of :meth:`pcloud.core.attribution.Attribution.dominant_track` applied to the truth attribution (the
measured energy is shared in proportion to the true deposits, so noise does not change which class dominates; a
cell without any true deposit is neutral). The probabilities are estimated by simulating the event's own truth
particles again ``n_replicas`` times without noise (:func:`pcloud.sim.events.simulate_events`, the same deposit
model) and counting, per cell, how often each class dominates: ``vote = wins / n_replicas``. This is how expected
shower profiles are made in ATLAS particle flow too (averaged single-particle simulation, Eur. Phys. J. C 77 (2017)
466, section 6), here per event and per cell.

What it bounds
==============
Any method whose labels depend only on the particle kinematics is at best this good (up to the vote's sampling
error, ~ 1/sqrt(n_replicas) on the probabilities near a tie). A method that sees the cell energies can be better where
they reveal the shower's actual fluctuations (well above the noise), and is worse where it must infer the neutral
particles' kinematics from the cells. Comparing a learned model with this oracle *per noise-significance bin* shows
where the information is missing: below ~1 sigma of noise the cell energy says almost nothing about the label, so
there the kinematic oracle is the relevant reference.

Only for events that pcloud simulated itself (the replicas must come from the model that made the events).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.events import TruthParticles
from .learned import OracleSegmenter

__all__ = ["ReplicaVotes", "kinematic_oracle", "replica_votes", "truth_particles_of"]


def truth_particles_of(events) -> TruthParticles:
    """The final-state truth particles of ``events`` (a :class:`~pcloud.core.events.TrackCellEvents`) in the
    generator's container, in the same particle order, so the particle rows of a re-simulation equal those of
    ``events``."""
    p, r = events.particles, events.parents
    return TruthParticles(n_events=int(events.n_events), event=np.asarray(p["event"], np.int64),
                          pdg=np.asarray(p["pdg"], np.int64), px_gev=np.asarray(p["px_gev"], np.float64),
                          py_gev=np.asarray(p["py_gev"], np.float64), pz_gev=np.asarray(p["pz_gev"], np.float64),
                          energy_gev=np.asarray(p["energy_gev"], np.float64),
                          vertex_mm=np.asarray(p["vertex_mm"], np.float64), parent=np.asarray(p["parent"], np.int64),
                          parent_event=np.asarray(r["event"], np.int64), parent_pdg=np.asarray(r["pdg"], np.int64),
                          parent_mass_gev=np.asarray(r["mass_gev"], np.float64),
                          parent_energy_gev=np.asarray(r["energy_gev"], np.float64),
                          parent_eta=np.asarray(r["eta"], np.float64), parent_phi=np.asarray(r["phi"], np.float64))


def _winners(cell_row, cls, energy, n_tracks: int):
    """Per cell row with a deposit: the class that deposits the most (track row, or -1 = neutral when the summed
    deposits of the particles without a track are at least as large as the best track's). Returns (cell rows,
    winning track rows) of the cells that a track wins."""
    if cell_row.size == 0:
        z = np.zeros(0, np.int64)
        return z, z
    key = cell_row * (n_tracks + 1) + (cls + 1)
    uk, inv = np.unique(key, return_inverse=True)
    e = np.bincount(inv, energy)
    c, k = uk // (n_tracks + 1), uk % (n_tracks + 1) - 1
    neutral = np.zeros(int(c.max()) + 1)
    np.add.at(neutral, c[k < 0], e[k < 0])
    t = k >= 0
    c, k, e = c[t], k[t], e[t]
    order = np.lexsort((-e, c))  # per cell, the largest track deposit first
    first = order[np.r_[True, np.diff(c[order]) != 0]] if order.size else order
    win = e[first] > neutral[c[first]]
    return c[first][win], k[first][win]


@dataclass
class ReplicaVotes:
    """The votes of :func:`replica_votes`, each a ``(cell_row, track_row, vote)`` triple (pairs with vote 0
    absent): ``kinematic`` from the particle kinematics alone, ``with_cell_energy`` also conditioned on the cell's
    own measured energy."""

    kinematic: tuple
    with_cell_energy: tuple
    n_replicas: int


def _pairs(cell, track, weight, n_tracks: int, norm):
    """Summed ``weight`` per (cell row, track row), divided by ``norm[cell row]``."""
    n = max(n_tracks, 1)
    pair, inv = np.unique(cell * n + track, return_inverse=True)
    v = np.bincount(inv, weight, minlength=pair.size)
    c = pair // n
    return c, pair % n, np.clip(v / norm[c], 0.0, 1.0)


def replica_votes(events, geometry, n_replicas: int = 16, seed: int = 0, deposit_mode: str = "total",
                  cell_mask=None, deposit_fn=None, log=None) -> ReplicaVotes:
    """Per (cell row, track row) of ``events``: the share of ``n_replicas`` noise-free re-simulations of the events'
    truth particles in which that track's particle deposits more energy in the cell than any other track's particle
    and than all particles without a track together (module docstring).

    Two estimates from the same replicas (:class:`ReplicaVotes`): ``kinematic`` counts every replica alike;
    ``with_cell_energy`` weights replica r of a cell by the likelihood of the cell's measured energy given the
    replica's true deposit T_r, ``exp(-(E - T_r)^2 / (2 sigma_noise^2))`` (Gaussian electronic noise of the
    simulation), i.e. the Bayes decision given the kinematics *and* the cell's own measurement (a cell measured
    well above its noise was hit; one near zero probably only got noise). Only the rows of ``cell_mask`` (default:
    all cells) get votes. Cells are matched by (event, geometry cell id); deposits in cells that ``events`` does not
    hold are ignored. ``deposit_fn`` / ``deposit_mode``: those of :func:`pcloud.sim.events.simulate_events` (they
    must be the ones that made ``events``). Cost: ``n_replicas`` noise-free simulations of the events (the loop is
    over replicas only).
    """
    from ..sim.events import simulate_events

    if int(n_replicas) < 1:
        raise ValueError(f"replica_votes: n_replicas must be >= 1, found {n_replicas}")
    if getattr(events, "geometry_name", geometry.name) != geometry.name:
        raise ValueError(f"replica_votes: events were simulated in geometry {events.geometry_name!r}, given "
                         f"{geometry.name!r}")
    truth = truth_particles_of(events)
    n_geo = int(geometry.n_cells)
    cells, tracks = events.cells, events.tracks
    n_all = int(cells["event"].size)
    rows = np.arange(n_all) if cell_mask is None else np.nonzero(np.asarray(cell_mask, bool))[0]
    if cell_mask is not None and np.asarray(cell_mask).shape != (n_all,):
        raise ValueError(f"replica_votes: cell_mask must have one entry per cell row ({n_all}), found shape "
                         f"{np.asarray(cell_mask).shape}")
    cell_key = (np.asarray(cells["event"], np.int64) * n_geo + np.asarray(cells["id"], np.int64))[rows]
    if cell_key.size and np.any(np.diff(cell_key) <= 0):
        raise ValueError("replica_votes: events.cells must be sorted by (event, id) without duplicates")
    e_meas = np.asarray(cells["energy_gev"], np.float64)[rows]
    sigma = np.asarray(cells["noise_sigma_gev"], np.float64)[rows]
    if np.any(sigma <= 0):
        raise ValueError("replica_votes: events.cells['noise_sigma_gev'] must be > 0 on the voted cells")
    n_tracks = int(tracks["particle"].size)
    part_to_track = np.full(int(truth.event.size), -1, np.int64)
    part_to_track[np.asarray(tracks["particle"], np.int64)] = np.arange(n_tracks)
    rng = np.random.default_rng(seed)
    K, n = int(n_replicas), rows.size
    winner = np.full((K, n), -1, np.int64)
    log_w = np.empty((K, n))
    for r in range(K):
        rep = simulate_events(geometry, truth, rng, deposit_fn=deposit_fn, deposit_mode=deposit_mode, noise=False)
        h = rep.hits
        rk = (np.asarray(rep.cells["event"], np.int64) * n_geo + np.asarray(rep.cells["id"], np.int64))[h["cell"]]
        pos = np.clip(np.searchsorted(cell_key, rk), 0, max(n - 1, 0))
        ok = (n > 0) & (cell_key[pos] == rk) & (h["energy_gev"] > 0)
        c, t = _winners(pos[ok], part_to_track[h["particle"][ok]], h["energy_gev"][ok], n_tracks)
        winner[r, c] = t
        deposit = np.bincount(pos[ok], h["energy_gev"][ok], minlength=n)
        log_w[r] = -0.5 * ((e_meas - deposit) / sigma) ** 2
        if log:
            log(f"[kinematic oracle] replica {r + 1}/{K}: {int(ok.sum())} deposits in the voted cells")
    w = np.exp(log_w - log_w.max(axis=0))  # per cell, the likeliest replica has weight 1
    won = winner >= 0
    rr, cc = np.nonzero(won)
    cell_rows, track_rows = rows[cc], winner[rr, cc]
    norm_k = np.full(n_all, float(K))
    norm_e = np.ones(n_all)
    norm_e[rows] = w.sum(axis=0)
    return ReplicaVotes(kinematic=_pairs(cell_rows, track_rows, np.ones(cc.size), n_tracks, norm_k),
                        with_cell_energy=_pairs(cell_rows, track_rows, w[rr, cc], n_tracks, norm_e), n_replicas=K)


def kinematic_oracle(events, votes: tuple) -> OracleSegmenter:
    """A segmenter (``predict_fraction`` of per-track clouds, like the learned ones) whose fraction of a cell for the
    focal track is that track's vote (one triple of :class:`ReplicaVotes`): with common inference each cell's label
    is the Bayes decision of the module docstring (the class with the most votes; neutral gets ``1 - sum of the
    track votes``)."""
    c, t, v = votes
    return OracleSegmenter.from_shares(events, c, np.asarray(events.tracks["particle"], np.int64)[t], v)
