"""Electromagnetic showers after GFlash (Grindhammer & Peters, "The parameterized simulation of electromagnetic
showers in homogeneous and sampling calorimeters", hep-ex/0001020), homogeneous-medium parametrisation evaluated
with the effective Z and critical energy E_c of the local stack (:mod:`pcloud.sim.media`).

Longitudinal profile (energy per unit depth t in X0, shower starting at t = 0), paper eq. (2):

    (1/E) dE/dt = (beta t)^(alpha-1) beta exp(-beta t) / Gamma(alpha),   T = (alpha - 1) / beta  (depth of maximum)

with y = E / E_c and the fluctuated parameters drawn per shower from a correlated log-normal, paper eqs. (6)-(9):

    <ln T>     = ln(ln y - 0.812)                  sigma(ln T)     = 1 / (-1.4 + 1.26 ln y)
    <ln alpha> = ln(0.81 + (0.458 + 2.26/Z) ln y)  sigma(ln alpha) = 1 / (-0.58 + 0.86 ln y)
    rho(ln T, ln alpha) = 0.705 - 0.023 ln y

Radial profile at depth tau = t / T (in units of the local Moliere radius R_M), paper eqs. (13)-(16), E in GeV:

    f(r) = p 2 r R_C^2 / (r^2 + R_C^2)^2 + (1 - p) 2 r R_T^2 / (r^2 + R_T^2)^2
    R_C = z1 + z2 tau,                z1 = 0.0251 + 0.00319 ln E,  z2 = 0.1162 - 0.000381 Z
    R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2))),  k1 = 0.659 - 0.00309 Z, k2 = 0.645, k3 = -2.59,
                                                        k4 = 0.3585 + 0.0412 ln E
    p   = p1 exp((p2 - tau)/p3 - exp((p2 - tau)/p3)),  p1 = 2.632 - 0.00094 Z, p2 = 0.401 + 0.00187 Z,
                                                        p3 = 1.313 - 0.0686 ln E

(coefficients as in the GFlash tuning shipped with Geant4). Each component has the closed-form cumulative
r^2 / (r^2 + R^2), so a radius is drawn by inversion: r = R sqrt(u / (1 - u)).

Energy is deposited as ``n_spots`` equal-energy spots per shower whose depths are drawn from the shower's own Gamma
profile by *stratified* inversion: spot j gets a quantile u_j drawn uniformly inside its probability stratum
[b_j, b_j+1) of the Gamma(alpha) law (tabulated inverse CDF, :func:`gamma_quantile`) and carries the energy fraction
b_j+1 - b_j (equal strata, refined towards the deep tail, :func:`strata`). The mean profile is exact and, unlike
independent draws, the spot count adds almost no artificial fluctuation of layer fractions or rear leakage (a
binomial sqrt(p(1-p)/n_spots) otherwise). GFlash's own spot count N = 93 ln(Z) E^0.876 models sampling fluctuations, which
pcloud adds separately in "visible" mode.

Photons first convert after an exponential depth of mean 9/7 X0 (PDG Review, sec. 34.4.5: pair-production mean
free path); electrons and positrons start showering at the front face.

Validity: GFlash was fitted for E >~ 1 GeV. Below, ln y is clamped (>= 2 for the means, >= 3 for the widths) so that
soft showers (pi0 photons of a few hundred MeV) stay compact and finite.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv, ndtr, ndtri

#: Mean photon conversion depth in radiation lengths (PDG: lambda_pair = 9/7 X0).
CONVERSION_X0 = 9.0 / 7.0


_LN_ALPHA = np.linspace(np.log(0.3), np.log(60.0), 161)
_Z = np.linspace(-6.0, 6.0, 241)
_TABLE: np.ndarray | None = None


def gamma_quantile(alpha, u) -> np.ndarray:
    """Quantile of the unit-rate Gamma(alpha) law at probability ``u`` (broadcast), by bilinear interpolation of a
    table over (ln alpha, z = Phi^-1(u)) built once with ``scipy.special.gammaincinv`` (alpha in [0.3, 60];
    median relative error 1e-4, < 1% for 99% of (alpha, u)). Replaces ``gammaincinv`` (~0.75 us per call) on the hot path."""
    global _TABLE
    if _TABLE is None:
        _TABLE = gammaincinv(np.exp(_LN_ALPHA)[:, None], ndtr(_Z)[None, :])
    fa = (np.log(alpha) - _LN_ALPHA[0]) / (_LN_ALPHA[1] - _LN_ALPHA[0])
    fa = np.clip(fa, 0.0, _LN_ALPHA.size - 1.000001)
    ia = fa.astype(np.int64)
    wa = fa - ia
    fz = (ndtri(u) - _Z[0]) / (_Z[1] - _Z[0])
    fz = np.clip(fz, 0.0, _Z.size - 1.000001)
    iz = fz.astype(np.int64)
    wz = fz - iz
    t = _TABLE
    return ((1 - wa) * ((1 - wz) * t[ia, iz] + wz * t[ia, iz + 1])
            + wa * ((1 - wz) * t[ia + 1, iz] + wz * t[ia + 1, iz + 1]))


def strata(n: int, n_tail: int = 8) -> np.ndarray:
    """Boundaries (n+1,) of n probability strata: n - m equal strata of width w = 1/(n - m + 1), then m = ``n_tail``
    strata of widths w/2, w/4, ..., w/2^(m-1), w/2^(m-1) towards u = 1, so that the deepest spots carry little
    energy and rear leakage is resolved to ~w/2^(m-1) instead of 1/n (equal strata make leakage jump by whole
    spots)."""
    m = min(n_tail, n // 4)
    if m < 2:
        return np.linspace(0.0, 1.0, n + 1)
    w = 1.0 / (n - m + 1)
    widths = w * 0.5 ** np.arange(1, m + 1)
    widths[-1] *= 2.0                      # last stratum closes the interval
    bulk = np.linspace(0.0, 1.0 - w, n - m + 1)
    return np.concatenate([bulk, 1.0 - w + np.cumsum(widths)])


def stratified_uniform(shape, rng, bounds=None) -> np.ndarray:
    """(M, S) uniforms with one draw in each stratum of ``bounds`` (default equal strata [j/S, (j+1)/S))."""
    m, s = shape
    b = np.linspace(0.0, 1.0, s + 1) if bounds is None else bounds
    return np.minimum(b[:-1] + rng.random(shape) * np.diff(b), 1.0 - 1e-12)


def longitudinal_parameters(energy_gev, z_eff, ec_mev, rng=None):
    """Per-shower GFlash longitudinal parameters (T in X0, alpha). Without ``rng`` the medians are returned.

    All arguments broadcast; ``energy_gev`` in GeV, ``ec_mev`` in MeV.
    """
    e = np.asarray(energy_gev, dtype=np.float64)
    ln_y = np.log(np.maximum(e * 1000.0 / ec_mev, 1e-12))
    ln_y_mean = np.maximum(ln_y, 2.0)
    ln_y_sig = np.maximum(ln_y, 3.0)
    mu_t = np.log(ln_y_mean - 0.812)
    mu_a = np.log(0.81 + (0.458 + 2.26 / z_eff) * ln_y_mean)
    if rng is None:
        ln_t, ln_a = mu_t, mu_a
    else:
        sig_t = 1.0 / (-1.4 + 1.26 * ln_y_sig)
        sig_a = 1.0 / (-0.58 + 0.86 * ln_y_sig)
        rho = np.clip(0.705 - 0.023 * ln_y_sig, -0.99, 0.99)
        z1 = rng.standard_normal(np.shape(mu_t))
        z2 = rng.standard_normal(np.shape(mu_t))
        c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)   # corr(c1 z1 + c2 z2, c1 z1 - c2 z2) = rho
        ln_t = mu_t + sig_t * (c1 * z1 + c2 * z2)
        ln_a = mu_a + sig_a * (c1 * z1 - c2 * z2)
    tmax = np.exp(ln_t)
    alpha = np.maximum(np.exp(ln_a), 1.05)
    return tmax, alpha


def median_alpha(energy_gev, z_eff, ec_mev):
    ln_y = np.maximum(np.log(np.maximum(np.asarray(energy_gev) * 1000.0 / ec_mev, 1e-12)), 2.0)
    return 0.81 + (0.458 + 2.26 / z_eff) * ln_y


def radial_parameters(tau, energy_gev, z_eff):
    """GFlash core radius R_C, tail radius R_T (units of R_M) and core weight p at reduced depth ``tau``."""
    ln_e = np.log(np.maximum(energy_gev, 1e-3))
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z_eff) * tau
    k1 = 0.659 - 0.00309 * z_eff
    k4 = 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p3 = 1.313 - 0.0686 * ln_e
    w = (0.401 + 0.00187 * z_eff - tau) / p3
    p_core = (2.632 - 0.00094 * z_eff) * np.exp(w - np.exp(w))
    return np.maximum(r_core, 1e-3), r_tail, np.clip(p_core, 0.0, 1.0)


def em_spots(energy_gev, z_eff, ec_mev, n_spots, rng, photon=False):
    """Spots of ``len(energy_gev)`` EM showers in shower coordinates.

    Returns a dict of ``(M, n_spots)`` arrays: ``t_x0`` depth of each spot from the particle's start (X0, including
    the photon conversion depth), ``r_rm`` radius from the axis in Moliere radii, ``phi`` azimuth (rad), and per
    shower ``tmax_x0``, ``alpha`` (the sampled Gamma parameters) and ``start_x0`` (conversion depth, 0 for e+-).
    ``z_eff``/``ec_mev`` are per shower (the medium where the shower starts); ``photon`` (bool, scalar or per shower)
    adds the exponential conversion depth.
    """
    e = np.asarray(energy_gev, dtype=np.float64)
    m = e.size
    z_eff = np.broadcast_to(np.asarray(z_eff, dtype=np.float64), (m,))
    ec_mev = np.broadcast_to(np.asarray(ec_mev, dtype=np.float64), (m,))
    tmax, alpha = longitudinal_parameters(e, z_eff, ec_mev, rng)
    beta = (alpha - 1.0) / tmax
    a_med = median_alpha(e, z_eff, ec_mev)
    shape = (m, n_spots)
    bounds = strata(n_spots)
    t = gamma_quantile(alpha[:, None], stratified_uniform(shape, rng, bounds)) / beta[:, None]
    # reduced depth as in GFlash: t / <t> scaled to the median profile (paper sec. 3.2)
    tau_scale = ((alpha - 1.0) / alpha * a_med / (a_med - 1.0)) / tmax
    tau = t * tau_scale[:, None]
    r_core, r_tail, p_core = radial_parameters(tau, e[:, None], z_eff[:, None])
    u = rng.random((2,) + shape)
    radius = np.where(u[0] < p_core, r_core, r_tail)
    u1 = np.minimum(u[1], 0.9999)
    r = radius * np.sqrt(u1 / (1.0 - u1))
    phi = rng.random(shape) * (2.0 * np.pi)
    photon = np.broadcast_to(np.asarray(photon, dtype=bool), (m,))
    start = np.where(photon, rng.exponential(CONVERSION_X0, m), 0.0) if photon.any() else np.zeros(m)
    return {"t_x0": t + start[:, None], "r_rm": r, "phi": phi, "weight": np.diff(bounds), "tmax_x0": tmax,
            "alpha": alpha, "start_x0": start}
