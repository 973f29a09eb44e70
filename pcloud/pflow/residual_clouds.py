"""Residual track clouds: the clouds iterative inference builds for the tracks after an event's first, with the
earlier tracks' subtractions exact (teacher forcing) or as a given attribution made them (a model's own).

Iterative inference (:func:`pcloud.pflow.inference.iterative_inference`) predicts the tracks of an event in
descending pT and subtracts each prediction before the next track's cloud is built, so every track after the first
is predicted on a *residual* cloud. A segmenter trained only on the untouched clouds of
:func:`~pcloud.pflow.clouds.track_clouds` never sees such a cloud. :func:`residual_track_clouds` makes them for
training: for the track of pT rank ``k >= 1`` of an event (rank as :func:`~pcloud.pflow.inference.track_order`), the
true shares of the tracks of rank ``< k`` are removed,

* from the cell energies: ``E_res = max(E+ - sum_{rank < k} share_t, 0)`` with the shares of
  :func:`~pcloud.core.attribution.truth_attribution` (the measured energy split like the true deposits), cells
  with ``E > 0`` that this empties drop out of the cloud as they do in iterative inference;
* from the truth lists: the deposits of those tracks' particles are dropped, so the focal fraction of a cell is
  ``h_focal / (H - h_removed)``, which times ``E_res`` is again the focal track's true share of the measured energy.

This is teacher forcing (R. J. Williams, D. Zipser, "A learning algorithm for continually running fully recurrent
neural networks", Neural Computation 1 (1989) 270): the model is shown the states the ideal sequence passes through.

At inference the subtraction is the model's own, so the clouds differ from these by its errors. With ``subtracted``
(an :class:`~pcloud.core.attribution.Attribution` of what the earlier tracks took, e.g. a trained segmenter's
:func:`~pcloud.pflow.inference.iterative_inference` with ``cleanup_sigma=None``) the clouds are those states instead,
with the truth of what is left in them: the cells lose the *predicted* takes, ``E_res = max(E+ - sum_{rank < k}
p_ct, 0)`` (cells with ``E <= 0`` keep E, as in iterative inference), and each particle's true share
``s_j = E+ h_j / H`` of a cell becomes

* for the particle of an earlier track t: ``r_t = max(s_t - p_ct, 0)`` (what that track left behind; a track with
  no positive share in the cell keeps nothing there),
* for every other particle: ``gamma_c s_j`` with ``gamma_c = clip(1 - X_c / S_c, 0, 1)``, where ``X_c = sum_t
  max(p_ct - s_t, 0)`` is what the earlier tracks took beyond their true shares and ``S_c`` the other particles'
  summed share: an over-subtraction eats into the others in proportion to their shares.

The deposits are rescaled by these factors (a factor 0 removes the deposit), so the focal fraction times ``E_res`` is
again the focal track's true share of what is left (exactly while ``X_c <= S_c``; beyond, the others are gone and
the earlier tracks' leftovers keep their proportions). Training a model on the states that a first model's
subtractions lead to, labelled with the truth, is one round of data aggregation (DAgger: S. Ross, G. Gordon,
D. Bagnell, "A reduction of imitation learning and structured prediction to no-regret online learning", AISTATS 2011,
arXiv:1011.0686; the second model then meets its own subtractions at inference, which only approach the first's.
Scheduled sampling, S. Bengio et al., NeurIPS 2015, arXiv:1506.03099, mixes the two states during training).
``subtracted`` = the truth attribution gives the teacher-forced clouds.
"""
from __future__ import annotations

import dataclasses

import awkward as ak
import numpy as np

from ..core.attribution import particle_track_rows, truth_attribution
from .clouds import track_clouds
from .inference import track_order

__all__ = ["residual_track_clouds", "track_clouds_with_residuals", "share_taken_before_turn"]


