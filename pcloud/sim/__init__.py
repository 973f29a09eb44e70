"""pcloud's embedded *parametrised fast simulation* (not Geant4; Geant4's data sets cannot be fetched here).

- EM showers: GFlash (Grindhammer & Peters, hep-ex/0001020) longitudinal Gamma profiles with correlated parameter
  fluctuations (sampling-calorimeter variant in visible mode) and core + tail radial profiles, deposited as
  antithetic rings and importance-sampled spots (:mod:`pcloud.sim.em`); photons convert after an exponential depth
  of mean 9/7 X0 into a Bethe-Heitler e+e- pair. Cell fluctuations and occupancy from physical quanta
  (:mod:`pcloud.sim.fluctuations`), far deposits (albedo, deep tail; :mod:`pcloud.sim.halo`); tuned to the public
  CaloGAN Geant4 distributions (:mod:`pcloud.validation`).
- Hadronic showers: MIP track to an exponential first interaction (pion interaction length for pions), Groom EM
  fraction as pi0-like sub-showers, Bock-style hadronic Gamma profile in lambda_I, fluctuating invisible energy ->
  e/h > 1, backsplash, halo and evaporation neutrons (:mod:`pcloud.sim.hadronic`).
- pi0 -> gamma gamma decays (:mod:`pcloud.sim.pi0`); "total" and "visible" (sampling-fluctuated) energy modes and
  Gaussian cell noise (:mod:`pcloud.sim.deposit`); particle gun (:mod:`pcloud.sim.gun`).

Measured laws and throughput: ``datasets/SIMULATION.md``; law tests: ``tests/sim/``.
"""
from .deposit import Deposits, add_noise, deposit_particles, sparse_noise
from .gun import particle_gun
from .showers import simulate_showers, simulate_sparse

__all__ = ["Deposits", "deposit_particles", "add_noise", "sparse_noise", "particle_gun", "simulate_showers",
           "simulate_sparse"]
