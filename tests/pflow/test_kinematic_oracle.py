"""The kinematic oracle (:mod:`pcloud.pflow.kinematic_oracle`): hand-computed winners, the deterministic limit
(replicas equal the event, so the votes are the true labels) and the noise-likelihood weighting on a two-outcome
shower whose probabilities are known by construction."""
import numpy as np
import pytest
from helpers.events import _Deposits, cell_id, line_deposit

from pcloud.core.attribution import truth_attribution
from pcloud.core.events import TruthParticles
from pcloud.pflow import kinematic_oracle as KO
from pcloud.pflow.inference import common_inference
from pcloud.sim import decay_gun as G
from pcloud.sim.events import simulate_events


def test_winners_hand_case():
    # cell 0: track 0 (3 GeV) beats track 1 (2) and the neutral sum (0.6 + 0.4 = 1); cell 1: track 0 ties the
    # neutral sum (1 vs 1) -> neutral; cell 2: neutral only; cell 3: track 1 alone; cell 4: track 1 (1) loses to the
    # neutral sum of two untracked particles (0.7 + 0.7)
    cell = np.array([0, 0, 0, 0, 1, 1, 2, 3, 4, 4, 4])
    cls = np.array([0, 1, -1, -1, 0, -1, -1, 1, 1, -1, -1])
    e = np.array([3.0, 2.0, 0.6, 0.4, 1.0, 1.0, 5.0, 0.5, 1.0, 0.7, 0.7])
    c, t = KO._winners(cell, cls, e, n_cells=5)
    assert c.tolist() == [0, 3] and t.tolist() == [0, 1]


def test_truth_particles_round_trip(atlas):
    truth = G.generate_gun(5, np.random.default_rng(3), parent="rho", energy_gev=(20, 40), n_parents=2)
    ev = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    back = KO.truth_particles_of(ev)
    for k in ("event", "pdg", "px_gev", "py_gev", "pz_gev", "energy_gev", "vertex_mm", "parent", "parent_pdg"):
        np.testing.assert_array_equal(getattr(back, k), getattr(truth, k), err_msg=k)


def test_deterministic_showers_give_the_true_labels(atlas):
    """With a shower model without fluctuations every replica equals the event: every vote is 0 or 1 and the
    kinematic oracle's label of each cell with energy is the true one (both estimates)."""
    truth = G.generate_gun(8, np.random.default_rng(1), parent=["rho", "delta"], energy_gev=(20, 60), n_parents=2,
                           dr=(0.0, 0.05), eta=(-0.5, 0.5))
    ev = simulate_events(atlas, truth, np.random.default_rng(2), deposit_fn=line_deposit)
    e = np.asarray(ev.cells["energy_gev"])
    lab_true = truth_attribution(ev).dominant_track(e.size, e)
    assert (lab_true >= 0).sum() > 20  # the test needs cells that tracks win
    votes = KO.replica_votes(ev, atlas, n_replicas=3, seed=9, deposit_fn=line_deposit)
    for name in ("kinematic", "with_cell_energy"):
        c, t, v = getattr(votes, name)
        np.testing.assert_allclose(v, 1.0, err_msg=name)
        lab = np.full(e.size, -1)
        lab[c] = t
        np.testing.assert_array_equal(lab[e > 0], lab_true[e > 0], err_msg=name)
    # a measurement far from every replica (here: far below zero) must not break the weights of a cell that every
    # replica hit: deterministic replicas agree, so every vote stays 1
    far = simulate_events(atlas, truth, np.random.default_rng(2), deposit_fn=line_deposit)
    far.cells["energy_gev"] = -50.0 * np.asarray(far.cells["true_energy_gev"]) - 1.0
    c, t, v = KO.replica_votes(far, atlas, n_replicas=2, seed=9, deposit_fn=line_deposit).with_cell_energy
    np.testing.assert_allclose(v, 1.0)
    assert c.size == np.unique(votes.kinematic[0]).size
    # votes on a subset of the cells (every other cell with a deposit): only those rows, with their true labels
    mask = np.zeros(e.size, bool)
    mask[np.nonzero(np.asarray(ev.cells["true_energy_gev"]) > 0)[0][::2]] = True
    c, t, v = KO.replica_votes(ev, atlas, n_replicas=2, seed=9, cell_mask=mask, deposit_fn=line_deposit).kinematic
    assert mask[c].all()
    pos = e[c] > 0  # the true label needs measured energy; the votes do not
    assert pos.sum() == ((lab_true >= 0) & mask & (e > 0)).sum() > 10
    np.testing.assert_array_equal(t[pos], lab_true[c[pos]])
    # through the per-track clouds and common inference (cone 0.2): the same labels inside the cones
    a = common_inference(ev, atlas, KO.kinematic_oracle(ev, votes.kinematic), dr_max=0.2)
    lab_a = a.dominant_track(e.size, e)
    inside = lab_a >= 0
    assert inside.sum() > 0.8 * (lab_true[e > 0] >= 0).sum()
    np.testing.assert_array_equal(lab_a[inside], lab_true[inside])


