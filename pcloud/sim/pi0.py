"""pi0 -> gamma gamma decay kinematics (vectorised).

In the pi0 rest frame the photons are back to back with energy m/2 and an isotropic direction (cos theta* uniform
in [-1, 1], phi* uniform). Boosting along the pi0 flight direction with beta = p/E, gamma = E/m gives

    E_1,2 = (E/2) (1 +- beta cos theta*)      -> the energy sharing z = E_1/E is uniform in [(1-beta)/2, (1+beta)/2]
    cos psi = 1 - m^2 / (2 E_1 E_2)            (opening angle psi from the invariant mass)

so the smallest opening angle, reached at z = 1/2, is psi_min = 2 arcsin(m/E) ~ 2 m / E (PDG Review, "Kinematics",
sec. 49.x). The pi0 lifetime (c tau = 25 nm) is neglected: the photons start at the pi0 origin.
"""
from __future__ import annotations

import numpy as np

PI0_MASS_GEV = 0.1349768


def orthonormal_basis(direction: np.ndarray):
    """Two unit vectors (M,3) perpendicular to each (unit) ``direction`` (M,3) and to each other."""
    d = np.asarray(direction, dtype=np.float64)
    helper = np.zeros_like(d)
    use_x = np.abs(d[:, 0]) < 0.9
    helper[use_x, 0] = 1.0
    helper[~use_x, 1] = 1.0
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(d, e1)
    return e1, e2


def decay_pi0(energy_gev, direction, rng, mass_gev: float = PI0_MASS_GEV):
    """Decay pi0s of energy ``energy_gev`` (M,) flying along unit ``direction`` (M,3).

    Returns ``(e1, e2, dir1, dir2, opening_angle_rad)``: photon energies (GeV), unit directions (M,3) and the opening
    angle between them. Energies below the mass are raised to the mass (decay at rest).
    """
    e = np.maximum(np.asarray(energy_gev, dtype=np.float64), mass_gev)
    d = np.asarray(direction, dtype=np.float64)
    m = e.size
    gamma = e / mass_gev
    beta = np.sqrt(np.maximum(1.0 - 1.0 / gamma**2, 0.0))
    cos_t = rng.uniform(-1.0, 1.0, m)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = rng.uniform(0.0, 2.0 * np.pi, m)
    half = 0.5 * mass_gev
    # photon 1 in the lab: longitudinal and transverse momentum w.r.t. the pi0 direction
    e1 = gamma * half * (1.0 + beta * cos_t)
    pl1 = gamma * half * (cos_t + beta)
    e2 = gamma * half * (1.0 - beta * cos_t)
    pl2 = gamma * half * (-cos_t + beta)
    pt = half * sin_t
    b1, b2 = orthonormal_basis(d)
    tvec = (np.cos(phi)[:, None] * b1 + np.sin(phi)[:, None] * b2)
    p1 = pl1[:, None] * d + pt[:, None] * tvec
    p2 = pl2[:, None] * d - pt[:, None] * tvec
    dir1 = p1 / np.linalg.norm(p1, axis=1, keepdims=True)
    dir2 = p2 / np.linalg.norm(p2, axis=1, keepdims=True)
    cos_psi = np.clip(1.0 - mass_gev**2 / (2.0 * e1 * e2), -1.0, 1.0)
    return e1, e2, dir1, dir2, np.arccos(cos_psi)
