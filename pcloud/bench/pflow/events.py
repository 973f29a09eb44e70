"""The events of ``pcloud bench pflow``: the built-in gun mixture or Pythia8, simulated in the ATLAS-like barrel."""
from __future__ import annotations

import numpy as np

from ...pflow.samples import mixture_truth
from ...sim.events import simulate_events
from .config import PYTHIA_GENERATORS, PflowConfig


def generate_pflow_events(geometry, cfg: PflowConfig):
    """The benchmark events of ``cfg``: the MLTree files of ``cfg.data`` (read with per-cell truth; their cells
    are re-clustered by the benchmark) or :func:`pcloud.pflow.samples.mixture_truth` (standard + dense component)
    simulated with :func:`pcloud.sim.events.simulate_events`."""
    if cfg.data:
        from ...pipeline.pflow import read_events

        events, _, inputs = read_events(cfg.data, need_truth=True, geometry=geometry)
        events.meta.update(n_dense_events=0, generator="files: " + ", ".join(str(i.path) for i in inputs))
        return events
    rng = np.random.default_rng(cfg.seed)
    if cfg.generator in PYTHIA_GENERATORS:
        from ...sim.pythia import generate_pythia_events
        lo, hi = cfg.pythia_pt_hat_gev
        events = generate_pythia_events(geometry, cfg.n_events, rng, PYTHIA_GENERATORS[cfg.generator],
                                        seed=cfg.seed, pt_hat_min_gev=lo, pt_hat_max_gev=hi)
        events.meta["n_dense_events"] = 0
        return events
    truth = mixture_truth(cfg.n_events, rng, parent=list(cfg.parents), energy_gev=tuple(cfg.energy_gev),
                          n_parents=tuple(cfg.n_parents), dr=tuple(cfg.parent_dr), dense_fraction=cfg.dense_fraction,
                          dense_n_parents=tuple(cfg.dense_n_parents), dense_dr=tuple(cfg.dense_dr))
    events = simulate_events(geometry, truth, rng)
    events.meta["n_dense_events"] = int(round(cfg.dense_fraction * cfg.n_events))
    return events
