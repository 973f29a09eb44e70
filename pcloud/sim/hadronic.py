"""Hadronic showers: first interaction, EM fraction as pi0-like sub-showers, hadronic profile, invisible energy,
backsplash, halo and evaporation neutrons.

Model (a fast parametrisation, not a cascade simulation; pions tuned to the public CaloGAN Geant4 distributions,
datasets/SIMULATION.md):

1. A charged hadron ionises like a MIP (mean dE/dx of the local stack, multiple scattering, delta rays;
   :func:`pcloud.sim.deposit._track_block`) from the front face to its first inelastic interaction, at a depth drawn
   from an exponential law in the *pion* interaction length for pions (:data:`PIONS`; PDG atomic and nuclear
   properties: lambda_pi(Pb) = 226.2 g/cm^2 vs lambda_I = 199.6 g/cm^2, :func:`pcloud.sim.media.pion_lambda_ratio`)
   and in the nuclear interaction length otherwise. Neutral hadrons leave nothing before it. A hadron that does not
   interact inside the calorimeter punches through (MIP deposits only).
2. At the interaction the remaining energy E splits into an EM part (pi0 / eta -> photons) with the mean fraction of
   Groom's power law (PDG Review, "Calorimetry"; Gabriel et al., NIM A338 (1994) 336):

       <f_em> = 1 - (E / E0)^(k - 1),   E0 = 1 GeV (pions),  k = 0.82,

   fluctuating shower by shower as a Beta distribution with that mean and concentration ``FEM_CONCENTRATION`` (the
   large, asymmetric event-to-event f_em fluctuations of Wigmans, "Calorimetry", sec. 4.3). The EM part is
   1 + Poisson(:data:`PI0_EXTRA`) photon-like sub-showers (:func:`pi0_split`): successive pi0 generations, the first
   at the interaction and the others along the hadronic profile, each tilted by p_T / E from the hadron's line.
3. The non-EM part deposits along a Gamma profile in lambda_I measured from the interaction point, with the
   hadronic-component parameters of Bock et al. (NIM 186 (1981) 533), E in GeV:

       shape a = 0.6165 + 0.3183 ln E,   rate d = 0.9099 - 0.0237 ln E   (per lambda_I),

   laterally as 2 r R^2 / (r^2 + R^2)^2 with R = lambda_I (0.12 + 0.08 x) growing with the depth x (lambda_I) after
   the interaction (~95% within ~1 lambda_I; PDG "Calorimetry"), with importance-sampled lateral strata.
4. A fraction f_inv of the non-EM energy is invisible (nuclear binding energy, escaping neutrinos, slow neutrons):
   mean :data:`F_INVISIBLE` with Beta fluctuations shower by shower (Wigmans sec. 2.3.3: 30-40% of the non-EM energy);
   the invisible energy E_inv = f_inv (1 - f_em) E is anti-correlated with the EM fraction, and e/h = 1 / (1 - <f_inv>)
   > 1 (non-compensating). Energy leaking out of the back or the sides is lost.
5. Far deposits of the visible non-EM energy (:data:`HAD_FAR`, :class:`pcloud.sim.halo.FarDeposits`): the
   backsplash towards the front and a forward halo, emitted near the first interactions (:data:`NUCLEAR_DEPTH_LAMBDA`),
   and evaporation neutrons (:data:`HAD_NEUTRONS`, ~one per 8 MeV of invisible energy) whose small recoil deposits
   fill the calorimeter around the shower: together they give the occupancy, f_0 and sigma_0 of Geant4 pions.
"""
from __future__ import annotations

import numpy as np

from .em import (gamma_quantile, lateral_bounds, padded_bounds, proposal_bounds, radial_draw, radial_u_max,
                 stratified_lateral, stratified_uniform)
from .halo import FarDeposits, NeutronGas