def residual_track_clouds(events, geometry, dr_max: float = 0.2, cell_mask=None, cell_graph: bool = False,
                          subtracted=None):
    """Clouds of every track of pT rank >= 1 with its event's higher-pT tracks subtracted (module docstring): their
    true shares (default), or what ``subtracted`` (an :class:`~pcloud.core.attribution.Attribution`) gives them, in
    rank order (all rank-1 clouds of the events, then rank 2, ...); None when no event has two tracks reaching the
    calorimeter. Other arguments as :func:`~pcloud.pflow.clouds.track_clouds`."""
    out = []
    for tracks, e_res, hits_k, _ in _residual_steps(events, subtracted, "residual_track_clouds"):
        ev_k = dataclasses.replace(events, hits=hits_k)
        out.append(track_clouds(ev_k, geometry, dr_max=dr_max, cell_energy_gev=e_res, tracks=tracks,
                                cell_mask=cell_mask, cell_graph=cell_graph))
    if not out:
        return None
    return ak.concatenate(out) if len(out) > 1 else out[0]


def track_clouds_with_residuals(events, geometry, dr_max: float = 0.2, cell_mask=None, cell_graph: bool = False,
                                subtracted=None):
    """The untouched clouds of every track (:func:`~pcloud.pflow.clouds.track_clouds`) followed by the residual
    clouds of :func:`residual_track_clouds` (same arguments), built with one cell selection: a training set."""
    kw = {"dr_max": dr_max, "cell_mask": cell_mask, "cell_graph": cell_graph}
    clouds = track_clouds(events, geometry, **kw)
    extra = residual_track_clouds(events, geometry, subtracted=subtracted, **kw)
    return clouds if extra is None else ak.concatenate([clouds, extra])


def share_taken_before_turn(events, subtracted) -> tuple[np.ndarray, np.ndarray]:
    """Per track row: its true share of the measured energy (GeV, the truth attribution's sum over its cells) and the
    part of it that the tracks of higher pT have already taken (``subtracted``, e.g. iterative inference without
    clean-up) when its own turn comes (GeV; ``s (1 - gamma_c)`` per cell, module docstring). Iterative inference can
    never give that part back to the track. Tracks of rank 0, and tracks not reaching the calorimeter, lose nothing."""
    n_tracks = np.asarray(events.tracks["event"]).size
    hits = {name: np.asarray(v) for name, v in events.hits.items()}
    share = _hit_shares(hits, np.asarray(events.cells["energy_gev"], np.float64))
    track = particle_track_rows(events.tracks["particle"], np.asarray(events.particles["event"]).size)[hits["particle"]]
    has = track >= 0
    true = np.bincount(track[has], share[has], minlength=n_tracks)
    taken = np.zeros(n_tracks)
    for tracks, _, _, scale in _residual_steps(events, subtracted, "share_taken_before_turn"):
        focal = has & np.isin(track, tracks)
        np.add.at(taken, track[focal], share[focal] * (1.0 - scale[focal]))
    return true, taken


