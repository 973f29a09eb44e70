"""Particle gun, spectra, frames, reproducibility and the public API contracts."""
import numpy as np
import pytest
from scipy import stats

from pcloud.geometry import get_geometry
from pcloud.sim import (Deposits, add_noise, deposit_particles, particle_gun, simulate_showers, simulate_sparse,
                        sparse_noise)


def test_energy_spectra(calogan):
    rng = np.random.default_rng(0)
    g = particle_gun(calogan, "e+", 5000, rng, energy_gev=(1, 100), spectrum="uniform")
    assert stats.kstest((g["energy_gev"] - 1) / 99, "uniform").pvalue > 0.01
    g = particle_gun(calogan, "e+", 5000, rng, energy_gev=(1, 100), spectrum="log")
    assert stats.kstest(np.log(g["energy_gev"]) / np.log(100), "uniform").pvalue > 0.01
    g = particle_gun(calogan, "e+", 10, rng, energy_gev=7.5)
    assert np.all(g["energy_gev"] == 7.5)
    with pytest.raises(ValueError, match="spectrum"):
        particle_gun(calogan, "e+", 10, rng, spectrum="flat")
    with pytest.raises(ValueError, match="energy_gev"):
        particle_gun(calogan, "e+", 10, rng, energy_gev=(5, 1))


def test_calogan_default_gun_is_the_public_beam(calogan):
    """Default = the public CaloGAN data set's beam: x = y = 0 (the corner of four layer-1 cells), along the axis."""
    g = particle_gun(calogan, "gamma", 100, np.random.default_rng(1))
    assert np.all(g["direction"] == [0.0, 0.0, 1.0]) and np.all(g["origin_mm"][:, :2] == 0.0)
    assert np.all(g["origin_mm"][:, 2] == 288.0)
    assert np.allclose(g["truth"]["theta_rad"], np.pi / 2) and np.allclose(g["truth"]["phi_rad"], 0.0)


def test_calogan_gun_cone_and_displacement(calogan):
    rng = np.random.default_rng(1)
    g = particle_gun(calogan, "gamma", 5000, rng, spread=True)           # seed 004 angle/position variant
    cos_t = g["direction"][:, 2]
    assert np.all(cos_t >= np.cos(np.deg2rad(5.0)) - 1e-12)
    assert stats.kstest((1 - cos_t) / (1 - np.cos(np.deg2rad(5.0))), "uniform").pvalue > 0.01   # isotropic
    assert np.all(np.abs(g["origin_mm"][:, :2]) <= 50) and np.all(g["origin_mm"][:, 2] == 288.0)
    t = g["truth"]
    assert np.all(np.abs(t["theta_rad"] - np.pi / 2) <= np.deg2rad(5.0) + 1e-9)     # seed 004 eq. A.4
    assert np.all(np.abs(t["phi_rad"]) <= np.deg2rad(5.0) + 1e-9)
    with pytest.raises(ValueError, match="spread"):
        particle_gun(get_geometry("cms"), "gamma", 10, rng, spread=True)


def test_clic_gun_window_centred():
    g = get_geometry("clic")
    s = simulate_showers(g, "e-", 100, energy_gev=20.0, seed=2)
    t = s.truth
    assert np.all((t["theta_rad"] >= 1.047) & (t["theta_rad"] <= 2.094))
    assert np.allclose(t["window_eta"], -np.log(np.tan(t["theta_rad"] / 2)))
    ecal = s.images["ECAL"].sum(axis=1)                      # (N, u, v)
    u = np.arange(25) - 12
    cu = (ecal.sum(axis=2) * u).sum(axis=1) / ecal.sum(axis=(1, 2))
    cv = (ecal.sum(axis=1) * u).sum(axis=1) / ecal.sum(axis=(1, 2))
    assert np.all(np.abs(cu) < 1.0) and np.all(np.abs(cv) < 1.0)       # centred within one 5.1 mm cell


def test_atlas_gun_and_sparse():
    g = get_geometry("atlas")
    with pytest.raises(ValueError, match="simulate_sparse"):
        simulate_showers(g, "e-", 2)
    truth, ev, cell, e = simulate_sparse(g, "e-", 50, energy_gev=20.0, seed=3, noise=False)
    assert np.all(np.abs(-np.log(np.tan(truth["theta_rad"] / 2))) <= 1.2)
    assert np.all(np.diff(ev * g.n_cells + cell) > 0)
    tot = np.bincount(ev, weights=e, minlength=50)
    assert np.all(tot <= 20.0 + 1e-9) and tot.mean() > 0.9 * 20.0     # EMB ~22 X0
    em_frac = e[g.cells["section"][cell] <= 2].sum() / e.sum()
    assert em_frac > 0.99
    truth, ev, cell, e = simulate_sparse(g, "e-", 5, energy_gev=20.0, seed=3)   # default noise on for atlas
    assert (e < 0).any()


def test_deposit_particles_mixed_atlas():
    g = get_geometry("atlas")
    rng = np.random.default_rng(4)
    pdg = np.array([11, 22, 111, 211, -211, 13, 2112, 12])
    n = pdg.size
    eta = np.linspace(-1, 1, n)
    th = 2 * np.arctan(np.exp(-eta))
    d = np.stack([np.sin(th), np.zeros(n), np.cos(th)], axis=1)
    dep = deposit_particles(g, pdg, np.full(n, 30.0), np.zeros((n, 3)), d, rng)
    assert isinstance(dep, Deposits)
    for a in (dep.particle, dep.cell):
        assert a.dtype == np.int64
    assert dep.energy_gev.dtype == np.float64 and dep.energy_em_gev.dtype == np.float64
    per = dep.per_particle(n)
    assert per[7] == 0 and 0 < per[5] < 5.0                 # neutrino nothing; muon MIP ~ 1-3 GeV
    assert np.all(per <= 30.0 + 1e-9)
    assert np.all(dep.energy_em_gev <= dep.energy_gev + 1e-12)
    assert np.all(np.unique(dep.particle * g.n_cells + dep.cell, return_counts=True)[1] == 1)


