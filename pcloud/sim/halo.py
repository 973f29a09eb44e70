"""Far deposits of electromagnetic showers: soft-photon halo, penetrating photons and photonuclear neutrons.

GFlash's radial law (core + tail, :mod:`pcloud.sim.em`) describes the bulk of an EM shower. Beyond a few Moliere radii
and behind the shower the total deposited energy is carried by photons of a few MeV, near the minimum of the photon
attenuation coefficient, which travel one or more attenuation lengths before depositing their energy in Compton and
photoelectric steps (PDG Review, "Passage of particles through matter", sec. 34.5: the longer tails of high-Z
showers; Bathow et al., Nucl. Phys. B20 (1970) 592: cascades in lead measured to 40 X0 and 12 R_M, where the energy
beyond ~4 R_M exceeds core-dominated calculations), and by neutrons from photonuclear (giant-dipole-resonance)
reactions, which scatter elastically over tens of cm leaving keV-scale recoil deposits. The public CaloGAN files
record all of it (total absorber + active deposit of every Geant4 step, no threshold): it sets their occupancy
("sparsity") far from the axis, the energy in the outer strips of layer 0 (sigma_0) and part of the deep tail (f_2).

Model. Each population (:class:`FarDeposits`) is a compound Poisson process: a (sub-)shower of energy E emits
N ~ Poisson(fraction x E / quantum) deposits of energy ``quantum`` each (the physical deposit size: the occupancy it
causes follows the energy density and does not depend on any spot budget), from points on its axis at depths drawn
from its own longitudinal (Gamma) profile. A deposit lies at distance d = d_min + lambda Exp(1) from its emission
point (the exponential attenuation law beyond d_min; the nearer energy is GFlash's tail), lambda = the stack's
minimum-attenuation length (:func:`pcloud.sim.media.stack_attenuation_mm`, 55 mm for 2 mm Pb / 4 mm LAr) times
``length_scale``, in a direction uniform in cos(theta) in [``cos_min``, 1] about the shower axis. Neutrons
(:class:`NeutronGas`) random-walk from their emission point with a tiny deposit per elastic scatter.

The fractions, quanta and lengths are fitted to the CaloGAN Geant4 card (datasets/SIMULATION.md); the physical
interpretation fixes their order of magnitude, not their exact values. The halo energy is taken from the shower's
GFlash spots (energy is conserved); in visible mode it is sampled like the rest of the shower.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FarDeposits:
    """A population of far deposits (see the module docstring).

    ``fraction``: share of the (sub-)shower's energy deposited by the population; ``quantum_gev``: energy of one
    deposit; ``d_min_att``: minimum distance from the emission point in attenuation lengths; ``length_scale``: mean
    free path beyond it in attenuation lengths; directions uniform in cos(theta) in [``cos_min``, ``cos_max``] about the
    shower axis (cos(theta) = 1: straight on). ``max_count``: at most this many deposits are expected per
    (sub-)shower; beyond, the quantum grows instead (a cost bound for very energetic showers whose far cells are
    occupied anyway; the mean energy is unchanged)."""

    name: str
    fraction: float
    quantum_gev: float
    d_min_att: float
    length_scale: float
    cos_min: float = -1.0
    cos_max: float = 1.0
    max_count: int = 1_000_000


@dataclass(frozen=True)
class NeutronGas:
    """Evaporation / photonuclear neutrons: elastic-scatter deposits (recoil nuclei) spread over the region the
    neutrons diffuse through.

    ``per_gev``: neutrons per GeV of the emitting energy (Poisson); ``max_per_shower``: cap on the deposits (cost
    bound; the occupancy they cause saturates long before); ``steps``: scatters followed per neutron (random walk,
    ``box_lambda`` = 0), or deposits per neutron spread uniformly in a cube of half-width ``box_lambda`` nuclear
    interaction lengths around its emission point (``box_lambda`` > 0: a neutron in lead scatters ~100 times, losing
    ~1% of its energy per collision, and diffuses over the whole calorimeter; the cube stands for the resulting
    flat density); ``step_lambda``: mean free path between scatters of a walk in lambda_I (MeV neutrons:
    sigma_el(Pb) ~ 5.5 b, ~56 mm = 0.32 lambda_I in lead); ``deposit_gev``: energy left per scatter (recoil nucleus:
    on average 2A/(A+1)^2 of the neutron's ~1-2 MeV, i.e. ~15 keV in Pb and ~70 keV in Ar)."""

    per_gev: float
    max_per_shower: int
    steps: int
    step_lambda: float
    deposit_gev: float
    box_lambda: float = 0.0


#: Populations of EM showers: the albedo of soft photons scattered back towards the front and sideways
#: (cos(theta) in [-1, 0.3], beyond two attenuation lengths; Compton backscattering leaves ~0.2-0.5 MeV photons),
#: and penetrating photons flying forward in a ~37 deg cone beyond three attenuation lengths (the deep tail behind
#: the shower). Fractions fitted to the card's f0 / f2, quanta to its sparsities: the deep quantum sets the occupancy
#: of the back layer (1.6 -> 1.3 MeV raises the CaloGAN e+ layer-2 median by 3 of its 72 cells; 1.45 MeV centres
#: the e+ and gamma medians over five seeds).
EM_FAR = [
    FarDeposits("albedo", 0.0065, 0.5e-3, 2.0, 1.0, -1.0, 0.3, max_count=1500),
    FarDeposits("deep", 0.009, 1.45e-3, 3.0, 1.5, 0.8, max_count=700),
]

#: Photonuclear neutrons of EM showers: giant-dipole-resonance photoabsorption gives ~0.2-0.3 neutrons per GeV of
#: shower energy in lead (Swanson, Health Phys. 37 (1979) 347; an Approximation-B photon track length with the
#: integrated GDR cross section 60 NZ/A MeV mb gives 0.17 reactions per GeV in Pb). Switched off (per_gev = 0) by
#: default: with 0.25/GeV they changed the CaloGAN EM occupancies by < 10%, which the albedo fit absorbs, at ~20% of
#: the simulation time. Hadron showers, with ~100x more evaporation neutrons, use them (:mod:`pcloud.sim.hadronic`).
EM_NEUTRONS = NeutronGas(per_gev=0.0, max_per_shower=60, steps=24, step_lambda=0.3, deposit_gev=2.0e-5)


def far_offsets(shape, att_mm, pop: FarDeposits, rng):
    """Displacements of deposits of ``pop`` from their emission points (``shape``; ``att_mm`` broadcasting with it,
    the local attenuation length): (dz along the shower axis, transverse u1, u2 along the line's e1, e2), mm,
    float32."""
    d = rng.standard_exponential(shape, dtype=np.float32)
    d *= np.float32(pop.length_scale)
    d += np.float32(pop.d_min_att)
    d *= np.asarray(att_mm, dtype=np.float32)
    u = rng.random((2,) + tuple(np.atleast_1d(shape)), dtype=np.float32)
    cos_t = u[0] * np.float32(pop.cos_max - pop.cos_min)
    cos_t += np.float32(pop.cos_min)
    r = np.float32(1.0) - cos_t * cos_t
    np.maximum(r, np.float32(0.0), out=r)
    np.sqrt(r, out=r)
    r *= d
    phi = u[1] * np.float32(2.0 * np.pi)
    d *= cos_t
    return d, r * np.cos(phi), r * np.sin(phi)


def neutron_box(shape, steps: int, half_mm, rng):
    """``steps`` deposits per neutron uniform in a cube of half-width ``half_mm`` (broadcast with ``shape``) around
    the emission point: (dz, u1, u2) of shape ``shape`` + (steps,) (along the shower axis, e1, e2), mm, float32."""
    full = tuple(shape) + (int(steps),)
    h = np.asarray(half_mm, dtype=np.float32)[..., None]
    d = (rng.random((3,) + full, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)) * h
    return d[2], d[0], d[1]


def neutron_walks(shape, steps: int, step_mm, rng):
    """Positions of ``steps`` successive scatters of neutrons starting at the origin: isotropic directions,
    exponential step lengths of mean ``step_mm`` (broadcast with ``shape``). Returns (dz, u1, u2) arrays of shape
    ``shape`` + (steps,): along the shower axis and its transverse e1, e2 (mm, float32)."""
    full = tuple(shape) + (int(steps),)
    step = rng.standard_exponential(full, dtype=np.float32) * np.asarray(step_mm, dtype=np.float32)[..., None]
    cos_t = rng.random(full, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)
    sin_t = np.sqrt(np.float32(1.0) - cos_t * cos_t)
    ph = rng.random(full, dtype=np.float32) * np.float32(2.0 * np.pi)
    dz = np.cumsum(step * cos_t, axis=-1)
    dx = np.cumsum(step * sin_t * np.cos(ph), axis=-1)
    dy = np.cumsum(step * sin_t * np.sin(ph), axis=-1)
    return dz, dx, dy
