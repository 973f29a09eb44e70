"""Cell-energy attribution: the common output of every particle-flow method (learned, rule-based, trivial).

An :class:`Attribution` says, for every calorimeter cell of every event, how much of the cell's *measured* energy
is given to each track of the event; whatever is not given to a track is the neutral remainder of that cell.
Conservation is built in: for every cell ``sum_tracks(attributed) + neutral = measured energy`` (the neutral
remainder is derived, never stored), and every method must produce non-negative attributions whose sum does not
exceed a cell's positive energy (cells with E <= 0, i.e. noise, keep all of it as neutral).

Layout (flat arrays, rows of the :class:`pcloud.core.events.TrackCellEvents` they refer to):

=====================  ==============================================================================
``cell_row``    (K,)   row of the cell in ``events.cells`` (so event, cell_id and energy come from there)
``track_row``   (K,)   row of the track in ``events.tracks``
``energy_gev``  (K,)   energy of that cell given to that track (GeV, >= 0)
=====================  ==============================================================================

Truth in the same form comes from :func:`truth_attribution`: a cell's measured energy is split between tracks in
proportion to the true deposits of each track's particle (``hits``); the share of neutral particles and of noise
stays neutral. Using the *measured* energy (not the true one) for both truth and predictions makes the two
directly comparable cell by cell, and makes the truth conserve energy exactly as well.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Attribution:
    cell_row: np.ndarray
    track_row: np.ndarray
    energy_gev: np.ndarray
    method: str = ""

    def __post_init__(self):
        self.cell_row = np.asarray(self.cell_row, dtype=np.int64)
        self.track_row = np.asarray(self.track_row, dtype=np.int64)
        self.energy_gev = np.asarray(self.energy_gev, dtype=np.float64)
        if not (self.cell_row.shape == self.track_row.shape == self.energy_gev.shape) or self.cell_row.ndim != 1:
            raise ValueError(f"Attribution({self.method}): cell_row, track_row, energy_gev must be 1-D of one length, "
                             f"found {self.cell_row.shape}, {self.track_row.shape}, {self.energy_gev.shape}")
        if np.any(~np.isfinite(self.energy_gev)) or np.any(self.energy_gev < 0):
            raise ValueError(f"Attribution({self.method}): attributed energies must be finite and >= 0")

    # ---------------------------------------------------------------------------------------- derived views
    def per_cell_charged(self, n_cells: int) -> np.ndarray:
        """Energy given to tracks, per cell row (GeV)."""
        return np.bincount(self.cell_row, weights=self.energy_gev, minlength=n_cells)

    def per_track(self, n_tracks: int) -> np.ndarray:
        """Energy given to each track (GeV)."""
        return np.bincount(self.track_row, weights=self.energy_gev, minlength=n_tracks)

    def neutral(self, cell_energy_gev: np.ndarray) -> np.ndarray:
        """Neutral remainder per cell row: measured - charged (GeV)."""
        return np.asarray(cell_energy_gev, np.float64) - self.per_cell_charged(len(cell_energy_gev))

    def dominant_track(self, n_cells: int, cell_energy_gev: np.ndarray | None = None) -> np.ndarray:
        """Hard label per cell row: the track row with the largest share, or -1 when the neutral remainder is
        larger than every track's share (or the cell has no attribution)."""
        out = np.full(n_cells, -1, dtype=np.int64)
        if self.cell_row.size == 0:
            return out
        order = np.lexsort((-self.energy_gev, self.cell_row))
        first = order[np.r_[True, np.diff(self.cell_row[order]) != 0]]
        best_e = self.energy_gev[first]
        rows = self.cell_row[first]
        if cell_energy_gev is not None:
            neutral = self.neutral(cell_energy_gev)[rows]
            keep = best_e > neutral
            rows, first = rows[keep], first[keep]
        out[rows] = self.track_row[first]
        return out

    def check_rows(self, n_cells: int, n_tracks: int, what: str) -> None:
        """Raise ValueError, naming ``what``, unless every cell row lies in ``[0, n_cells)`` and every track row in
        ``[0, n_tracks)`` (the rows of the events the attribution is used with)."""
        for name, rows, n in (("cell_row", self.cell_row, n_cells), ("track_row", self.track_row, n_tracks)):
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise ValueError(f"{what}: Attribution({self.method}).{name} must be in [0, {n}), found "
                                 f"[{rows.min()}, {rows.max()}]")

    def check_conservation(self, cell_energy_gev: np.ndarray, atol: float = 1e-9) -> None:
        """Raise if any cell is given more than its positive measured energy (beyond ``atol`` GeV)."""
        e = np.asarray(cell_energy_gev, np.float64)
        charged = self.per_cell_charged(e.size)
        over = charged - np.maximum(e, 0.0)
        if np.any(over > atol * np.maximum(1.0, np.abs(e))):
            i = int(np.argmax(over))
            raise AssertionError(f"Attribution({self.method}): cell row {i} gets {charged[i]:.6g} GeV from tracks but "
                                 f"measured {e[i]:.6g} GeV")


def particle_track_rows(track_particle, n_particles: int) -> np.ndarray:
    """Track row of every particle row (-1 for particles without a track), from the particle row of each track
    (``tracks["particle"]``)."""
    track_particle = np.asarray(track_particle, np.int64)
    out = np.full(int(n_particles), -1, np.int64)
    out[track_particle] = np.arange(track_particle.size)
    return out


def truth_attribution(events) -> Attribution:
    """The true attribution of :class:`pcloud.core.events.TrackCellEvents` (see the module docstring)."""
    cells, hits, tracks = events.cells, events.hits, events.tracks
    n_cells = cells["event"].size
    part_to_track = particle_track_rows(tracks["particle"], events.particles["event"].size)
    true_total = np.bincount(hits["cell"], weights=np.clip(hits["energy_gev"], 0, None), minlength=n_cells)
    t_row = part_to_track[hits["particle"]]
    m = t_row >= 0
    measured = np.clip(cells["energy_gev"], 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(true_total[hits["cell"][m]] > 0,
                        np.clip(hits["energy_gev"][m], 0, None) / true_total[hits["cell"][m]], 0.0)
    # the measured (positive) energy is shared like the true deposits, so noise is split in the same proportions
    e = frac * measured[hits["cell"][m]]
    return Attribution(hits["cell"][m], t_row[m], e, method="truth")
