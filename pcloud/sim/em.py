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
r^2 / (r^2 + R^2), so a radius is drawn by inversion: r = R sqrt(u / (1 - u)). In visible mode (``sampling``) the
sampling-calorimeter variant is used: T + t1/F_s + t2 (1 - ehat), alpha + a1/F_s, wider and more correlated
fluctuations, and corrections to R_C, R_T and p (:data:`SAMPLING_T` ...; paper sec. 5).

Energy is deposited as ``n_spots`` *depth spots* per shower (energy-proportional in production, :func:`spot_counts`)
whose depths are drawn from the shower's own Gamma profile by *stratified* inversion: spot j gets a quantile u_j
drawn uniformly inside its probability stratum [b_j, b_j+1) of the Gamma(alpha) law (tabulated inverse CDF,
:func:`gamma_quantile`) and carries the energy fraction b_j+1 - b_j. The strata have equal probability under a fixed
proposal density refined towards the shower start and the deep tail (:func:`proposal_bounds`). The mean profile is
exact and the spot count adds almost no artificial fluctuation of layer fractions or rear leakage.

Lateral sub-spots (``n_lateral`` > 0, production): each depth spot is split into a *core ring* of ``n_core``
sub-spots at one radius drawn from the core law and azimuths phi_0 + 2 pi k / n_core (weight p / n_core each), an
*inner-tail ring* of ``n_core`` sub-spots at one radius in the first stratum of the tail law (azimuths shifted by
half a step) and ``n_lateral`` - 1 outer tail sub-spots, one per stratum [c_k, c_k+1) of the tail CDF
(:func:`lateral_bounds`, refined towards large radii; weights (1 - p)(c_k+1 - c_k), exact importance sampling, the
weights of a shower sum to 1). The rings are antithetic: a depth spot shares its core and inner-tail energy equally
between the half-planes and quadrants around its axis, so cell-to-cell ratios (E_ratio) carry no spot-count noise;
the physical fluctuations are added by :mod:`pcloud.sim.fluctuations` and the far deposits by
:mod:`pcloud.sim.halo`.

Photons convert after an exponential depth of mean 9/7 X0 (PDG Review, sec. 34.4.5: pair-production mean free path)
into an e+e- pair that shares their energy by the complete-screening Bethe-Heitler law (:func:`pair_share`; PDG eq.
34.31); each lepton showers independently from the conversion point. Electrons and positrons start showering at the
front face.

Validity: GFlash was fitted for E >~ 1 GeV. Below, ln y is clamped (>= 2 for the means, >= 3 for the widths) and
alpha >= :data:`ALPHA_MIN`, so that soft showers (pi0 photons of a few hundred MeV, the softer lepton of a pair) stay
compact and finite.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv, ndtr, ndtri

#: Number of depth strata refined (halving widths) towards the deep end of the Gamma profile (:func:`strata`):
#: importance sampling of the deep tail, so that rear layers and rear leakage are resolved to ~2^-n_tail / n.
DEPTH_TAIL_STRATA = 12
#: Same refinement towards the shower start (u -> 0): many small spots in the first X0 (front layers).
DEPTH_FRONT_STRATA = 6
#: Mean photon conversion depth in radiation lengths (PDG: lambda_pair = 9/7 X0).
CONVERSION_X0 = 9.0 / 7.0
#: Smallest Gamma shape of a fluctuated profile. With alpha -> 1 the rate beta = (alpha - 1)/T vanishes and a soft
#: (sub-)shower (e.g. the softer lepton of an asymmetric pair) would spread over hundreds of X0; 1.5 is > 3 sigma
#: below the median alpha of any shower above ~1 GeV (GFlash's own floor is 1.1).
ALPHA_MIN = 1.5


_LN_ALPHA = np.linspace(np.log(0.3), np.log(60.0), 161)
_Z = np.linspace(-6.0, 6.0, 241)
_TABLE: np.ndarray | None = None


def gamma_quantile(alpha, u) -> np.ndarray:
    """Quantile of the unit-rate Gamma(alpha) law at probability ``u`` (broadcast), by bilinear interpolation of a
    table over (ln alpha, z = Phi^-1(u)) built once with ``scipy.special.gammaincinv`` (alpha in [0.3, 60];
    median relative error 1e-4, < 1% for 99% of (alpha, u)). Replaces ``gammaincinv`` (~0.75 us per call) on the hot
    path."""
    return gamma_quantile_z(alpha, ndtri(u))