GROOM_E0_GEV = 1.0
GROOM_K = 0.82
FEM_CONCENTRATION = 8.0
F_INVISIBLE = 0.27
#: Lateral truncation of the non-EM component (lambda_I): 2 r R^2/(r^2+R^2)^2 has a heavy tail; hadron showers keep
#: ~99% of their energy within ~3 lambda_I of the axis (Wigmans, "Calorimetry", sec. 2.4 / Fig. 2.24), so spots
#: beyond 3 lambda_I (< 0.5% of the law) are not drawn: the radial law is truncated there and renormalised.
HAD_R_MAX_LAMBDA = 3.0
FINV_CONCENTRATION = 40.0

#: |PDG| of charged hadrons (ionise before interacting); other hadrons (|pdg| > 100) are treated as neutral.
CHARGED_HADRONS = frozenset({211, 321, 2212, 3112, 3222, 3312, 3334, 411, 431, 521})
#: |PDG| of hadrons whose first interaction uses the pion interaction length (:mod:`pcloud.sim.media`).
PIONS = frozenset({211})

#: Far deposits of the non-EM component (:class:`pcloud.sim.halo.FarDeposits`, shares of its visible energy),
#: emitted from points of its Bock profile: the backsplash (albedo of a hadron shower: soft photons from nuclear
#: de-excitation and slow hadrons sent back towards the front; Wigmans, "Calorimetry", sec. 2.3 and 4.9) and an
#: isotropic halo.
HAD_FAR = [
    FarDeposits("backsplash", 0.10, 5.0e-3, 0.5, 1.5, -1.0, -0.8, max_count=500),
    FarDeposits("halo", 0.12, 5.0e-3, 0.5, 3.0, 0.5, 1.0, max_count=1000),
]
#: Far deposits and evaporation neutrons come from the nuclear breakups of the cascade, concentrated near its first
#: interactions: emission depths after the first interaction exponential with this mean (lambda_I).
NUCLEAR_DEPTH_LAMBDA = 0.3
#: Same for the evaporation neutrons, which come from every generation of the cascade (deeper on average).
NEUTRON_DEPTH_LAMBDA = 0.25
#: Evaporation neutrons: about one per 8 MeV of nuclear binding energy lost, i.e. per GeV of invisible energy
#: ~125 (Wigmans, "Calorimetry", sec. 2.3: the invisible energy and the evaporation-neutron count are strongly
#: correlated); capped per shower (the occupancy they cause saturates; cost).
HAD_NEUTRONS = NeutronGas(per_gev=125.0, max_per_shower=800, steps=10, step_lambda=0.3, deposit_gev=2.0e-5,
                          box_lambda=0.8)


#: The EM component of a hadron shower as photon-like sub-showers (pi0 -> gamma gamma of successive generations of
#: the cascade): 1 + Poisson(PI0_EXTRA) of them (at most PI0_MAX), energy shares uniform on the simplex, the first
#: produced at the first interaction and the others at depths of the hadronic (Bock) profile; each flies at an angle
#: p_T / E to the hadron with p_T exponential of mean PI0_PT_GEV (the mean transverse momentum of pions produced in
#: hadron-nucleus collisions, ~0.3-0.4 GeV/c; PDG Review, "Cosmic rays" / hadronic interaction models).
PI0_EXTRA = 1.0
PI0_MAX = 5
PI0_PT_GEV = 0.35


def pi0_split(e_em, a_b, d_b, rng):
    """Split EM energies ``e_em`` (M,) into sub-showers. Returns flat arrays (K,): energy (GeV), production depth after
    the first interaction (lambda_I; 0 for the first sub-shower; Gamma(``a_b``)/``d_b`` for the others), tilt angle
    (rad, <= 1) and the index of the parent hadron."""
    m = np.size(e_em)
    n = np.minimum(1 + rng.poisson(PI0_EXTRA, m), PI0_MAX)
    parent = np.repeat(np.arange(m), n)
    first = np.ones(parent.size, dtype=bool)
    first[1:] = parent[1:] != parent[:-1]
    w = rng.standard_exponential(parent.size)
    share = w / np.bincount(parent, weights=w, minlength=m)[parent]
    e_sub = share * np.asarray(e_em)[parent]
    u = rng.random(parent.size) * (1.0 - 1e-9)
    x = np.where(first, 0.0, gamma_quantile(np.asarray(a_b)[parent], u) / np.asarray(d_b)[parent])
    pt = rng.exponential(PI0_PT_GEV, parent.size)
    theta = np.minimum(pt / np.maximum(e_sub, 1e-3), 1.0)
    return e_sub, x, theta, parent


