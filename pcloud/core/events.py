"""The events of particle-flow studies: truth particles, tracks, calorimeter cells and per-cell truth.

These containers pass between the simulation (:mod:`pcloud.sim.events`), the MLTree reader/writer
(:mod:`pcloud.io.mltree`), the point-cloud builders and the particle-flow methods (:mod:`pcloud.pflow`).

Layout of :class:`TrackCellEvents`
----------------------------------
Flat arrays with offsets (CSR): the rows of event i are ``offsets[i]:offsets[i + 1]``.

=================  ===========================================================================================
group              arrays
=================  ===========================================================================================
particles (N_P)    ``event, pdg, charge, mass_gev, energy_gev, px_gev, py_gev, pz_gev, pt_gev, eta, phi,
                   vertex_mm (N_P, 3), parent`` (row in the parent arrays, -1 none), ``showered``;
                   ``particle_offsets``. Final-state particles only (pi0 counted as final).
parents (N_R)      ``event, pdg, mass_gev, energy_gev, eta, phi``
tracks (N_T)       ``event, particle`` (global particle row, -1 none), ``pt_gev`` (measured),
                   ``p_gev, eta, phi, charge`` (measured), ``true_pt_gev, chi2, ndf``; per layer (N_T, L):
                   ``layer_eta, layer_phi, layer_x_mm, layer_y_mm, layer_z_mm, layer_reached``;
                   ``layer_names`` on the container; ``track_offsets``.
cells (N_C)        ``event, id`` (flat geometry index), ``energy_gev`` (with noise),
                   ``true_energy_gev`` (sum of deposits), ``noise_sigma_gev``; ``cell_offsets``.
                   Sorted by (event, id).
hits (N_H)         per (cell, particle) truth: ``cell`` (row in the cell arrays), ``particle`` (global
                   particle row), ``energy_gev, energy_em_gev`` (EM = from EM sub-showers incl. pi0
                   photons; non-EM = total - EM). Sorted by cell row.
=================  ===========================================================================================

Units: GeV, mm, rad.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# ---------------------------------------------------------------------------------------------- truth particles
@dataclass
class TruthParticles:
    """Final-state truth particles of ``n_events`` events (flat, sorted by event) and their parents.

    Momenta in GeV, vertices in mm (collider frame). ``parent`` is a row of the parent arrays or -1.
    """

    n_events: int
    event: np.ndarray
    pdg: np.ndarray
    px_gev: np.ndarray
    py_gev: np.ndarray
    pz_gev: np.ndarray
    energy_gev: np.ndarray
    vertex_mm: np.ndarray
    parent: np.ndarray
    parent_event: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parent_pdg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parent_mass_gev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_energy_gev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_eta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent_phi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        n = len(self.event)
        for k in ("pdg", "px_gev", "py_gev", "pz_gev", "energy_gev", "parent"):
            if len(getattr(self, k)) != n:
                raise ValueError(f"TruthParticles: {k!r} has length {len(getattr(self, k))}, expected {n}")
        self.vertex_mm = np.asarray(self.vertex_mm, dtype=np.float64).reshape(n, 3)
        if n and np.any(np.diff(self.event) < 0):
            raise ValueError("TruthParticles: particles must be sorted by event")
        if n and (self.event.min() < 0 or self.event.max() >= self.n_events):
            raise ValueError(f"TruthParticles: event indices must be in [0, {self.n_events}), found "
                             f"[{self.event.min()}, {self.event.max()}]")



def offsets_from_index(event: np.ndarray, n_events: int) -> np.ndarray:
    """CSR offsets (n_events + 1) of rows sorted by event index."""
    return np.searchsorted(np.asarray(event), np.arange(n_events + 1), side="left").astype(np.int64)


@dataclass
class TrackCellEvents:
    """Events of truth particles, tracks, cells and per-cell truth as flat arrays; see the module docstring."""

    n_events: int
    geometry_name: str
    layer_names: list
    particles: dict
    parents: dict
    tracks: dict
    cells: dict
    hits: dict
    meta: dict = field(default_factory=dict)

    #: index columns of each group, stored as int64 (row numbers and cross-references)
    INDEX_COLUMNS = {"particles": ("event", "parent"), "parents": ("event",), "tracks": ("event", "particle"),
                     "cells": ("event", "id"), "hits": ("cell", "particle")}

    def __post_init__(self):
        for name, cols in self.INDEX_COLUMNS.items():
            group = getattr(self, name)
            for c in cols:
                if c in group:
                    group[c] = np.asarray(group[c]).astype(np.int64, copy=False)
        self.particle_offsets = offsets_from_index(self.particles["event"], self.n_events)
        self.track_offsets = offsets_from_index(self.tracks["event"], self.n_events)
        self.cell_offsets = offsets_from_index(self.cells["event"], self.n_events)
        for name, group in (("particles", self.particles), ("tracks", self.tracks), ("cells", self.cells),
                            ("hits", self.hits), ("parents", self.parents)):
            lens = {k: len(v) for k, v in group.items()}
            if len(set(lens.values())) > 1:
                raise ValueError(f"TrackCellEvents: arrays of {name!r} differ in length: {lens}")
        if self.cells["event"].size and np.any(np.diff(self.cells["event"] * (1 << 32) + self.cells["id"]) <= 0):
            raise ValueError("TrackCellEvents: cells must be sorted by (event, id) without duplicates")

    def __len__(self) -> int:
        return self.n_events

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def event(self, i: int) -> dict:
        """A view of event ``i``: dicts of the particle, track and cell rows (hits keep global rows)."""
        if not 0 <= i < self.n_events:
            raise IndexError(f"event {i} out of range [0, {self.n_events})")
        sl = lambda off: slice(off[i], off[i + 1])  # noqa: E731
        c0, c1 = self.cell_offsets[i], self.cell_offsets[i + 1]
        hm = (self.hits["cell"] >= c0) & (self.hits["cell"] < c1)
        return {"particles": {k: v[sl(self.particle_offsets)] for k, v in self.particles.items()},
                "tracks": {k: v[sl(self.track_offsets)] for k, v in self.tracks.items()},
                "cells": {k: v[sl(self.cell_offsets)] for k, v in self.cells.items()},
                "hits": {k: v[hm] for k, v in self.hits.items()}}


def select_events(events, which):
    """The events ``which`` (bool mask over events, or sorted indices) of a TrackCellEvents as a new one, rows and
    cross-references (hits -> cells/particles, tracks -> particles, particles -> parents) renumbered. The original
    event numbers are kept in ``meta["event_number"]``."""
    n = events.n_events
    w = np.asarray(which)
    keep = w.astype(bool) if w.dtype == bool else np.isin(np.arange(n), w)
    if keep.shape != (n,):
        raise ValueError(f"select_events: mask must have one entry per event ({n}), found shape {keep.shape}")
    new_ev = np.cumsum(keep) - 1

    def rows(group):
        m = keep[np.asarray(group.get("event", np.zeros(0)), np.int64)]
        remap = np.full(m.size, -1, np.int64)
        remap[m] = np.arange(int(m.sum()))
        return m, remap

    pm, p_map = rows(events.particles)
    rm, r_map = rows(events.parents)
    tm, _ = rows(events.tracks)
    cm, c_map = rows(events.cells)
    hm = cm[events.hits["cell"]]
    particles = {k: v[pm] for k, v in events.particles.items()}
    particles["event"] = new_ev[particles["event"]]
    par = particles["parent"]
    mapped = np.full(par.shape, -1, np.int64)
    has = par >= 0
    mapped[has] = r_map[par[has]]
    particles["parent"] = mapped
    parents = {k: v[rm] for k, v in events.parents.items()}
    parents["event"] = new_ev[parents["event"]]
    tracks = {k: v[tm] for k, v in events.tracks.items()}
    tracks["event"] = new_ev[tracks["event"]]
    tracks["particle"] = p_map[tracks["particle"]]
    cells = {k: v[cm] for k, v in events.cells.items()}
    cells["event"] = new_ev[cells["event"]]
    hits = {k: v[hm] for k, v in events.hits.items()}
    hits["cell"] = c_map[hits["cell"]]
    hits["particle"] = p_map[hits["particle"]]
    old_en = np.asarray(events.meta.get("event_number", np.arange(n)), np.int64)
    meta = {**events.meta, "event_number": old_en[keep]}
    return TrackCellEvents(n_events=int(keep.sum()), geometry_name=events.geometry_name,
                           layer_names=list(events.layer_names), particles=particles, parents=parents, tracks=tracks,
                           cells=cells, hits=hits, meta=meta)


def concatenate_events(parts) -> TrackCellEvents:
    """Join :class:`TrackCellEvents` of one geometry and layer list (e.g. several files) into one; the rows and
    cross-references (hits -> cells/particles, tracks -> particles, particles -> parents) are renumbered. Event
    numbers in ``meta["event_number"]`` are kept (default: the position in each part)."""
    parts = list(parts)
    if not parts:
        raise ValueError("concatenate_events: nothing to concatenate")
    first = parts[0]
    for p in parts[1:]:
        if p.geometry_name != first.geometry_name or list(p.layer_names) != list(first.layer_names):
            raise ValueError(f"concatenate_events: geometry/layers {p.geometry_name} {list(p.layer_names)} differ "
                             f"from {first.geometry_name} {list(first.layer_names)}")
    if len(parts) == 1:
        return first

    def shifted(groups, key, col, offsets, keep_negative=False):
        out = []
        for g, off in zip(groups, offsets):
            v = np.asarray(g[key][col])
            out.append(np.where(v >= 0, v + off, v) if keep_negative else v + off)
        return np.concatenate(out)

    n_ev = np.cumsum([0] + [p.n_events for p in parts])[:-1]
    n_cells = np.cumsum([0] + [p.cells["event"].size for p in parts])[:-1]
    n_part = np.cumsum([0] + [p.particles["event"].size for p in parts])[:-1]
    n_par = np.cumsum([0] + [len(p.parents.get("event", ())) for p in parts])[:-1]
    groups = [{"particles": p.particles, "parents": p.parents, "tracks": p.tracks, "cells": p.cells,
               "hits": p.hits} for p in parts]

    def group(name, shifts):
        keys = [k for k in groups[0][name] if all(k in g[name] for g in groups)]
        out = {k: np.concatenate([np.asarray(g[name][k]) for g in groups]) for k in keys}
        for col, (offsets, neg) in shifts.items():
            if col in out:
                out[col] = shifted(groups, name, col, offsets, neg)
        return out

    particles = group("particles", {"event": (n_ev, False), "parent": (n_par, True)})
    parents = group("parents", {"event": (n_ev, False)})
    tracks = group("tracks", {"event": (n_ev, False), "particle": (n_part, True)})
    cells = group("cells", {"event": (n_ev, False)})
    hits = group("hits", {"cell": (n_cells, False), "particle": (n_part, False)})
    en = np.concatenate([np.asarray(p.meta.get("event_number", np.arange(p.n_events)), np.int64) for p in parts])
    meta = {**first.meta, "event_number": en, "n_parts": len(parts)}
    return TrackCellEvents(n_events=int(sum(p.n_events for p in parts)), geometry_name=first.geometry_name,
                           layer_names=list(first.layer_names), particles=particles, parents=parents, tracks=tracks,
                           cells=cells, hits=hits, meta=meta)