def gamma_quantile_z(alpha, z) -> np.ndarray:
    """:func:`gamma_quantile` at u = Phi(``z``): with z drawn from a standard normal this samples Gamma(alpha)
    without the inverse normal CDF (for unstratified draws)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = gammaincinv(np.exp(_LN_ALPHA)[:, None], ndtr(_Z)[None, :])
    fa = (np.log(alpha) - _LN_ALPHA[0]) / (_LN_ALPHA[1] - _LN_ALPHA[0])
    fa = np.clip(fa, 0.0, _LN_ALPHA.size - 1.000001)
    ia = fa.astype(np.int64)
    wa = fa - ia
    fz = (z - _Z[0]) / (_Z[1] - _Z[0])
    fz = np.clip(fz, 0.0, _Z.size - 1.000001)
    iz = fz.astype(np.int64)
    wz = fz - iz
    t = _TABLE
    return ((1 - wa) * ((1 - wz) * t[ia, iz] + wz * t[ia, iz + 1])
            + wa * ((1 - wz) * t[ia + 1, iz] + wz * t[ia + 1, iz + 1]))


def strata(n: int, n_tail: int = 8, n_front: int = 0) -> np.ndarray:
    """Boundaries (n+1,) of n probability strata: n - m - f equal strata of width w = 1/(n - m - f + 1 + [f > 0]),
    then m = ``n_tail`` strata of widths w/2, w/4, ..., w/2^(m-1), w/2^(m-1) towards u = 1, so that the deepest spots
    carry little energy and rear leakage is resolved to ~w/2^(m-1) instead of 1/n (equal strata make leakage jump by
    whole spots); with f = ``n_front`` > 0 the same refinement mirrored towards u = 0 (the shower start).
    Unequal strata are importance sampling with a piecewise-constant proposal: one spot per stratum, weight = width."""
    m = min(n_tail, n // 4)
    f = min(n_front, n // 4) if n_front >= 2 else 0
    if m < 2 and f == 0:
        return np.linspace(0.0, 1.0, n + 1)
    def halvings(k, w):
        widths = w * 0.5 ** np.arange(1, k + 1)
        widths[-1] *= 2.0                  # last stratum closes the interval
        return widths
    n_bulk = n - (m if m >= 2 else 0) - f
    w = 1.0 / (n_bulk + (1 if m >= 2 else 0) + (1 if f else 0))
    front = halvings(f, w)[::-1] if f else np.zeros(0)
    tail = halvings(m, w) if m >= 2 else np.zeros(0)
    widths = np.concatenate([front, np.full(n_bulk, w), tail])
    return np.concatenate([[0.0], np.cumsum(widths)[:-1], [1.0]])


#: Fixed depth *proposal* of the EM spots (:func:`proposal_bounds`): a fraction ``DEPTH_FRONT_SHARE`` of the strata is
#: log-uniform in u over [DEPTH_FRONT_MIN, 1] (shower start), ``DEPTH_TAIL_SHARE`` log-uniform in 1 - u over
#: [DEPTH_TAIL_MIN, 1] (deep tail), the rest uniform. Equivalent to the halving strata of :func:`strata` with 48 spots
#: (6 front, 12 tail halvings) but the same density for every spot count, so the spot density is proportional to
#: the number of spots (needed for energy-proportional spot budgets, see :func:`spot_counts`).
DEPTH_FRONT_SHARE, DEPTH_FRONT_MIN = 0.125, 1e-3
DEPTH_TAIL_SHARE, DEPTH_TAIL_MIN = 0.4, 1e-7
#: Same for the hadronic-component depth profile (tail refinement only, as :func:`strata` with n_tail = 8).
HAD_TAIL_SHARE, HAD_TAIL_MIN = 0.25, 1e-3

_BOUNDS_CACHE: dict = {}


def proposal_cdf(u, front_share=DEPTH_FRONT_SHARE, front_min=DEPTH_FRONT_MIN, tail_share=DEPTH_TAIL_SHARE,
                 tail_min=DEPTH_TAIL_MIN) -> np.ndarray:
    """CDF G(u) of the proposal density g on the profile's probability axis u in [0, 1]:
    g(u) = (1 - f - t) + f / (u ln(1/u_f)) [u >= u_f] + t / ((1 - u) ln(1/u_t)) [1 - u >= u_t]."""
    u = np.asarray(u, dtype=np.float64)
    g = (1.0 - front_share - tail_share) * u
    if front_share > 0:
        g = g + front_share * np.clip(np.log(np.maximum(u, 1e-300) / front_min) / np.log(1.0 / front_min), 0, 1)
    if tail_share > 0:
        g = g + tail_share * np.clip(np.log(1.0 / np.maximum(1.0 - u, 1e-300)) / np.log(1.0 / tail_min), 0, 1)
    return g


def proposal_bounds(n: int, kind: str = "em") -> np.ndarray:
    """Boundaries (n+1,) of n strata with equal *proposal* probability: b_j = G^-1(j/n) for the fixed proposal CDF
    G of :func:`proposal_cdf` (``kind`` "em": front and tail refinement, "had": tail only). One spot per stratum
    carries the target probability b_j+1 - b_j (importance weight = target/proposal, exact; the weights sum to 1).
    Because G does not depend on n, the expected number of spots in any u-interval is n (G(u2) - G(u1)): spot
    density proportional to the spot count (cached per (n, kind))."""
    n = int(n)
    if n < 1:
        raise ValueError(f"proposal_bounds: need n >= 1 strata, got {n}")
    key = (n, kind)
    hit = _BOUNDS_CACHE.get(key)
    if hit is not None:
        return hit
    if kind == "em":
        pars = dict(front_share=DEPTH_FRONT_SHARE, front_min=DEPTH_FRONT_MIN, tail_share=DEPTH_TAIL_SHARE,
                    tail_min=DEPTH_TAIL_MIN)
    elif kind == "had":
        pars = dict(front_share=0.0, front_min=1.0, tail_share=HAD_TAIL_SHARE, tail_min=HAD_TAIL_MIN)
    else:
        raise ValueError(f"proposal_bounds: kind must be 'em' or 'had', got {kind!r}")
    # dense grid uniform in logit(u) resolves both ends; G is strictly increasing (uniform share > 0)
    if ("grid", kind) not in _BOUNDS_CACHE:
        x = np.linspace(-20.0, 20.0, 32001)
        grid = np.concatenate([[0.0], 1.0 / (1.0 + np.exp(-x)), [1.0]])
        cdf = proposal_cdf(grid, **pars)
        cdf[0], cdf[-1] = 0.0, 1.0
        _BOUNDS_CACHE[("grid", kind)] = (grid, cdf)
    grid, cdf = _BOUNDS_CACHE[("grid", kind)]
    b = np.interp(np.linspace(0.0, 1.0, n + 1), cdf, grid)
    b[0], b[-1] = 0.0, 1.0
    if len(_BOUNDS_CACHE) > 2048:
        _BOUNDS_CACHE.clear()
    _BOUNDS_CACHE[key] = b
    return b


def padded_bounds(n, kind: str = "em") -> np.ndarray:
    """Per-shower stratum boundaries for depth-spot counts ``n`` (M,): row i holds :func:`proposal_bounds`
    (n_i, kind) followed by 1.0 up to n_max + 1 columns, so padded strata have zero width (zero-weight spots that
    the deposit step drops). Shape (M, n_max + 1)."""
    n = np.asarray(n, dtype=np.int64)
    uniq, inv = np.unique(n, return_inverse=True)
    n_max = int(uniq[-1])
    table = np.ones((uniq.size, n_max + 1))
    for i, k in enumerate(uniq):          # <= a few tens of distinct counts per ladder bin (loop over counts)
        table[i, :k + 1] = proposal_bounds(int(k), kind)
    return table[inv.ravel()]


#: Ladder of depth-spot-count bins (ratio ~1.3): showers are grouped by bin (a loop over ~10-15 bins per chunk),
#: each bin a rectangular array padded to its largest count with zero-weight spots (:func:`padded_bounds`).
SPOT_LADDER = np.unique(np.concatenate([[1, 2, 3, 4, 5, 6, 7], np.rint(np.geomspace(8, 2 ** 20, 46))])).astype(np.int64)


def spot_counts(energy_gev, per_gev: float, rng) -> np.ndarray:
    """Energy-proportional number of depth spots per (sub-)shower: E[n] = ``per_gev`` * E exactly, by randomised
    integer rounding of x = per_gev * E (n = floor(x) + 1 with probability x - floor(x); variance <= 1/4);
    showers with x < 1 get one spot (the only non-proportional case: E < 1/per_gev GeV). Summed over the two
    photons of a pi0 the expected count equals that of one photon of the pi0's energy, as the particle count of a
    real cascade (N ~ E/E_c, Rossi approximation B, PDG Review sec. 34.5) and GFlash's spot count
    (N_spots ~ E^0.876, Grindhammer & Peters, hep-ex/0001020 sec. 4) follow the energy."""
    x = np.maximum(np.asarray(energy_gev, dtype=np.float64), 0.0) * float(per_gev)
    fl = np.floor(x)
    n = fl + (rng.random(x.shape) < (x - fl))
    return np.maximum(n, 1).astype(np.int64)


def stratified_uniform(shape, rng, bounds=None) -> np.ndarray:
    """(M, S) uniforms with one draw in each stratum of ``bounds`` (default equal strata [j/S, (j+1)/S))."""
    m, s = shape
    b = np.linspace(0.0, 1.0, s + 1) if bounds is None else bounds     # (S+1,) or per shower (M, S+1)
    return np.minimum(b[..., :-1] + rng.random(shape) * np.diff(b, axis=-1), 1.0 - 1e-12)


#: GFlash sampling-calorimeter corrections (Grindhammer & Peters, hep-ex/0001020, sec. 5; tuning of Geant4's
#: GFlashSamplingShowerTuning): with F_s = X0_eff / (d_abs + d_act) and ehat = 1 / (1 + 0.007 (Z_abs - Z_act)),
#:     T_sam = T_hom + t1 / F_s + t2 (1 - ehat),     alpha_sam = alpha_hom + a1 / F_s,
#:     sigma(ln T) = 1 / (s1 + s2 ln y),  sigma(ln alpha) = 1 / (r1 + r2 ln y),  rho = c1 + c2 ln y.
SAMPLING_T = (-0.55, -0.69)
SAMPLING_ALPHA = -0.476
SAMPLING_SIGMA_LN_T = (-2.5, 1.25)
SAMPLING_SIGMA_LN_ALPHA = (-0.82, 0.79)
SAMPLING_RHO = (0.784, -0.023)
#: Radial sampling corrections (same source): R_C += c1 (1 - ehat) + c2 / F_s exp(-tau);
#: p += (1 - ehat) (w1 + w2 / F_s exp(-(tau - 1)^2)); R_T += t1 (1 - ehat) + t2 / F_s exp(-tau).
SAMPLING_RC = (-0.0203, 0.0397)
SAMPLING_WC = (0.348, -0.642)
SAMPLING_RT = (-0.14, -0.495)


def longitudinal_parameters(energy_gev, z_eff, ec_mev, rng=None, sampling=None):
    """Per-shower GFlash longitudinal parameters (T in X0, alpha). Without ``rng`` the medians are returned.

    All arguments broadcast; ``energy_gev`` in GeV, ``ec_mev`` in MeV. ``sampling``: None for the homogeneous-medium
    parametrisation (deposited energy of absorber + active, "total" mode), or ``(f_s, ehat)`` (arrays broadcasting
    with the energies) for the sampling-calorimeter parametrisation of the *visible* energy profile
    (:data:`SAMPLING_T` ...): the shower maximum moves earlier by 0.55/F_s + 0.69 (1 - ehat) X0 (0.42 X0 for 2 mm Pb
    / 4 mm LAr) and the parameters fluctuate more. The visible profile is earlier because soft photons late in the
    shower are absorbed photoelectrically in the high-Z plates (transition effect; Wigmans, "Calorimetry", sec. 3.2).
    """
    e = np.asarray(energy_gev, dtype=np.float64)
    ln_y = np.log(np.maximum(e * 1000.0 / ec_mev, 1e-12))
    ln_y_mean = np.maximum(ln_y, 2.0)
    ln_y_sig = np.maximum(ln_y, 3.0)
    t_hom = ln_y_mean - 0.812
    a_hom = 0.81 + (0.458 + 2.26 / z_eff) * ln_y_mean
    hom_s = ((-1.4, 1.26), (-0.58, 0.86), (0.705, -0.023))
    if sampling is None:
        mu_t, mu_a = np.log(t_hom), np.log(a_hom)
        (s_t, s_a, r), on = hom_s, False
    else:
        # f_s = inf (homogeneous stacks in a mixed batch) switches the corrections and the sampling widths off
        fs, ehat = (np.asarray(v, dtype=np.float64) for v in sampling)
        on = np.isfinite(fs)
        inv_fs = np.where(on, 1.0 / np.where(on, fs, 1.0), 0.0)
        mu_t = np.log(np.maximum(t_hom + SAMPLING_T[0] * inv_fs + SAMPLING_T[1] * (1.0 - ehat) * on, 0.5))
        mu_a = np.log(np.maximum(a_hom + SAMPLING_ALPHA * inv_fs, 1.1))
        s_t, s_a, r = (tuple(np.where(on, a, b) for a, b in zip(sp, hp))
                       for sp, hp in zip((SAMPLING_SIGMA_LN_T, SAMPLING_SIGMA_LN_ALPHA, SAMPLING_RHO), hom_s))
    if rng is None:
        ln_t, ln_a = mu_t, mu_a
    else:
        # widths capped at 0.5 as in Geant4 GFlash (GFlashSamplingShowerParameterisation)
        sig_t = np.minimum(1.0 / (s_t[0] + s_t[1] * ln_y_sig), 0.5)
        sig_a = np.minimum(1.0 / (s_a[0] + s_a[1] * ln_y_sig), 0.5)
        rho = np.clip(r[0] + r[1] * ln_y_sig, -0.99, 0.99)
        z1 = rng.standard_normal(np.shape(mu_t))
        z2 = rng.standard_normal(np.shape(mu_t))
        c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)   # corr(c1 z1 + c2 z2, c1 z1 - c2 z2) = rho
        ln_t = mu_t + sig_t * (c1 * z1 + c2 * z2)
        ln_a = mu_a + sig_a * (c1 * z1 - c2 * z2)
    tmax = np.exp(ln_t)
    alpha = np.maximum(np.exp(ln_a), ALPHA_MIN)
    return tmax, alpha


def median_alpha(energy_gev, z_eff, ec_mev, sampling=None):
    """Median alpha of :func:`longitudinal_parameters` (enters the reduced depth tau of the radial laws)."""
    ln_y = np.maximum(np.log(np.maximum(np.asarray(energy_gev) * 1000.0 / ec_mev, 1e-12)), 2.0)
    a = 0.81 + (0.458 + 2.26 / z_eff) * ln_y
    if sampling is not None:
        fs = np.asarray(sampling[0], dtype=np.float64)
        on = np.isfinite(fs)
        a = np.where(on, np.maximum(a + SAMPLING_ALPHA / np.where(on, fs, 1.0), 1.1), a)
    return a


def radial_parameters(tau, energy_gev, z_eff, sampling=None):
    """GFlash core radius R_C, tail radius R_T (units of R_M) and core weight p at reduced depth ``tau``;
    ``sampling`` = ``(f_s, ehat)`` adds the sampling-calorimeter corrections (:data:`SAMPLING_RC` ...)."""
    ln_e = np.log(np.maximum(energy_gev, 1e-3))
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z_eff) * tau
    k1 = 0.659 - 0.00309 * z_eff
    k4 = 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p3 = 1.313 - 0.0686 * ln_e
    w = (0.401 + 0.00187 * z_eff - tau) / p3
    p_core = (2.632 - 0.00094 * z_eff) * np.exp(w - np.exp(w))
    if sampling is not None:
        fs, ehat = (np.asarray(v, dtype=np.float64) for v in sampling)
        on = np.isfinite(fs)
        inv_fs = np.where(on, 1.0 / np.where(on, fs, 1.0), 0.0)
        one_e = (1.0 - ehat) * on
        r_core = r_core + SAMPLING_RC[0] * one_e + SAMPLING_RC[1] * inv_fs * np.exp(-tau)
        p_core = p_core + one_e * SAMPLING_WC[0] + SAMPLING_WC[1] * one_e * inv_fs * np.exp(-(tau - 1.0) ** 2)
        r_tail = r_tail + SAMPLING_RT[0] * one_e + SAMPLING_RT[1] * inv_fs * np.exp(-tau)
    return np.maximum(r_core, 1e-3), np.maximum(r_tail, 1e-2), np.clip(p_core, 0.0, 1.0)


#: Pair production in the complete-screening limit (PDG Review, "Passage of particles through matter", eq. 34.31;
#: Tsai, Rev. Mod. Phys. 46 (1974) 815): d sigma / dx ~ 1 - (4/3) x (1 - x) for the energy share x of the electron,
#: symmetric about 1/2, from 1 at the ends to 2/3 at x = 1/2 (the small 1/(9 ln(183 Z^-1/3)) term dropped).
_BH_X = np.linspace(0.0, 1.0, 2049)
_BH_CDF = (_BH_X - (2.0 / 3.0) * _BH_X ** 2 + (4.0 / 9.0) * _BH_X ** 3) / (7.0 / 9.0)


def pair_share(n: int, rng) -> np.ndarray:
    """Energy share x of one lepton of a converted photon (the other gets 1 - x), drawn from the complete-screening
    Bethe-Heitler law above by inversion of its tabulated CDF (x in (0, 1))."""
    u = rng.random(int(n))
    return np.clip(np.interp(u, _BH_CDF, _BH_X), 1e-6, 1.0 - 1e-6)


def conversion_depth(n: int, rng) -> np.ndarray:
    """Depth (X0) at which photons convert: exponential with mean 9/7 X0 (PDG Review sec. 34.4.5)."""
    return rng.exponential(CONVERSION_X0, int(n))


#: Largest and smallest "tail probability" 1 - u of the inner lateral strata boundaries (:func:`lateral_bounds`).
#: 1 - u = 0.5 is the tail law's median radius R; 1 - u = 0.004 is r = sqrt(249) R ~ 16 R: beyond it a tail sub-spot
#: of a 25-35 mm tail radius (CaloGAN stack) is mostly outside a 480 mm window (rear/side leakage, kept as such).
LATERAL_FIRST = 0.2
LATERAL_LAST = 0.006


def lateral_bounds(k: int) -> np.ndarray:
    """Boundaries (k+1,) of k strata of a radial CDF u in [0, 1), refined towards u -> 1 (large radii):
    1 - c_j for j = 1..k-1 falls geometrically from :data:`LATERAL_FIRST` to :data:`LATERAL_LAST`
    (k = 2: one inner boundary at their geometric mean; k = 1: the whole interval)."""
    k = int(k)
    if k < 1:
        raise ValueError(f"lateral_bounds: need k >= 1 strata, got {k}")
    if k == 1:
        return np.array([0.0, 1.0])
    if k == 2:
        inner = np.array([np.sqrt(LATERAL_FIRST * LATERAL_LAST)])
    else:
        inner = np.geomspace(LATERAL_FIRST, LATERAL_LAST, k - 1)
    return np.concatenate([[0.0], 1.0 - inner, [1.0]])


def lateral_counts(energy_gev, k_ref: int, k_min: int = 2, k_max: int = 8, e_ref_gev: float = 10.0) -> np.ndarray:
    """Legacy (no longer used by :mod:`pcloud.sim.deposit`, whose sub-spot count per depth spot is fixed so that the
    lateral proposal does not depend on the energy).
    Number of tail sub-spots per depth spot, growing like sqrt(E): round(k_ref sqrt(E / e_ref_gev)) clipped to
    [k_min, k_max] (k_ref = 0 switches lateral sub-spots off: 0 everywhere). The number of shower particles grows like
    E/E_c (Rossi approximation B; PDG Review, "Passage of particles through matter", sec. 34.5); sqrt(E) is a
    compromise between that growth and the speed budget (GFlash ties its spot count to E as E^0.876)."""
    e = np.asarray(energy_gev, dtype=np.float64)
    if int(k_ref) <= 0:
        return np.zeros(e.shape, dtype=np.int64)
    k = np.rint(int(k_ref) * np.sqrt(np.maximum(e, 0.0) / e_ref_gev)).astype(np.int64)
    return np.clip(k, int(k_min), int(k_max))


#: Radial laws are truncated at CDF u = RADIAL_U_MAX (r <= 100 R for 2 r R^2/(r^2+R^2)^2) and, for EM showers,
#: at r <= EM_R_MAX_RM Moliere radii: GFlash's tail radius R_T grows like exp(k4 tau) beyond the fitted range
#: tau <~ 3, which would send deep spots metres away. The law's small remainder beyond is folded back inside by
#: sampling u in [0, u_max), so a large enough block contains every shower exactly (tested). Real showers keep
#: 99% of their energy within ~3.5 R_M (PDG Review, sec. 34.5).
RADIAL_U_MAX = 0.9999
EM_R_MAX_RM = 30.0
#: Core weights p below this are set to 0 (the tail takes the depth spot's energy): GFlash's p(tau) falls like
#: exp(-exp(tau/p3)) and would otherwise create sub-eV core sub-spots deep in the shower (change of the law < 1e-3).
P_CORE_MIN = 1e-3


def radial_u_max(r_scale, r_max):
    """CDF value of 2 r R^2/(r^2+R^2)^2 at ``r_max`` (capped at :data:`RADIAL_U_MAX`)."""
    return np.minimum(RADIAL_U_MAX, 1.0 / (1.0 + (np.asarray(r_scale) / r_max) ** 2))


def radial_draw(r_scale, u):
    """Radius of the law 2 r R^2/(r^2 + R^2)^2 at CDF value u (inversion of u = r^2/(r^2 + R^2))."""
    return r_scale * np.sqrt(u / (1.0 - u))


def stratified_lateral(r_scale, bounds, rng, u_max: float = RADIAL_U_MAX, dtype=np.float64):
    """Radii (..., k) with one draw inside each stratum of ``bounds`` (k+1,) of the radial CDF truncated at
    ``u_max`` (scalar or (...,); u = u_max (b_k + U (b_k+1 - b_k))), for scale ``r_scale`` (...,). ``dtype``
    float32 halves the memory traffic (relative radius error < 1e-3 at u_max = 0.9999)."""
    shape = np.shape(r_scale) + (bounds.size - 1,)
    u_max = np.asarray(u_max, dtype=dtype)[..., None] if np.ndim(u_max) else dtype(u_max)
    u = rng.random(shape, dtype=dtype)
    u *= np.diff(bounds).astype(dtype)
    u += bounds[:-1].astype(dtype)
    u *= u_max
    return radial_draw(np.asarray(r_scale, dtype=dtype)[..., None], u)


def em_spots(energy_gev, z_eff, ec_mev, n_spots, rng, photon=False, n_lateral: int = 0, shower=None,
             repeat_depth: bool = True, n_core: int = 1, sampling=None):
    """Spots of ``len(energy_gev)`` EM showers in shower coordinates.

    Returns a dict of ``(M, S)`` arrays, S = ``n_spots`` * ``n_sub`` with ``n_sub`` = ``n_core`` + ``n_lateral``
    (sub-spots of one depth spot are adjacent: first the core sub-spots, then the tail sub-spots): ``t_x0`` depth of
    each spot from the particle's start (X0, including the photon conversion depth), ``r_rm`` radius from the axis in
    Moliere radii, ``phi`` azimuth (rad), ``weight`` energy fractions ((S,) when ``n_lateral`` = 0, else (M, S); each
    shower's weights sum to 1), and per shower ``tmax_x0``, ``alpha`` (the sampled Gamma parameters) and
    ``start_x0`` (conversion depth, 0 for e+-); ``n_sub`` and ``n_core``.
    ``z_eff``/``ec_mev`` are per shower (the medium where the shower starts). ``photon`` (bool, scalar or per shower):
    the photon converts after an exponential depth (:func:`conversion_depth`) into an e+e- pair sharing its energy
    by the Bethe-Heitler law (:func:`pair_share`); the two leptons shower independently from the conversion point,
    so a photon row holds 2 S spots (lepton 1, then lepton 2; electron rows of a mixed call are padded with
    zero-weight copies) and ``tmax_x0``/``alpha`` are those of the more energetic lepton.
    ``n_lateral`` = 0 gives one spot per depth spot whose radial component (core or tail) is drawn at random;
    ``n_lateral`` > 0 the importance-sampled sub-spots of the module docstring. ``n_core`` > 1 splits the core
    share p of a depth spot into ``n_core`` sub-spots of equal weight p / n_core, one in each equal-probability
    stratum of the core law's CDF, at azimuths phi_0 + 2 pi k / n_core (one random phi_0 per depth spot): an
    antithetic, stratified estimate of the core's expected energy in each cell, so that cell-to-cell fluctuations
    come from :mod:`pcloud.sim.fluctuations` (a physical, tunable law) and not from the number of spots; the tail
    sub-spots of a depth spot are likewise spread at phi_1 + 2 pi j / n_lateral.
    ``sampling``: ``(f_s, ehat)`` per shower for GFlash's sampling-calorimeter parametrisation (visible mode), see
    :func:`longitudinal_parameters`.
    ``shower``: optional dict of per-shower arrays overriding the sampled shower: ``tmax_x0`` and ``alpha`` (Gamma
    parameters), ``start_x0`` (start depth; a photon with this override is treated as one e-like shower from there),
    ``shape_energy_gev`` (energy entering the median alpha and the radial laws). Used to deposit one physical shower
    through several independent spot sets (tests of the spot-count independence,
    :func:`pcloud.sim.deposit.deposit_em_showers`). ``repeat_depth=False`` returns ``t_x0`` per depth spot (M, n)
    instead of per sub-spot (the deposit step needs one depth per depth spot).
    With ``n_lateral`` > 0 the radii are float32 (``r_rm``), the weights float64 (exact sums).
    """
    e = np.asarray(energy_gev, dtype=np.float64)
    m = e.size
    n_lateral, n_core = int(n_lateral), int(n_core)
    if n_lateral < 0 or n_core < 1:
        raise ValueError(f"em_spots: need n_lateral >= 0 and n_core >= 1, got {n_lateral}, {n_core}")
    z_eff = np.broadcast_to(np.asarray(z_eff, dtype=np.float64), (m,))
    ec_mev = np.broadcast_to(np.asarray(ec_mev, dtype=np.float64), (m,))
    shower = {} if shower is None else shower
    photon = np.broadcast_to(np.asarray(photon, dtype=bool), (m,))
    if photon.any() and "start_x0" not in shower:
        return _pair_spots(e, z_eff, ec_mev, n_spots, rng, photon, n_lateral, shower, repeat_depth, n_core, sampling)
    if sampling is not None:
        sampling = tuple(np.broadcast_to(np.asarray(v, dtype=np.float64), (m,)) for v in sampling)
    tmax, alpha = longitudinal_parameters(e, z_eff, ec_mev, rng, sampling)
    tmax = np.asarray(shower.get("tmax_x0", tmax), dtype=np.float64)
    alpha = np.asarray(shower.get("alpha", alpha), dtype=np.float64)
    e_shape = np.asarray(shower.get("shape_energy_gev", e), dtype=np.float64)
    beta = (alpha - 1.0) / tmax
    a_med = median_alpha(e_shape, z_eff, ec_mev, sampling)
    if np.ndim(n_spots):                  # per-shower counts: padded rectangular block
        bounds = padded_bounds(n_spots, "em")
        shape = (m, bounds.shape[1] - 1)
    else:
        bounds = proposal_bounds(int(n_spots), "em")
        shape = (m, int(n_spots))
    t = gamma_quantile(alpha[:, None], stratified_uniform(shape, rng, bounds)) / beta[:, None]
    # reduced depth as in GFlash: t / <t> scaled to the median profile (paper sec. 3.2)
    tau_scale = ((alpha - 1.0) / alpha * a_med / (a_med - 1.0)) / tmax
    tau = t * tau_scale[:, None]
    samp = None if sampling is None else tuple(v[:, None] for v in sampling)
    r_core, r_tail, p_core = radial_parameters(tau, e_shape[:, None], z_eff[:, None], samp)
    w_depth = np.diff(bounds, axis=-1)
    if n_lateral == 0:
        u = rng.random((2,) + shape)
        radius = np.where(u[0] < p_core, r_core, r_tail)
        r = radial_draw(radius, np.minimum(u[1], radial_u_max(radius, EM_R_MAX_RM)))
        weight = w_depth
        phi = rng.random(r.shape, dtype=np.float32) * np.float32(2.0 * np.pi)   # float32: fast trig
        n_core = 1
    else:
        lb = lateral_bounds(n_lateral)
        p_core = np.where(p_core < P_CORE_MIN, 0.0, p_core)
        c, kt = n_core, n_lateral
        n_sub = 2 * c + kt - 1
        r = np.empty(shape + (n_sub,), dtype=np.float32)
        u = rng.random(shape + (2,), dtype=np.float32)
        # core ring: one radius from the core law; inner tail ring: one radius in the tail's first stratum
        r[..., :c] = radial_draw(r_core, radial_u_max(r_core, EM_R_MAX_RM) * u[..., 0])[..., None]
        u_tail = radial_u_max(r_tail, EM_R_MAX_RM)
        r[..., c:2 * c] = radial_draw(r_tail, u_tail * lb[1] * u[..., 1])[..., None]
        if kt > 1:
            r[..., 2 * c:] = stratified_lateral(r_tail, lb[1:], rng, u_tail, dtype=np.float32)
        r = r.reshape(m, -1)
        dlb = np.diff(lb)
        w_core = p_core * (w_depth if w_depth.ndim == 2 else w_depth[None, :])
        w_tail = (w_depth if w_depth.ndim == 2 else w_depth[None, :]) - w_core
        weight = np.empty(shape + (n_sub,))
        weight[..., :c] = (w_core / c)[..., None]
        weight[..., c:2 * c] = (w_tail * (dlb[0] / c))[..., None]
        weight[..., 2 * c:] = w_tail[..., None] * dlb[1:]
        weight = weight.reshape(m, -1)
        # azimuths: rings at phi_0 + 2 pi k / c (tail ring shifted by half a step), outer tail strata spread at
        # phi_1 + 2 pi j / (kt - 1) (one random phi_0, phi_1 per depth spot; float32: fast trig)
        offs = np.concatenate([np.arange(c) / c, (np.arange(c) + 0.5) / c,
                               np.arange(kt - 1) / max(kt - 1, 1)]) * (2.0 * np.pi)
        phi0 = rng.random(shape + (2,), dtype=np.float32)
        phi0 *= np.float32(2.0 * np.pi)
        phi = np.repeat(phi0, [2 * c, kt - 1], axis=-1)
        phi += offs.astype(np.float32)
        phi = phi.reshape(m, -1)
        if repeat_depth:
            t = np.repeat(t, n_sub, axis=1)
    start = np.asarray(shower.get("start_x0", np.zeros(m)), dtype=np.float64)
    return {"t_x0": t + start[:, None], "r_rm": r, "phi": phi, "weight": weight, "tmax_x0": tmax,
            "alpha": alpha, "start_x0": start, "n_sub": 2 * n_core + n_lateral - 1 if n_lateral else 1,
            "n_core": n_core,
            "tau": tau}


def _pair_spots(e, z_eff, ec_mev, n_spots, rng, photon, n_lateral, shower, repeat_depth, n_core, sampling):
    """:func:`em_spots` for rows with photons: conversion depth, Bethe-Heitler pair, two independent lepton showers
    (rows of 2 S spots; electron rows padded with zero-weight copies of their spots)."""
    m = e.size
    t_conv = np.where(photon, conversion_depth(m, rng), 0.0)
    x = np.where(photon, pair_share(m, rng), 1.0)
    hard = np.maximum(x, 1.0 - x)
    two = lambda a: np.concatenate([a, a])              # noqa: E731
    sub_shower = {k: two(np.asarray(v)) for k, v in shower.items()}
    sub_shower["start_x0"] = two(t_conv)
    n2 = two(np.asarray(n_spots)) if np.ndim(n_spots) else n_spots
    samp = None if sampling is None else tuple(two(np.broadcast_to(np.asarray(v, float), (m,))) for v in sampling)
    sp = em_spots(np.concatenate([hard * e, (1.0 - hard) * e]), two(z_eff), two(ec_mev), n2, rng, False, n_lateral,
                  sub_shower, repeat_depth, n_core, samp)
    w = np.broadcast_to(sp["weight"], sp["r_rm"].shape)
    share = np.concatenate([hard, np.where(photon, 1.0 - hard, 0.0)])[:, None]
    out = {}
    for k in ("t_x0", "r_rm", "phi"):
        out[k] = np.concatenate([sp[k][:m], sp[k][m:]], axis=1)
    out["weight"] = np.concatenate([(w * share)[:m], (w * share)[m:]], axis=1)
    out.update(tmax_x0=sp["tmax_x0"][:m], alpha=sp["alpha"][:m], start_x0=t_conv, n_sub=sp["n_sub"],
               n_core=sp["n_core"], tau=np.concatenate([sp["tau"][:m], sp["tau"][m:]], axis=1))
    return out
