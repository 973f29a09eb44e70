"""The kinematic oracle: the cell labels that the true particle kinematics make most likely.

Why
===
The truth oracle (:class:`pcloud.pflow.learned.OracleSegmenter`) knows every cell's true deposits, so its F1 is not
a ceiling that a learned method could approach: below the noise a cell's label is set by a deposit far smaller than
its noise, which no measurement reveals. This oracle knows less: the type, momentum and vertex of every final-state
particle of the event (charged *and* neutral) and the calorimeter response *on average*, but not how this event's
showers fluctuated. Per cell it takes the most probable label given the kinematics:

    label(cell) = argmax_c P(class c deposits the most energy in the cell | particle kinematics),

classes c = each track's particle, and "neutral" (all particles without a track, deposits summed), the label rule
of :meth:`pcloud.core.attribution.Attribution.dominant_track` applied to the truth attribution (the measured energy
is shared in proportion to the true deposits, so noise does not change which class dominates; a cell without any
true deposit is neutral). The probabilities are estimated by simulating the event's own truth particles again
``n_replicas`` times without noise (:func:`pcloud.sim.events.simulate_events`, the same deposit model) and
counting, per cell, how often each class dominates: ``vote = wins / n_replicas``. Expected shower profiles are
made the same way in ATLAS particle flow (averaged single-particle simulation, Eur. Phys. J. C 77 (2017) 466,
section 6), here per event and per cell. :func:`replica_votes` also gives the posterior given the kinematics *and*
the cell's own measured energy (kernel-weighted replicas).

What it is, and what it is not
==============================
It is the Bayes decision for the per-cell accuracy (fraction of cells with the right label) given the kinematics,
up to the sampling error of the votes (~ 1 / sqrt(n_replicas) on a probability; a tie goes to neutral, as in
``dominant_track``). It is not an upper bound of the benchmark's metrics: F1 does not decompose over cells, the
energy-weighted accuracy would favour the class that wins the *bright* cells, and a method that reads the cell
energies sees how this event's showers actually went. Comparing a learned model with it per noise-significance bin
and per kind of lost energy shows which information the model lacks: what it gets wrong and the oracle does not,
knowing the particles would fix.

Only for events that pcloud simulated itself (the replicas must come from the model that made the events).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.attribution import Attribution, particle_track_rows
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


def _winners(cell_row, cls, energy, n_cells: int):
    """Per cell row in [0, n_cells) with deposits (one per (cell, particle), ``cls`` = the particle's track row or -1):
    the track that wins it by the label rule of :meth:`~pcloud.core.attribution.Attribution.dominant_track` (the
    largest track deposit, if it exceeds the summed deposits of the particles without a track). Returns (cell rows,
    winning track rows) of the cells that a track wins."""
    tracked = cls >= 0
    total = np.bincount(cell_row, energy, minlength=n_cells)  # so dominant_track's neutral remainder = untracked sum
    label = Attribution(cell_row[tracked], cls[tracked], energy[tracked]).dominant_track(n_cells, total)
    won = np.nonzero(label >= 0)[0]
    return won, label[won]


@dataclass
class ReplicaVotes:
    """The votes of :func:`replica_votes`, each a ``(cell_row, track_row, vote)`` triple (pairs with vote 0
    absent): ``kinematic`` from the particle kinematics alone, ``with_cell_energy`` also conditioned on the cell's
    own measured energy. ``effective_replicas``: per voted cell (the rows of ``cell_mask``, in order), the effective
    number of replicas behind the ``with_cell_energy`` vote, ``(sum w)^2 / sum w^2`` (``n_replicas`` when the
    measurement does not discriminate, 1 when one replica decides)."""

    kinematic: tuple
    with_cell_energy: tuple
    n_replicas: int
    effective_replicas: np.ndarray


def _pairs(cell, track, weight, n_tracks: int, norm):
    """Summed ``weight`` per (cell row, track row), divided by ``norm[cell row]``; pairs whose sum is 0 dropped."""
    n = max(n_tracks, 1)
    pair, inv = np.unique(cell * n + track, return_inverse=True)
    v = np.bincount(inv, weight, minlength=pair.size)
    c = pair // n
    v = np.clip(v / norm[c], 0.0, 1.0)
    keep = v > 0
    return c[keep], (pair % n)[keep], v[keep]


#: Silverman's rule-of-thumb bandwidth factor of a Gaussian kernel density estimate (h = 1.06 s K^-1/5; B. W.
#: Silverman, Density Estimation for Statistics and Data Analysis, Chapman & Hall 1986, eq. 3.28)
SILVERMAN = 1.06


def replica_votes(events, geometry, n_replicas: int = 16, seed: int = 0, deposit_mode: str | None = None,
                  b_field_t: float | None = None, cell_mask=None, deposit_fn=None, log=None) -> ReplicaVotes:
    """Per (cell row, track row) of ``events``: the share of ``n_replicas`` noise-free re-simulations of the events'
    truth particles in which that track's particle deposits more energy in the cell than any other track's particle
    and than all particles without a track together (module docstring).

    Two estimates from the same K replicas (:class:`ReplicaVotes`): ``kinematic`` counts every replica alike;
    ``with_cell_energy`` weights replica r of a cell by a kernel estimate of the likelihood of the cell's measured
    energy E given the replica's true deposit T_r: ``w_r = exp(-(E - T_r)^2 / (2 s^2))`` with ``s^2 = sigma_noise^2
    + h^2``, the Gaussian electronic noise of the simulation widened by the kernel bandwidth h of the K deposits
    (Silverman's rule, ``h = 1.06 std_r(T_r) K^-1/5``). Without h a bright cell's weights fall on the one replica
    whose deposit is nearest to E (the deposits of a shower vary far more than the noise), i.e. one replica would
    decide. Its posterior P(class | kinematics, E) gives the cell's label from the kinematics *and* its own
    measurement (a cell measured well above its noise was hit; one near zero probably only got noise).

    Only the rows of ``cell_mask`` (default: all cells) get votes. Cells are matched by (event, geometry cell id);
    deposits in cells that ``events`` does not hold are ignored. ``deposit_fn``, ``deposit_mode`` and ``b_field_t``
    are those of :func:`pcloud.sim.events.simulate_events`; the last two default to the ones recorded in
    ``events.meta`` (a value that contradicts the record is an error; ``deposit_fn`` cannot be checked). Cost: K
    noise-free simulations of the events (the loop is over replicas only); memory: the deposits of the replicas in
    the voted cells (sparse), not K x cells.
    """
    from ..sim import tracks as trk
    from ..sim.events import simulate_events

    K = int(n_replicas)
    if K < 1:
        raise ValueError(f"replica_votes: n_replicas must be >= 1, found {n_replicas}")
    if getattr(events, "geometry_name", geometry.name) != geometry.name:
        raise ValueError(f"replica_votes: events were simulated in geometry {events.geometry_name!r}, given "
                         f"{geometry.name!r}")
    meta = getattr(events, "meta", None) or {}
    settings = {}
    for key, given, default in (("deposit_mode", deposit_mode, "total"), ("b_field_t", b_field_t, trk.B_FIELD_T)):
        recorded = meta.get(key)
        if given is not None and recorded is not None and given != recorded:
            raise ValueError(f"replica_votes: {key}={given!r} but the events were simulated with {recorded!r} "
                             "(events.meta); the replicas must use the model that made the events")
        settings[key] = given if given is not None else (recorded if recorded is not None else default)
    truth = truth_particles_of(events)
    n_geo = int(geometry.n_cells)
    cells, tracks = events.cells, events.tracks
    n_all = int(cells["event"].size)
    if cell_mask is not None and np.asarray(cell_mask).shape != (n_all,):
        raise ValueError(f"replica_votes: cell_mask must have one entry per cell row ({n_all}), found shape "
                         f"{np.asarray(cell_mask).shape}")
    rows = np.arange(n_all) if cell_mask is None else np.nonzero(np.asarray(cell_mask, bool))[0]
    cell_key = (np.asarray(cells["event"], np.int64) * n_geo + np.asarray(cells["id"], np.int64))[rows]
    if cell_key.size and np.any(np.diff(cell_key) <= 0):
        raise ValueError("replica_votes: events.cells must be sorted by (event, id) without duplicates")
    e_meas = np.asarray(cells["energy_gev"], np.float64)[rows]
    sigma = np.asarray(cells["noise_sigma_gev"], np.float64)[rows]
    if np.any(sigma <= 0):
        raise ValueError("replica_votes: events.cells['noise_sigma_gev'] must be > 0 on the voted cells")
    n_tracks = int(tracks["particle"].size)
    part_to_track = particle_track_rows(tracks["particle"], truth.event.size)
    rng = np.random.default_rng(seed)
    n = rows.size
    dep_c, dep_t, win_c, win_t, win_e = [], [], [], [], []  # per replica: deposits (sparse) and winners
    for r in range(K):
        rep = simulate_events(geometry, truth, rng, deposit_fn=deposit_fn, noise=False, **settings)
        h = rep.hits
        if n == 0 or h["cell"].size == 0:
            continue
        rk = (np.asarray(rep.cells["event"], np.int64) * n_geo + np.asarray(rep.cells["id"], np.int64))[h["cell"]]
        pos = np.minimum(np.searchsorted(cell_key, rk), n - 1)
        ok = (cell_key[pos] == rk) & (h["energy_gev"] > 0)
        c, t = _winners(pos[ok], part_to_track[h["particle"][ok]], h["energy_gev"][ok], n)
        u, inv = np.unique(pos[ok], return_inverse=True)
        tot = np.bincount(inv, h["energy_gev"][ok], minlength=u.size)
        dep_c.append(u)
        dep_t.append(tot)
        win_c.append(c)
        win_t.append(t)
        win_e.append(tot[np.searchsorted(u, c)])  # a winner deposited, so its cell is among u
        if log:
            log(f"[kinematic oracle] replica {r + 1}/{K}: {int(ok.sum())} deposits in the voted cells")
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
    dep_c, dep_t = cat(dep_c, np.int64), cat(dep_t, np.float64)
    win_c, win_t, win_e = cat(win_c, np.int64), cat(win_t, np.int64), cat(win_e, np.float64)
    # kernel width per cell: noise (+) Silverman bandwidth of the K deposits (replicas without a deposit: 0)
    s1 = np.bincount(dep_c, dep_t, minlength=n)
    s2 = np.bincount(dep_c, dep_t ** 2, minlength=n)
    nz = np.bincount(dep_c, minlength=n)
    spread = np.sqrt(np.maximum(s2 / K - (s1 / K) ** 2, 0.0))
    var = sigma ** 2 + (SILVERMAN * spread * K ** -0.2) ** 2
    lw_dep = -0.5 * (e_meas[dep_c] - dep_t) ** 2 / var[dep_c]
    lw_zero = -0.5 * e_meas ** 2 / var  # the replicas that left nothing in the cell
    top = np.where(nz < K, lw_zero, -np.inf)
    np.maximum.at(top, dep_c, lw_dep)  # per cell, the largest log-weight (stable normalisation)
    w_dep = np.exp(lw_dep - top[dep_c])
    w_zero = np.exp(np.where(nz < K, lw_zero - top, -np.inf))  # 0 where every replica left a deposit
    z = np.bincount(dep_c, w_dep, minlength=n) + (K - nz) * w_zero
    z2 = np.bincount(dep_c, w_dep ** 2, minlength=n) + (K - nz) * w_zero ** 2
    ess = np.divide(z ** 2, z2, out=np.full(n, float(K)), where=z2 > 0)
    w_win = np.exp(-0.5 * (e_meas[win_c] - win_e) ** 2 / var[win_c] - top[win_c])
    norm_k = np.full(n_all, float(K))
    norm_e = np.ones(n_all)
    norm_e[rows] = z
    return ReplicaVotes(kinematic=_pairs(rows[win_c], win_t, np.ones(win_c.size), n_tracks, norm_k),
                        with_cell_energy=_pairs(rows[win_c], win_t, w_win, n_tracks, norm_e), n_replicas=K,
                        effective_replicas=ess)


def kinematic_oracle(events, votes: tuple) -> OracleSegmenter:
    """A segmenter (``predict_fraction`` of per-track clouds, like the learned ones) whose fraction of a cell for the
    focal track is that track's vote (one triple of :class:`ReplicaVotes`): with common inference each cell's label
    is the decision of the module docstring (the class with the most votes; neutral gets ``1 - sum of the track
    votes``)."""
    c, t, v = votes
    return OracleSegmenter.from_shares(events, c, np.asarray(events.tracks["particle"], np.int64)[t], v)
