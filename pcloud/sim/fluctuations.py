"""Cell-level fluctuations of the deposited energy, separated from the number of spots that estimates its mean.

The spots of :mod:`pcloud.sim.em` are an *estimate* of the expected energy of a shower in each cell (stratified in
depth, radius and azimuth). What a real shower puts in a cell also fluctuates, and how often a cell is hit at all
(the occupancy of the public CaloGAN files, which store every Geant4 step deposit without threshold) is a property of
the shower, not of the simulation's spot budget. Two laws, both exactly or to leading order independent of how the
expected energy was split into spots:

1. **Core quanta** (:func:`quantise`): the energy of the dense shower core is carried by N_eff independent "spots"
   as in GFlash, whose spot count N = n1 ln(Z) E^n2 (n1 = 93, n2 = 0.876 for homogeneous media; Grindhammer &
   Peters, hep-ex/0001020, sec. 4; Geant4 ``GVFlashHomoShowerTuning``) reproduces the cell-to-cell fluctuations of
   full simulation. A core sub-spot of energy e gets the variance 2 q e of a compound Poisson number of exponential
   quanta of mean q = E / N_eff, through a Gamma law (infinitely divisible, so summed over the sub-spots of a cell it
   is the same law for the cell's expected energy, whatever the number of sub-spots). The shower's core energy is
   then rescaled to its expectation (a multinomial rather than Poisson total: the total deposited energy of a
   contained shower does not fluctuate with the spot statistics). N_eff = :data:`SPOT_SCALE` x GFlash's N: the
   scale is fitted to the CaloGAN Geant4 E_ratio distributions (datasets/SIMULATION.md).
2. **Soft deposits** (:func:`roulette`): the periphery (GFlash tail, halo of soft photons) is made of low-energy
   particles, each depositing a small quantum q_s. A sub-spot of energy e is kept with probability
   p = 1 - exp(-e / q_s) and then carries e / p, times an exponential variate where e < q_s (unbiased; single quanta
   of a continuous size spectrum, as the Compton electrons and photoabsorptions that make the low-energy tail of
   cell energies). For a cell of expected energy mu the probability to stay
   empty is prod_i exp(-e_i / q_s) = exp(-mu / q_s) exactly, and the variance is ~ q_s mu, as for a Poisson number
   of quanta: occupancy follows the energy density, not the spot count ("Russian roulette", a standard variance-
   preserving sampling game; Kahn, 1956). It also drops most far, tiny sub-spots before they are located in cells.
"""
from __future__ import annotations

import numpy as np

#: GFlash homogeneous spot-count law N = SPOT_N1 ln(Z) (E/GeV)^SPOT_N2 (Geant4 GVFlashHomoShowerTuning).
SPOT_N1 = 93.0
SPOT_N2 = 0.876
#: N_eff / N_GFlash: fitted to the CaloGAN Geant4 E_ratio_0 / E_ratio_1 medians (datasets/SIMULATION.md).
SPOT_SCALE = 0.125
#: Smallest core quantum (GeV): the exponential fall beyond LATE_TAU stops at single soft-particle deposits.
QUANTUM_FLOOR_GEV = 1.0e-5
#: Soft-deposit quantum (GeV) of the shower periphery and halo (soft photons near the attenuation minimum deposit
#: their energy in Compton steps of ~0.5-2 MeV); fitted to the CaloGAN Geant4 sparsity (occupancy) distributions.
SOFT_QUANTUM_GEV = 0.8e-3


#: GFlash spot-number profile (Geant4 GVFlashHomoShowerTuning / GFlashSamplingShowerTuning): the spots follow a
#: Gamma profile with T_s = T (t1 + t2 Z) and alpha_s = alpha (a1 + a2 Z), earlier and broader than the energy.
SPOT_PROFILE_HOM = ((0.698, 0.00212), (0.639, 0.00334))
SPOT_PROFILE_SAMPLING = ((0.813, 0.0019), (0.844, 0.0026))
#: Upper clip of the spot-energy ratio: GFlash's ratio keeps growing like t^(alpha - alpha_s) in the deep tail, where
#: the spot profile was not fitted; beyond RATIO_MAX x E/N the quantum stays constant (soft particles late in the
#: shower, :func:`spot_energy_ratio`).
RATIO_MAX = 2.0
#: Beyond LATE_TAU shower maxima (t > LATE_TAU T) the quantum falls as exp(-(t/T - LATE_TAU)): the late shower is
#: made of soft particles (near and below the critical energy) whose deposits are many and small.
LATE_TAU = 1.5


