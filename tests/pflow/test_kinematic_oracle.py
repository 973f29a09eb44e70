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
    c, t = KO._winners(cell, cls, e, n_tracks=2)
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


def _coin_deposit(cell: int):
    """Every particle deposits in one cell: the charged pion 10 GeV or nothing (a fair coin per particle and
    replica), everything else 1 GeV."""
    def fn(geometry, pdg, energy_gev, origin_mm, direction, rng, mode="total", n_spots=None):
        pdg = np.asarray(pdg)
        e = np.where(np.abs(pdg) == 211, 10.0 * (rng.random(pdg.size) < 0.5), 1.0)
        return _Deposits(np.arange(pdg.size), np.full(pdg.size, cell), e, np.zeros(pdg.size))
    return fn


@pytest.mark.parametrize("measured, expected", [(11.0, 1.0), (1.0, 0.0)])
def test_cell_energy_likelihood_decides_a_two_outcome_shower(atlas, measured, expected):
    """pi+ (track) and photon in one event, both depositing only in one EMB2 cell: the pi+ deposits 10 GeV with
    probability 1/2 (then it dominates: 10 > 1), else nothing. From the kinematics alone its vote is ~1/2; given
    the cell's measured energy (noise sigma ~ MeV) it is 1 at 11 GeV and 0 at 1 GeV."""
    x = cell_id(atlas, "EMB2", 100, 10)
    truth = TruthParticles(n_events=1, event=np.array([0, 0]), pdg=np.array([211, 22]),
                           px_gev=np.array([20.0, 5.0]), py_gev=np.array([0.0, 0.0]), pz_gev=np.array([1.0, 0.2]),
                           energy_gev=np.array([np.sqrt(401.0 + 0.1396 ** 2), np.hypot(5.0, 0.2)]),
                           vertex_mm=np.zeros((2, 3)), parent=np.array([-1, -1]))
    fn = _coin_deposit(x)
    ev = simulate_events(atlas, truth, np.random.default_rng(0), deposit_fn=fn)
    assert ev.tracks["particle"].tolist() == [0]
    row = int(np.nonzero(ev.cells["id"] == x)[0][0])
    ev.cells["energy_gev"][row] = measured
    votes = KO.replica_votes(ev, atlas, n_replicas=64, seed=1, deposit_fn=fn)
    c, t, v = votes.kinematic
    assert c.tolist() == [row] and t.tolist() == [0]
    assert 0.3 < v[0] < 0.7  # binomial(64, 1/2) / 64: 4.0 sigma band
    c, t, v = votes.with_cell_energy
    got = v[c == row].sum() if c.size else 0.0
    assert got == pytest.approx(expected, abs=1e-9)


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


def test_oracle_from_shares_checks_its_shares(atlas):
    from pcloud.pflow.learned import OracleSegmenter

    truth = G.generate_gun(2, np.random.default_rng(3), parent="rho", energy_gev=(20, 40))
    ev = simulate_events(atlas, truth, np.random.default_rng(4), deposit_fn=line_deposit)
    o = OracleSegmenter.from_shares(ev, np.array([5, 2]), np.array([1, 0]), np.array([0.25, 1.0]))
    np.testing.assert_allclose(o.true_fraction(np.array([5, 2, 5, 3]), np.array([1, 0, 0, 1])), [0.25, 1, 0, 0])
    with pytest.raises(ValueError, match=r"shares must lie in \[0, 1\]"):
        OracleSegmenter.from_shares(ev, np.array([0]), np.array([0]), np.array([1.5]))
