"""Shared fixtures of the particle-flow tests.

``line_deposit`` is a deterministic stand-in for :func:`pcloud.sim.deposit.deposit_particles`, used where a test
needs exact bookkeeping (e.g. chunking invariance): it deposits each particle's energy in the cells crossed by its straight line
(one cell per layer, energy split by layer thickness), EM part = all of it for e/gamma/pi0, none for hadrons.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pcloud.geometry import get_geometry


@dataclass
class _Deposits:
    particle: np.ndarray
    cell: np.ndarray
    energy_gev: np.ndarray
    energy_em_gev: np.ndarray


def line_deposit(geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None):
    pdg = np.asarray(pdg)
    n = pdg.size
    radii = np.concatenate([0.5 * (s.layer_edges_mm[1:] + s.layer_edges_mm[:-1]) for s in geometry.sections])
    thick = np.concatenate([np.diff(s.layer_edges_mm) for s in geometry.sections])
    frac = thick / thick.sum()
    o = np.asarray(origin_mm, float)
    d = np.asarray(direction, float)
    dt = np.hypot(d[:, 0], d[:, 1])
    # straight line from the origin: transverse distance to radius r (origin near the axis or on the front)
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    r0 = o[:, 0] ** 2 + o[:, 1] ** 2
    t = (-b[:, None] + np.sqrt(np.maximum(b[:, None] ** 2 - dt[:, None] ** 2 * (r0[:, None] - radii ** 2), 0))
         ) / dt[:, None] ** 2
    pts = o[:, None, :] + t[..., None] * d[:, None, :]
    pts = pts.reshape(-1, 3)
    cell = geometry.locate(pts[:, 0], pts[:, 1], pts[:, 2])
    part = np.repeat(np.arange(n), radii.size)
    e = (np.asarray(energy_gev, float)[:, None] * frac[None, :]).ravel()
    em = np.isin(np.abs(pdg), [11, 22, 111])
    cell = cell.ravel()
    ok = cell >= 0
    return _Deposits(part[ok], cell[ok], e[ok], np.where(em[part], e, 0.0)[ok])


@pytest.fixture(scope="session")
def atlas():
    return get_geometry("atlas")


@pytest.fixture(scope="session")
def deposit_fn():
    """The real shower deposit function (an import error must fail the tests, not switch to a stand-in)."""
    from pcloud.sim.deposit import deposit_particles
    return deposit_particles