def _residual_steps(events, subtracted, where: str):
    """For k = 1 .. the largest pT rank: the rank-k track rows, the cell energies left by the tracks of rank < k, the
    deposits left (rescaled; emptied ones dropped) and the factor each original deposit was scaled by (module
    docstring; ``subtracted`` None: the truth, exactly)."""
    rows, rank = track_order(events)
    if rank.size == 0 or int(rank.max()) < 1:
        return
    n_tracks = np.asarray(events.tracks["event"]).size
    n_cells = np.asarray(events.cells["event"]).size
    rank_of = np.full(n_tracks, -1, np.int64)
    rank_of[rows] = rank
    taken_by = truth_attribution(events) if subtracted is None else subtracted
    taken_by.check_rows(n_cells, n_tracks, f"{where} (subtracted)")
    t_rows, c_rows = taken_by.track_row, taken_by.cell_row
    take_rank = rank_of[t_rows]
    hits = {name: np.asarray(v) for name, v in events.hits.items()}
    hit_track = particle_track_rows(events.tracks["particle"], np.asarray(events.particles["event"]).size)[
        hits["particle"]]
    hit_rank = np.where(hit_track >= 0, rank_of[np.maximum(hit_track, 0)], -1)
    e = np.asarray(events.cells["energy_gev"], np.float64)
    if subtracted is not None:
        hit_share = _hit_shares(hits, e)
        key_hit = np.where(hit_track >= 0, hits["cell"] * n_tracks + hit_track, -1)
        take_key, take_inv = np.unique(c_rows * n_tracks + t_rows, return_inverse=True)
        take_inv = take_inv.ravel()
    for k in range(1, int(rank.max()) + 1):
        m = (take_rank >= 0) & (take_rank < k)
        taken = np.bincount(c_rows[m], taken_by.energy_gev[m], minlength=n_cells)
        e_res = np.where(e > 0, np.clip(e - taken, 0.0, None), e)
        earlier = (hit_rank >= 0) & (hit_rank < k)
        if subtracted is None:  # exact: the earlier tracks' deposits are gone, the others untouched
            scale = np.where(earlier, 0.0, 1.0)
        else:
            p_key = np.bincount(take_inv, np.where(m, taken_by.energy_gev, 0.0), minlength=take_key.size)
            scale = _deposit_scale(hit_share, earlier, key_hit, take_key, p_key, n_tracks, n_cells, hits["cell"])
        keep = scale > 1e-12  # an emptied deposit is gone
        hits_k = {name: v[keep] for name, v in hits.items()}
        for name in ("energy_gev", "energy_em_gev"):
            if name in hits_k and subtracted is not None:
                hits_k[name] = (hits_k[name] * scale[keep]).astype(hits_k[name].dtype)
        yield rows[rank == k], e_res, hits_k, scale


def _hit_shares(hits, e) -> np.ndarray:
    """Each deposit's share of its cell's positive measured energy, ``E+ h / H`` (as
    :func:`~pcloud.core.attribution.truth_attribution`; 0 where the cell has no positive deposit)."""
    h = np.clip(hits["energy_gev"].astype(np.float64), 0, None)
    total = np.bincount(hits["cell"], h, minlength=e.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total[hits["cell"]] > 0, h / total[hits["cell"]], 0.0) * np.clip(e, 0, None)[hits["cell"]]


def _deposit_scale(share, earlier, key_hit, take_key, p_key, n_tracks, n_cells, cell) -> np.ndarray:
    """The factor of every deposit after the earlier tracks took ``p_key`` (GeV) of the (cell, track) pairs
    ``take_key`` = ``cell * n_tracks + track`` (module docstring): an earlier track's own deposit keeps
    ``max(s - p, 0) / s``, every other deposit of its cell ``gamma_c``."""
    pos = np.clip(np.searchsorted(take_key, key_hit), 0, max(take_key.size - 1, 0))
    found = earlier & (take_key[pos] == key_hit) if take_key.size else np.zeros_like(earlier)
    # the true share of every taken (cell, track) pair (summed over the pair's deposits, should there be several)
    s_key = np.zeros(take_key.size)
    np.add.at(s_key, pos[found], share[found])
    with np.errstate(divide="ignore", invalid="ignore"):
        keep_key = np.where(s_key > 0, np.clip(s_key - p_key, 0.0, None) / s_key, 0.0)
    # what the earlier tracks took beyond their true shares, per cell (a take from a cell without the track's
    # deposit counts whole)
    excess = np.bincount(take_key // max(n_tracks, 1), np.clip(p_key - s_key, 0.0, None), minlength=n_cells)
    others = np.bincount(cell, np.where(earlier, 0.0, share), minlength=n_cells)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where((excess > 0) & (others > 0), np.clip(1.0 - excess / others, 0.0, 1.0), 1.0)
        own = np.where(found, keep_key[pos] if take_key.size else 1.0, np.where(share > 0, 1.0, 0.0))
        return np.where(earlier, own, gamma[cell])