def test_particle_before_calorimeter_propagates(calogan):
    rng = np.random.default_rng(5)
    o = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 288.0]])
    d = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    a = deposit_particles(calogan, np.array([11, 11]), np.array([10.0, 10.0]), o, d, np.random.default_rng(1))
    assert np.allclose(a.per_particle(2), a.per_particle(2)[::-1], rtol=0.02)
    assert a.per_particle(2)[0] > 9.5
    away = deposit_particles(calogan, np.array([11]), np.array([10.0]), np.zeros((1, 3)), np.array([[0, 0, -1.0]]),
                             rng)
    assert len(away) == 0


def test_dead_material_absorbs_energy():
    """Two Pb/LAr sections separated by 300 mm of (aluminium-like) dead material: showers lose energy there."""
    from pcloud.geometry import Geometry, Section
    from pcloud.geometry.calogan import PB_LAR
    xy = np.linspace(-1000, 1000, 3)
    g = Geometry("gap", [Section("A", "xy", [0, 30.0], xy, xy, PB_LAR),
                         Section("B", "xy", [330.0, 1300.0], xy, xy, PB_LAR)])
    rng = np.random.default_rng(6)
    n = 200
    dep = deposit_particles(g, np.full(n, 11), np.full(n, 50.0), np.tile([0, 0, -1.0], (n, 1)),
                            np.tile([0, 0, 1.0], (n, 1)), rng)
    tot = dep.per_particle(n)
    assert 30 < tot.mean() < 49, tot.mean()                 # 1.9 X0 + 3.4 X0 of Al lost in the gap


def test_reproducible_and_seed_sensitive(calogan):
    a = simulate_showers(calogan, "pi+", 50, seed=123, mode="visible")
    b = simulate_showers(calogan, "pi+", 50, seed=123, mode="visible")
    c = simulate_showers(calogan, "pi+", 50, seed=124, mode="visible")
    assert all(np.array_equal(a.images[k], b.images[k]) for k in a.images)
    assert not np.array_equal(a.flat(), c.flat())
    truth, ev, cell, e = simulate_sparse(calogan, "pi+", 50, seed=123, mode="visible")
    dense = np.zeros((50, calogan.n_cells))
    dense[ev, cell] = e
    assert np.allclose(dense, a.flat(), rtol=1e-6, atol=1e-7)
    assert a.meta["mode"] == "visible" and "NOT Geant4" in a.meta["simulator"]


def test_noise_policy():
    g = get_geometry("cms")
    rng = np.random.default_rng(7)
    flat = add_noise(g, np.zeros((200, g.n_cells)), rng)
    assert flat.std() == pytest.approx(0.040, rel=0.02)
    cal = get_geometry("calogan")
    assert np.array_equal(add_noise(cal, np.ones((2, cal.n_cells)), rng), np.ones((2, cal.n_cells)))
    s = simulate_showers(g, "gamma", 20, energy_gev=10.0, seed=1)            # noise on by default for cms
    assert s.meta["noise"] and (s.flat() < 0).any()
    s = simulate_showers(cal, "gamma", 20, energy_gev=10.0, seed=1)
    assert not s.meta["noise"] and (s.flat() >= 0).all()
    with pytest.raises(ValueError, match="flat images"):
        add_noise(g, np.zeros((2, 5)), rng)
    ev, cell, e = sparse_noise(get_geometry("atlas"), 20, rng, threshold_sigma=3.0)
    sig = get_geometry("atlas").cells["noise_sigma_gev"][cell]
    assert np.all(np.abs(e) > 3 * sig)
    expected = 2 * stats.norm.sf(3.0) * get_geometry("atlas").n_cells * 20
    assert abs(e.size - expected) < 5 * np.sqrt(expected)


def test_bad_inputs(calogan):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unit vectors"):
        deposit_particles(calogan, np.array([11]), np.array([1.0]), np.zeros((1, 3)), np.array([[0, 0, 2.0]]), rng)
    with pytest.raises(ValueError, match="shape"):
        deposit_particles(calogan, np.array([11]), np.array([1.0, 2.0]), np.zeros((1, 3)), np.array([[0, 0, 1.0]]),
                          rng)
    with pytest.raises(ValueError, match="unsupported pdg"):
        deposit_particles(calogan, np.array([15]), np.array([1.0]), np.zeros((1, 3)), np.array([[0, 0, 1.0]]), rng)
    with pytest.raises(ValueError, match="mode"):
        simulate_showers(calogan, "e+", 2, mode="active")
    with pytest.raises(ValueError, match="unknown options"):
        simulate_showers(calogan, "e+", 2, max_angel_deg=3)


def test_given_energies_are_used_in_order(calogan):
    from pcloud.sim.showers import simulate_showers

    e = np.array([5.0, 50.0, 20.0, 80.0, 1.5])
    s = simulate_showers(calogan, "gamma", 5, energy_gev=e, spectrum="given", seed=3, chunk_size=2)
    np.testing.assert_array_equal(s.truth["energy_gev"], e)
    with pytest.raises(ValueError, match="given"):
        simulate_showers(calogan, "gamma", 4, energy_gev=e, spectrum="given", seed=3)
