"""pi0 -> gamma gamma kinematics: minimum opening angle 2 arcsin(m/E), uniform energy sharing, invariant mass."""
import numpy as np
from scipy import stats

from pcloud.sim import simulate_showers
from pcloud.sim.pi0 import PI0_MASS_GEV, decay_pi0


def test_decay_kinematics():
    rng = np.random.default_rng(0)
    n = 20000
    e = np.full(n, 10.0)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    e1, e2, d1, d2, psi = decay_pi0(e, d, rng)
    assert np.allclose(e1 + e2, e)
    # invariant mass from the lab quantities
    m2 = 2 * e1 * e2 * (1 - np.sum(d1 * d2, axis=1))
    assert np.allclose(np.sqrt(m2), PI0_MASS_GEV, rtol=1e-6)
    assert np.allclose(np.arccos(np.clip(np.sum(d1 * d2, axis=1), -1, 1)), psi, atol=1e-6)
    psi_min = 2 * np.arcsin(PI0_MASS_GEV / 10.0)
    assert psi.min() >= psi_min * (1 - 1e-9)
    assert psi.min() < psi_min * 1.01                    # the edge is populated (Jacobian peak)
    assert abs(psi_min - 2 * PI0_MASS_GEV / 10.0) / psi_min < 1e-3
    beta = np.sqrt(1 - (PI0_MASS_GEV / 10.0) ** 2)
    z = e1 / e
    lo = (1 - beta) / 2
    assert stats.kstest((z - lo) / beta, "uniform").pvalue > 0.01
    # momentum conservation: photon momenta add up to the pi0 direction
    p = e1[:, None] * d1 + e2[:, None] * d2
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    assert np.allclose(pn, d, atol=1e-9)


def test_pi0_truth_in_showers(calogan):
    s = simulate_showers(calogan, "pi0", 300, energy_gev=(5, 50), seed=1)
    t = s.truth
    assert np.allclose(t["photon1_energy_gev"] + t["photon2_energy_gev"], t["energy_gev"])
    assert np.all(t["photon1_energy_gev"] >= t["photon2_energy_gev"])
    assert np.all(t["opening_angle_rad"] >= 2 * np.arcsin(PI0_MASS_GEV / t["energy_gev"]) * (1 - 1e-9))
    # harder photon fraction uniform in [1/2, (1+beta)/2]
    z = t["photon1_energy_gev"] / t["energy_gev"]
    beta = np.sqrt(1 - (PI0_MASS_GEV / t["energy_gev"]) ** 2)
    assert stats.kstest((z - 0.5) / (beta / 2), "uniform").pvalue > 0.01
    s2 = simulate_showers(calogan, "e+", 10, seed=1)
    assert "opening_angle_rad" not in s2.truth
