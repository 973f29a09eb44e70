"""Synthetic two-class showers for the dense-model tests (no simulation needed)."""
from __future__ import annotations

import numpy as np
import pytest


def synthetic_showers(geometry, n: int = 16, seed: int = 0):
    """Two clearly different classes on any geometry, images in GeV.

    class 0 ("EM-like"): narrow transverse core (sigma = 8% of the grid), early layers of multi-layer sections;
    class 1 ("hadron-like"): wide (sigma = 40%), deep layers. Both classes share the same split of the energy
    between sections, so the section sums (which the models also receive) carry no class information: a model
    can only separate the classes by looking at the images.
    Returns ``(images {section: (n, L, U, V) float32}, labels (n,) int64, deposited_gev (n,), energy_gev (n,))``
    with the true energy = deposit for class 0 and 1.4 x deposit for class 1 (non-compensation-like).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    e_dep = rng.uniform(10.0, 100.0, n)
    n_sec = len(geometry.sections)
    images = {}
    for k, s in enumerate(geometry.sections):
        nl, nu, nv = s.shape
        w_sec = np.full(n, (k + 1) / (n_sec * (n_sec + 1) / 2))
        sigma = np.where(labels == 0, 0.08, 0.4)[:, None, None, None]
        u = (np.arange(nu) + 0.5) / nu - 0.5
        v = (np.arange(nv) + 0.5) / nv - 0.5
        r2 = u[None, None, :, None] ** 2 + v[None, None, None, :] ** 2
        z = (np.arange(nl) + 0.5) / nl
        depth = np.where(labels[:, None] == 0, np.exp(-3 * z)[None], np.exp(-3 * (1 - z))[None])
        img = np.exp(-r2 / (2 * sigma**2)) * depth[:, :, None, None]
        img = img * (1 + 0.05 * rng.standard_normal(img.shape))
        img = np.clip(img, 0, None)
        img /= img.reshape(n, -1).sum(1)[:, None, None, None]
        images[s.name] = (img * (w_sec * e_dep)[:, None, None, None]).astype(np.float32)
    dep = sum(v.reshape(n, -1).sum(1).astype(np.float64) for v in images.values())
    energy = dep * np.where(labels == 0, 1.0, 1.4)
    return images, labels.astype(np.int64), dep, energy


@pytest.fixture
def showers():
    return synthetic_showers
