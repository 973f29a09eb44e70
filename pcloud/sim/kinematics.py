"""Relativistic kinematics of two-body decays (PDG 2024, "Kinematics", section 49): Breit-Wigner masses, the
rest-frame momentum of a two-body decay and Lorentz boosts. Energies and momenta in GeV."""
from __future__ import annotations

import numpy as np


def breit_wigner(rng, n, mass, width, lo, hi):
    """Cauchy (non-relativistic Breit-Wigner) masses truncated to [lo, hi] by inverse-CDF sampling."""
    a = np.arctan(2 * (lo - mass) / width)
    b = np.arctan(2 * (hi - mass) / width)
    return mass + 0.5 * width * np.tan(rng.uniform(a, b, n))


def two_body_momentum_gev(m_parent, m1, m2):
    """Daughter momentum in the parent rest frame (PDG "Kinematics", two-body decay):
    p* = sqrt((M^2 - (m1 + m2)^2) (M^2 - (m1 - m2)^2)) / (2 M)."""
    M = np.asarray(m_parent, dtype=np.float64)
    arg = (M ** 2 - (m1 + m2) ** 2) * (M ** 2 - (m1 - m2) ** 2)
    if np.any(arg < 0):
        raise ValueError("two_body_momentum_gev: parent mass below the decay threshold")
    return np.sqrt(arg) / (2 * M)


def boost(p4_rest: np.ndarray, p4_parent: np.ndarray) -> np.ndarray:
    """Lorentz-boost four-vectors (..., 4) = (E, px, py, pz) from the parent rest frame to the frame where the parent
    has four-momentum ``p4_parent``. beta = p/E, gamma = E/M; p' = p + [(gamma-1)(p.n) + gamma beta E] n,
    E' = gamma (E + beta.p)."""
    E, p = p4_parent[..., 0], p4_parent[..., 1:]
    M = np.sqrt(np.maximum(E ** 2 - np.sum(p ** 2, axis=-1), 0.0))
    pn = np.linalg.norm(p, axis=-1)
    n = np.divide(p, pn[..., None], out=np.zeros_like(p), where=pn[..., None] > 0)
    gamma = E / M
    beta = pn / E
    e_r, p_r = p4_rest[..., 0], p4_rest[..., 1:]
    p_par = np.sum(p_r * n, axis=-1)
    p_lab = p_r + ((gamma - 1) * p_par + gamma * beta * e_r)[..., None] * n
    e_lab = gamma * (e_r + beta * p_par)
    return np.concatenate([e_lab[..., None], p_lab], axis=-1)


def etaphi_to_p(p, eta, phi):
    pt = p / np.cosh(eta)
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)