def _coin_deposit(a: int, b: int):
    """The charged pion deposits 10 GeV in cell ``a`` or in cell ``b`` (a fair coin per particle and replica),
    every other particle 1 GeV in cell ``a``."""
    def fn(geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None):
        pdg = np.asarray(pdg)
        pion = np.abs(pdg) == 211
        head = rng.random(pdg.size) < 0.5
        part = np.concatenate([np.nonzero(pion)[0], np.nonzero(~pion)[0]])
        cell = np.concatenate([np.where(head[pion], a, b), np.full(int((~pion).sum()), a)])
        e = np.concatenate([np.full(int(pion.sum()), 10.0), np.ones(int((~pion).sum()))])
        return _Deposits(part, cell, e, np.zeros(part.size))
    return fn


def test_cell_energy_likelihood_decides_a_two_outcome_shower(atlas):
    """pi+ (track) and photon in one event; the pi+ puts 10 GeV in cell A or in cell B (fair coin), the photon
    1 GeV in A. From the kinematics alone the track's vote is k/K in A and 1 - k/K in B (k: replicas with the pion
    in A). Measured 11 GeV in A and 0.5 GeV in B, the kernel-weighted votes follow by hand: a replica with deposit
    T gets weight exp(-(E - T)^2 / (2 s^2)), s^2 = sigma_noise^2 + (1.06 x 10 sqrt(p (1 - p)) K^-1/5)^2 with
    p = k / K, the same in both cells (B: T = 10 or nothing); so A goes to the track, B to the neutral (the
    replicas without a deposit in B count)."""
    a, b = cell_id(atlas, "EMB2", 100, 10), cell_id(atlas, "EMB2", 100, 12)
    truth = TruthParticles(n_events=1, event=np.array([0, 0]), pdg=np.array([211, 22]),
                           px_gev=np.array([20.0, 5.0]), py_gev=np.array([0.0, 0.0]), pz_gev=np.array([1.0, 0.2]),
                           energy_gev=np.array([np.sqrt(401.0 + 0.1396 ** 2), np.hypot(5.0, 0.2)]),
                           vertex_mm=np.zeros((2, 3)), parent=np.array([-1, -1]))
    fn = _coin_deposit(a, b)
    ev = simulate_events(atlas, truth, np.random.default_rng(0), deposit_fn=fn)
    assert ev.tracks["particle"].tolist() == [0]
    ra, rb = (int(np.nonzero(ev.cells["id"] == x)[0][0]) for x in (a, b))
    ev.cells["energy_gev"][[ra, rb]] = 11.0, 0.5
    mask = np.zeros(ev.cells["id"].size, bool)
    mask[[ra, rb]] = True
    K = 64
    votes = KO.replica_votes(ev, atlas, n_replicas=K, seed=1, cell_mask=mask, deposit_fn=fn)
    c, t, v = votes.kinematic
    kin = dict(zip(c.tolist(), v.tolist()))
    assert set(kin) == {ra, rb} and t.tolist() == [0, 0] and kin[ra] + kin[rb] == pytest.approx(1.0)
    k = round(kin[ra] * K)
    assert 0.3 * K < k < 0.7 * K  # binomial(64, 1/2): a 3.2 sigma band
    p = k / K
    sig = float(ev.cells["noise_sigma_gev"][ra])
    assert float(ev.cells["noise_sigma_gev"][rb]) == sig
    s2 = sig ** 2 + (1.06 * 10.0 * np.sqrt(p * (1 - p)) * K ** -0.2) ** 2
    def w(d):
        return np.exp(-d ** 2 / (2 * s2))

    c, t, v = votes.with_cell_energy
    got = dict(zip(c.tolist(), v.tolist()))
    assert got[ra] == pytest.approx(k / (k + (K - k) * w(10.0)), rel=1e-9)
    assert got[rb] == pytest.approx((K - k) * w(9.5) / ((K - k) * w(9.5) + k * w(0.5)), rel=1e-9)
    assert got[ra] > 0.999 and got[rb] < 0.001
    assert votes.effective_replicas.shape == (2,) and np.all(votes.effective_replicas < 0.8 * K)


