"""Residual track clouds: the clouds iterative inference would build if every earlier subtraction were exact.

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
At inference the subtraction is the model's own, so the clouds still differ from these by its errors (scheduled
sampling, S. Bengio et al., NeurIPS 2015, arXiv:1506.03099, would feed those back; not done here).
"""
from __future__ import annotations

import dataclasses

import awkward as ak
import numpy as np

from ..core.attribution import particle_track_rows, truth_attribution
from .clouds import track_clouds
from .inference import track_order

__all__ = ["residual_track_clouds"]


def residual_track_clouds(events, geometry, dr_max: float = 0.2, cell_mask=None, cell_graph: bool = False):
    """Clouds of every track of pT rank >= 1 with the true shares of its event's higher-pT tracks removed (module
    docstring), in rank order (all rank-1 clouds of the events, then rank 2, ...); None when no event has two
    tracks reaching the calorimeter. Arguments as :func:`~pcloud.pflow.clouds.track_clouds`."""
    rows, rank = track_order(events)
    if rank.size == 0 or int(rank.max()) < 1:
        return None
    n_tracks = np.asarray(events.tracks["event"]).size
    rank_of = np.full(n_tracks, -1, np.int64)
    rank_of[rows] = rank
    truth = truth_attribution(events)
    share_rank = rank_of[np.asarray(truth.track_row, np.int64)]
    part_to_track = particle_track_rows(events.tracks["particle"], np.asarray(events.particles["event"]).size)
    hit_track = part_to_track[np.asarray(events.hits["particle"])]
    hit_rank = np.where(hit_track >= 0, rank_of[np.maximum(hit_track, 0)], -1)
    e = np.asarray(events.cells["energy_gev"], np.float64)
    out = []
    for k in range(1, int(rank.max()) + 1):
        m = (share_rank >= 0) & (share_rank < k)
        taken = np.bincount(truth.cell_row[m], truth.energy_gev[m], minlength=e.size)
        e_res = np.where(e > 0, np.clip(e - taken, 0.0, None), e)
        keep = ~((hit_rank >= 0) & (hit_rank < k))
        ev_k = dataclasses.replace(events, hits={name: np.asarray(v)[keep] for name, v in events.hits.items()})
        out.append(track_clouds(ev_k, geometry, dr_max=dr_max, cell_energy_gev=e_res, tracks=rows[rank == k],
                                cell_mask=cell_mask, cell_graph=cell_graph))
    return ak.concatenate(out) if len(out) > 1 else out[0]