def groom_em_fraction(energy_gev, e0_gev: float = GROOM_E0_GEV, k: float = GROOM_K) -> np.ndarray:
    """Mean EM fraction of a hadron shower, f_em = 1 - (E/E0)^(k-1), clipped to [0, 1)."""
    e = np.maximum(np.asarray(energy_gev, dtype=np.float64), 1e-9)
    return np.clip(1.0 - (e / e0_gev) ** (k - 1.0), 0.0, 0.999)


def _beta_with_mean(mean, concentration, rng):
    mean = np.clip(mean, 1e-4, 1 - 1e-4)
    return rng.beta(mean * concentration, (1.0 - mean) * concentration)


def sample_em_fraction(energy_gev, rng) -> np.ndarray:
    """Per-shower EM fraction: Beta-distributed around Groom's mean; exactly 0 where the mean is 0."""
    m = groom_em_fraction(energy_gev)
    return np.where(m > 0, _beta_with_mean(m, FEM_CONCENTRATION, rng), 0.0)


def sample_invisible_fraction(n: int, rng) -> np.ndarray:
    return _beta_with_mean(np.full(n, F_INVISIBLE), FINV_CONCENTRATION, rng)


def bock_parameters(energy_gev):
    """Shape a and rate d (per lambda_I) of the hadronic-component Gamma profile (Bock et al. 1981)."""
    ln_e = np.log(np.maximum(np.asarray(energy_gev, dtype=np.float64), 0.05))
    return np.maximum(0.6165 + 0.3183 * ln_e, 0.3), np.maximum(0.9099 - 0.0237 * ln_e, 0.5)


def hadronic_spots(energy_gev, n_spots: int, rng, n_lateral: int = 0):
    """Spots of the non-EM component: ``x_lambda`` depth after the interaction (lambda_I), ``r_lambda`` radius
    (lambda_I units of the local medium), ``phi`` (rad), all ``(M, S)``; ``weight`` (S,) energy fractions (sum 1),
    or (M, S) when ``n_spots`` is a per-shower array (rows padded to the largest count with zero weights).
    S = ``n_spots`` without lateral sub-spots (``n_lateral`` = 0: one radius per depth spot, drawn from the whole
    law), else ``n_spots * n_lateral`` (the sub-spots of a depth spot are adjacent, one per lateral stratum)."""
    a, d = bock_parameters(energy_gev)
    if np.ndim(n_spots):                  # per-shower counts (M,): padded block, zero-weight padding
        bounds = padded_bounds(n_spots, "had")
        shape = (np.size(a), bounds.shape[1] - 1)
    else:
        bounds = proposal_bounds(int(n_spots), "had")
        shape = (np.size(a), int(n_spots))
    x = gamma_quantile(a[:, None], stratified_uniform(shape, rng, bounds)) / d[:, None]   # stratified, see em.py
    scale = 0.12 + 0.08 * x
    u_max = radial_u_max(scale, HAD_R_MAX_LAMBDA)
    if int(n_lateral) <= 0:
        r = radial_draw(scale, np.minimum(rng.random(shape), u_max))
        weight = np.diff(bounds, axis=-1)
    else:
        lb = lateral_bounds(int(n_lateral))
        r = stratified_lateral(scale, lb, rng, u_max=u_max).reshape(shape[0], -1)
        x = np.repeat(x, int(n_lateral), axis=1)
        wd = np.diff(bounds, axis=-1)
        weight = (wd[..., None] * np.diff(lb)).reshape(wd.shape[:-1] + (-1,))
    phi = rng.random(r.shape, dtype=np.float32) * np.float32(2.0 * np.pi)   # float32: fast trig
    return {"x_lambda": x, "r_lambda": r, "phi": phi, "weight": weight}
