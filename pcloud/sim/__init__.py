"""pcloud's embedded *parametrised fast simulation* (not Geant4; Geant4's data sets cannot be fetched here).

- EM showers: GFlash (Grindhammer & Peters, hep-ex/0001020) longitudinal Gamma profiles with correlated parameter
  fluctuations and core + tail radial profiles, deposited as importance-sampled spots (realistic cell occupancy,
  exact energy conservation; :mod:`pcloud.sim.em`); photons convert after an
  exponential depth of mean 9/7 X0.
- Hadronic showers: MIP track to an exponential first interaction (lambda_I), Groom EM fraction, Bock-style
  hadronic Gamma profile in lambda_I, invisible energy -> e/h > 1 (:mod:`pcloud.sim.hadronic`).
- pi0 -> gamma gamma decays (:mod:`pcloud.sim.pi0`); "total" and "visible" (sampling-fluctuated) energy modes and
  Gaussian cell noise (:mod:`pcloud.sim.deposit`); particle gun (:mod:`pcloud.sim.gun`).

Measured laws and throughput: ``datasets/SIMULATION.md``; law tests: ``tests/sim/``.
"""
from .deposit import Deposits, add_noise, deposit_particles, sparse_noise
from .gun import particle_gun
from .showers import simulate_showers, simulate_sparse

__all__ = ["Deposits", "deposit_particles", "add_noise", "sparse_noise", "particle_gun", "simulate_showers",
           "simulate_sparse"]