def test_edge_cases_no_voted_cells_no_tracks_and_settings_from_meta(atlas):
    truth = G.generate_gun(3, np.random.default_rng(3), parent="rho", energy_gev=(20, 40))
    ev = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    none = KO.replica_votes(ev, atlas, n_replicas=2, cell_mask=np.zeros(ev.cells["id"].size, bool),
                            deposit_fn=line_deposit)
    assert none.kinematic[0].size == none.with_cell_energy[0].size == none.effective_replicas.size == 0
    photons = TruthParticles(n_events=1, event=np.array([0]), pdg=np.array([22]), px_gev=np.array([10.0]),
                             py_gev=np.array([0.0]), pz_gev=np.array([0.0]), energy_gev=np.array([10.0]),
                             vertex_mm=np.zeros((1, 3)), parent=np.array([-1]))
    ev0 = simulate_events(atlas, photons, np.random.default_rng(4), deposit_fn=line_deposit)
    assert ev0.tracks["particle"].size == 0
    v0 = KO.replica_votes(ev0, atlas, n_replicas=2, deposit_fn=line_deposit)
    assert v0.kinematic[0].size == 0 and v0.with_cell_energy[0].size == 0  # no track wins anything
    with pytest.raises(ValueError, match=r"b_field_t=4.0 but the events were simulated with 2.0"):
        KO.replica_votes(ev, atlas, n_replicas=1, b_field_t=4.0, deposit_fn=line_deposit)
    with pytest.raises(ValueError, match="deposit_mode='em' but the events were simulated with 'total'"):
        KO.replica_votes(ev, atlas, n_replicas=1, deposit_mode="em", deposit_fn=line_deposit)


def test_bad_input_is_named(atlas):
    truth = G.generate_gun(2, np.random.default_rng(3), parent="rho", energy_gev=(20, 40))
    ev = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    with pytest.raises(ValueError, match="n_replicas must be >= 1"):
        KO.replica_votes(ev, atlas, n_replicas=0, deposit_fn=line_deposit)
    with pytest.raises(ValueError, match="cell_mask must have one entry per cell row"):
        KO.replica_votes(ev, atlas, n_replicas=1, cell_mask=np.ones(3, bool), deposit_fn=line_deposit)
    from pcloud.geometry import get_geometry
    with pytest.raises(ValueError, match="simulated in geometry"):
        KO.replica_votes(ev, get_geometry("calogan"), n_replicas=1)
    bad = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    bad.cells["noise_sigma_gev"][3] = 0.0
    with pytest.raises(ValueError, match="noise_sigma_gev'\\] must be > 0"):
        KO.replica_votes(bad, atlas, n_replicas=1, deposit_fn=line_deposit)
    bad = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    bad.cells["id"][[0, 1]] = bad.cells["id"][[1, 0]]
    with pytest.raises(ValueError, match="must be sorted by \\(event, id\\)"):
        KO.replica_votes(bad, atlas, n_replicas=1, deposit_fn=line_deposit)


def test_oracle_from_shares_checks_its_shares(atlas):
    from pcloud.pflow.learned import OracleSegmenter

    truth = G.generate_gun(2, np.random.default_rng(3), parent="rho", energy_gev=(20, 40))
    ev = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    o = OracleSegmenter.from_shares(ev, np.array([5, 2]), np.array([1, 0]), np.array([0.25, 1.0]))
    np.testing.assert_allclose(o.true_fraction(np.array([5, 2, 5, 3]), np.array([1, 0, 0, 1])), [0.25, 1, 0, 0])
    with pytest.raises(ValueError, match=r"shares must lie in \[0, 1\]"):
        OracleSegmenter.from_shares(ev, np.array([0]), np.array([0]), np.array([1.5]))
    with pytest.raises(ValueError, match="must be 1-d of one length"):
        OracleSegmenter.from_shares(ev, np.array([0, 1]), np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="rows out of range"):
        OracleSegmenter.from_shares(ev, np.array([0]), np.array([ev.particles["event"].size]), np.array([0.5]))
