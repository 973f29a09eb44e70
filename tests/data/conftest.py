"""Hand-made inputs for the point-cloud tests (no dependence on pcloud.sim)."""
from __future__ import annotations

import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.core.showers import ShowerImages


@pytest.fixture(scope="session")
def calogan():
    return get_geometry("calogan")


@pytest.fixture(scope="session")
def atlas():
    return get_geometry("atlas")


def random_showers(geometry, n_events=50, occupancy=0.2, seed=0, dtype=np.float32, noise_gev=0.0,
                   event_number=None):
    """Sparse random images: a fraction ``occupancy`` of the cells hold exponential energies (mean 0.5 GeV);
    optional Gaussian noise on every cell (makes negative cells)."""
    rng = np.random.default_rng(seed)
    images = {}
    for s in geometry.sections:
        shape = (n_events, *s.shape)
        img = (rng.random(shape) < occupancy) * rng.exponential(0.5, shape)
        if noise_gev:
            img = img + rng.normal(0.0, noise_gev, shape)
        images[s.name] = img.astype(dtype)
    truth = {"energy_gev": rng.uniform(1, 100, n_events), "pdg": np.full(n_events, 11, np.int32),
             "theta_rad": np.full(n_events, np.pi / 2)}
    if event_number is not None:
        truth["event_number"] = np.asarray(event_number, np.int64)
    return ShowerImages(geometry, images, truth, {"source": "tests"})


@pytest.fixture(scope="session")
def make_random_showers():
    """Factory fixture: ``make_random_showers(geometry, n_events=50, occupancy=0.2, seed=0, ...)``."""
    return random_showers
