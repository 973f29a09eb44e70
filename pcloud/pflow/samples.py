"""Event samples for the particle-flow benchmark: the rho/Delta gun with a dedicated *dense* component.

Seed 002 ("The current segmentation system fails in complex environments"): the interesting regime for learned
particle flow is where showers of different particles overlap. In the built-in gun (:func:`pcloud.sim.events.
generate_gun`) a rho -> pi pi0 or Delta -> N pi decay already puts its two daughters close together (opening angle
~ 2m/E, i.e. 0.015-0.15 rad for 10-100 GeV rho), and several parents per event sit at a chosen DeltaR from the first.
:func:`mixture_truth` draws two gun samples and concatenates them event-wise:

* the *standard* component: ``n_parents`` parents per event (default 1-3) at DeltaR uniform in ``dr`` (0.02-0.3)
  from the first parent;
* the *dense* component, a share ``dense_fraction`` of the events: ``dense_n_parents`` parents (default 2-3) at
  DeltaR uniform in ``dense_dr`` (0.02-0.15), so that a sizeable number of tracks has another particle within
  DeltaR < 0.1 also from a *different* parent (overlapping showers from independent particles).

The dense events come after the standard ones (event index = generation index); benchmark splits are by a hash of
the event number (:class:`pcloud.data.splits.Splits`), so both components are spread over train/val/test.
``event_component`` returns which component each event came from.
"""
from __future__ import annotations

import numpy as np

from ..core.events import TruthParticles
from ..sim.decay_gun import generate_gun

__all__ = ["concat_truth", "mixture_truth", "event_component"]

_PER_PARTICLE = ("event", "pdg", "px_gev", "py_gev", "pz_gev", "energy_gev", "vertex_mm", "parent")
_PER_PARENT = ("parent_event", "parent_pdg", "parent_mass_gev", "parent_energy_gev", "parent_eta", "parent_phi")


def concat_truth(a: TruthParticles, b: TruthParticles) -> TruthParticles:
    """Events of ``a`` followed by those of ``b`` (event and parent indices of ``b`` shifted)."""
    n_par_a = int(np.asarray(a.parent_event).size)
    kw = {}
    for k in _PER_PARTICLE + _PER_PARENT:
        va, vb = np.asarray(getattr(a, k)), np.asarray(getattr(b, k))
        if k in ("event", "parent_event"):
            vb = vb + a.n_events
        elif k == "parent":
            vb = np.where(vb >= 0, vb + n_par_a, -1)
        kw[k] = np.concatenate([va, vb]) if va.size or vb.size else va
    return TruthParticles(n_events=a.n_events + b.n_events, **kw)


def mixture_truth(n_events: int, rng: np.random.Generator, parent=("rho", "delta"), energy_gev=(10.0, 100.0),
                  n_parents=(1, 3), dr=(0.02, 0.3), dense_fraction: float = 0.3, dense_n_parents=(2, 3),
                  dense_dr=(0.02, 0.15), **gun_kwargs) -> TruthParticles:
    """``round(dense_fraction * n_events)`` dense events after the standard ones (module docstring); the other
    keywords go to :func:`pcloud.sim.events.generate_gun` for both components."""
    if not 0.0 <= dense_fraction <= 1.0:
        raise ValueError(f"mixture_truth: dense_fraction must be in [0, 1], found {dense_fraction}")
    if n_events < 1:
        raise ValueError(f"mixture_truth: n_events must be >= 1, found {n_events}")
    n_dense = int(round(dense_fraction * n_events))
    n_std = n_events - n_dense
    common = dict(parent=list(parent) if not isinstance(parent, str) else parent, energy_gev=tuple(energy_gev),
                  **gun_kwargs)
    def npar(v):
        return int(v) if np.isscalar(v) else tuple(v)

    parts = []
    if n_dense and (dense_n_parents if np.isscalar(dense_n_parents) else dense_n_parents[0]) < 2:
        raise ValueError(f"mixture_truth: dense events need >= 2 parents, found dense_n_parents = {dense_n_parents}")
    if n_std:
        parts.append(generate_gun(n_std, rng, n_parents=npar(n_parents), dr=tuple(dr), **common))
    if n_dense:
        parts.append(generate_gun(n_dense, rng, n_parents=npar(dense_n_parents), dr=tuple(dense_dr), **common))
    return parts[0] if len(parts) == 1 else concat_truth(parts[0], parts[1])


def event_component(n_events: int, dense_fraction: float) -> np.ndarray:
    """``"standard"`` / ``"dense"`` per event index of a :func:`mixture_truth` sample."""
    n_dense = int(round(dense_fraction * n_events))
    return np.where(np.arange(n_events) >= n_events - n_dense, "dense", "standard")