def spot_energy_ratio(t_x0, alpha, tmax_x0, z_eff, sampling: bool = False) -> np.ndarray:
    """GFlash's energy per spot at depth t relative to the mean E/N: f_E(t) / f_N(t), the ratio of the energy
    profile Gamma(alpha, beta) to the spot profile Gamma(alpha_s, beta_s) (:data:`SPOT_PROFILE_HOM`), clipped to
    [0.1, :data:`RATIO_MAX`] and falling exponentially beyond :data:`LATE_TAU` shower maxima. Early spots are
    smaller, late ones larger (Grindhammer & Peters, hep-ex/0001020, sec. 4; Geant4
    ``GFlashShowerModel``: the energy and the number of spots of each longitudinal step are integrated separately).
    Arguments broadcast: ``t_x0`` depth from the shower start (X0), ``alpha``, ``tmax_x0`` the shower's parameters."""
    from scipy.special import gammaln

    (t1, t2), (a1, a2) = SPOT_PROFILE_SAMPLING if sampling else SPOT_PROFILE_HOM
    t = np.maximum(np.asarray(t_x0, dtype=np.float64), 1e-3)
    a = np.asarray(alpha, dtype=np.float64)
    b = (a - 1.0) / np.asarray(tmax_x0, dtype=np.float64)
    a_s = np.maximum(a * (a1 + a2 * z_eff), 1.05)
    b_s = (a_s - 1.0) / (np.asarray(tmax_x0, dtype=np.float64) * (t1 + t2 * z_eff))
    log_r = (a * np.log(b) - a_s * np.log(b_s) + (a - a_s) * np.log(t) - (b - b_s) * t
             - gammaln(a) + gammaln(a_s))
    ratio = np.clip(np.exp(log_r), 0.1, RATIO_MAX)
    tau = t / np.asarray(tmax_x0, dtype=np.float64)
    return ratio * np.exp(-np.maximum(tau - LATE_TAU, 0.0))


def core_quantum_gev(energy_gev, z_eff, ratio=None) -> np.ndarray:
    """Energy quantum q = E / N_eff (GeV) of a shower's body, N_eff = SPOT_SCALE * 93 ln(Z) E^0.876 (>= 1), times the
    depth-dependent ``ratio`` of :func:`spot_energy_ratio` when given (broadcasting)."""
    e = np.maximum(np.asarray(energy_gev, dtype=np.float64), 1e-6)
    n = SPOT_SCALE * SPOT_N1 * np.log(np.maximum(np.asarray(z_eff, dtype=np.float64), 2.0)) * e ** SPOT_N2
    q = e / np.maximum(n, 1.0)
    return q if ratio is None else np.maximum(q * ratio, QUANTUM_FLOOR_GEV)


def quantise(e, q, rng, conserve_axis=None) -> np.ndarray:
    """Fluctuate energies ``e`` (GeV) with the Gamma law of shape e / (2 q) and scale 2 q: mean e, variance 2 q e,
    the mean and variance of a compound Poisson number of exponential quanta of mean ``q`` (GFlash-like spots). The
    Gamma law is infinitely divisible with a shape linear in e (Gamma(a1, s) + Gamma(a2, s) = Gamma(a1 + a2, s)), so
    fluctuating per sub-spot is identical in distribution to fluctuating each cell's summed energy. It has no atom
    at 0 (tiny entries stay tiny): occupancy is decided afterwards by :func:`roulette`. ``e`` and ``q`` broadcast.
    With ``conserve_axis`` (int or tuple), each slice along the other axes is rescaled so that its sum equals the
    input's (the multinomial version: a contained shower's total does not fluctuate with its spot statistics)."""
    e = np.asarray(e)
    dt = np.float32 if e.dtype == np.float32 else np.float64
    scale = (2.0 * np.asarray(q, dtype=np.float64)).astype(dt)
    out = rng.standard_gamma(np.maximum(e, 0) / scale, dtype=dt) * scale
    if conserve_axis is not None:
        want = e.sum(axis=conserve_axis, keepdims=True, dtype=np.float64)
        got = out.sum(axis=conserve_axis, keepdims=True, dtype=np.float64)
        out *= np.where(got > 0, want / np.where(got > 0, got, 1.0), 0.0).astype(dt)
    return out


def roulette(e, q, rng) -> np.ndarray:
    """Russian roulette with quantum ``q`` (GeV): keep each entry with p = 1 - exp(-e/q), then e/p times a standard
    exponential variate where e < q (deposits of a continuous size spectrum); else 0. Unbiased for any rounding of
    p, since the same float32 p decides and weights (E[out] = p e/p = e). Keeps the dtype of ``e`` (float32 or
    float64)."""
    e = np.asarray(e)
    if e.dtype != np.float32:
        e = e.astype(np.float64, copy=False)
    x = (e / np.asarray(q, dtype=e.dtype)).astype(np.float32, copy=False)
    p = np.exp(np.negative(x))
    np.subtract(np.float32(1.0), p, out=p)
    keep = rng.random(e.shape, dtype=np.float32) < p
    out = np.divide(e, p, out=np.zeros(e.shape, dtype=e.dtype), where=keep)
    single = np.nonzero((keep & (x < 1)).ravel())[0]   # mostly one quantum: its size follows the quantum spectrum
    if single.size:
        flat = out.reshape(-1)
        flat[single] *= rng.standard_exponential(single.size, dtype=np.float32)
    return out
