"""Event generation: two-body kinematics, guns, tracks, cell energies, noise window and per-cell truth."""
import sys

import numpy as np
import pytest

from pcloud.sim import events as E
from pcloud.core import particles as P
from pcloud.sim import decay_gun as G
from pcloud.sim import kinematics as K
from pcloud.sim import pythia as PY
from pcloud.sim.tracks import extrapolate_to_layers

from helpers.events import line_deposit


def _dr(eta1, phi1, eta2, phi2):
    dphi = np.mod(phi2 - phi1 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(eta2 - eta1, dphi)


def test_two_body_momentum_hand_case():
    # equal masses: p* = sqrt(M^2 / 4 - m^2)
    assert K.two_body_momentum_gev(1.0, 0.3, 0.3) == pytest.approx(np.sqrt(0.25 - 0.09))
    # massless daughters: p* = M / 2
    assert K.two_body_momentum_gev(0.775, 0.0, 0.0) == pytest.approx(0.3875)
    with pytest.raises(ValueError, match="threshold"):
        K.two_body_momentum_gev(0.2, 0.14, 0.14)


def test_gun_conserves_four_momentum_and_charge():
    rng = np.random.default_rng(0)
    t = G.generate_gun(400, rng, parent=["rho", "delta"], energy_gev=(5, 50), n_parents=(1, 3))
    R = t.parent_pdg.size
    p4 = np.zeros((R, 4))
    for col, arr in enumerate((t.energy_gev, t.px_gev, t.py_gev, t.pz_gev)):
        np.add.at(p4[:, col], t.parent, arr)
    m = np.sqrt(np.maximum(p4[:, 0] ** 2 - (p4[:, 1:] ** 2).sum(1), 0))
    np.testing.assert_allclose(p4[:, 0], t.parent_energy_gev, rtol=1e-9)
    np.testing.assert_allclose(m, t.parent_mass_gev, rtol=1e-6, atol=1e-6)
    pt = np.hypot(p4[:, 1], p4[:, 2])
    np.testing.assert_allclose(np.arcsinh(p4[:, 3] / pt), t.parent_eta, atol=1e-9)
    # charge: rho+- -> +-1, Delta++ -> +2, Delta+ -> +1
    q_par = np.bincount(t.parent, P.charge_of(t.pdg), minlength=R)
    expected = {213: 1, -213: -1, 2224: 2, 2214: 1}
    np.testing.assert_array_equal(q_par, [expected[p] for p in t.parent_pdg])
    # two daughters per parent, particles sorted by event
    assert np.all(np.bincount(t.parent) == 2)
    assert np.all(np.diff(t.event) >= 0)


def test_breit_wigner_masses_and_delta_branching():
    rng = np.random.default_rng(1)
    t = G.generate_gun(6000, rng, parent="delta+", energy_gev=(10, 20))
    thr = np.bincount(t.parent, P.mass_of(t.pdg))  # m1 + m2 of the channel drawn
    assert np.all(t.parent_mass_gev > thr) and np.all(t.parent_mass_gev <= P.DELTA_MASS_GEV + 5 * P.DELTA_WIDTH_GEV)
    assert np.median(t.parent_mass_gev) == pytest.approx(P.DELTA_MASS_GEV, abs=0.01)
    # Delta+ -> p pi0 with probability 2/3 (isospin)
    has_p = np.bincount(t.parent, t.pdg == 2212, minlength=6000) > 0
    assert has_p.mean() == pytest.approx(2 / 3, abs=4 * np.sqrt(2 / 9 / 6000))
    r = G.generate_gun(4000, rng, parent="rho", energy_gev=(10, 20))
    assert np.median(r.parent_mass_gev) == pytest.approx(P.RHO_MASS_GEV, abs=0.01)
    # truncated Cauchy: the interquartile range is close to Gamma (slightly less because of the truncation)
    q1, q3 = np.percentile(r.parent_mass_gev, [25, 75])
    assert 0.8 * P.RHO_WIDTH_GEV < q3 - q1 < 1.0 * P.RHO_WIDTH_GEV
    assert set(np.unique(np.abs(r.pdg))) == {111, 211}


def test_parent_separation_in_delta_r():
    rng = np.random.default_rng(2)
    t = G.generate_gun(300, rng, parent="rho", n_parents=3, dr=(0.2, 0.3), eta=(-0.5, 0.5))
    first = np.searchsorted(t.parent_event, t.parent_event)
    later = np.arange(t.parent_event.size) != first
    d = _dr(t.parent_eta[first], t.parent_phi[first], t.parent_eta, t.parent_phi)[later]
    assert d.min() >= 0.2 - 1e-9 and d.max() <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="unknown gun parent"):
        G.generate_gun(2, rng, parent="omega")


def test_pythia_missing_gives_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes "import pythia8mc" raise ImportError
    with pytest.raises(ImportError, match=r"pythia8mc.*pip install"):
        PY.generate_pythia(2, "dijet")


@pytest.fixture(scope="module")
def sim(atlas, deposit_fn):
    rng = np.random.default_rng(5)
    truth = G.generate_gun(12, rng, parent=["rho", "delta"], energy_gev=(20, 60), n_parents=(1, 2), dr=(0.1, 0.3),
                           eta=(-0.8, 0.8))
    return truth, E.simulate_events(atlas, truth, rng, deposit_fn=deposit_fn, chunk_events=5)


def test_tracks_of_charged_particles(sim, atlas):
    truth, ev = sim
    q = P.charge_of(truth.pdg)
    pt = np.hypot(truth.px_gev, truth.py_gev)
    expected = np.nonzero((q != 0) & (pt > 0.5))[0]
    np.testing.assert_array_equal(ev.tracks["particle"], expected)
    np.testing.assert_array_equal(ev.tracks["event"], truth.event[expected])
    # per-layer points are the helix crossings of the layer mid radii
    ti = ev.tracks["particle"]
    ext = extrapolate_to_layers(atlas, truth.vertex_mm[ti], np.c_[truth.px_gev, truth.py_gev, truth.pz_gev][ti], q[ti])
    np.testing.assert_allclose(ev.tracks["layer_eta"], ext.eta)
    assert ev.tracks["layer_reached"].all()  # > 10 GeV-ish hadrons at |eta| < 1.1 reach every barrel layer
    assert np.all(ev.tracks["ndf"] >= 10)
    assert np.all(np.abs(ev.tracks["pt_gev"] / ev.tracks["true_pt_gev"] - 1) < 0.5)


def test_cells_sum_truth_and_noise_is_gaussian(sim):
    truth, ev = sim
    c, h = ev.cells, ev.hits
    np.testing.assert_allclose(np.bincount(h["cell"], h["energy_gev"], minlength=c["id"].size), c["true_energy_gev"],
                               atol=1e-12)
    assert np.all(h["energy_em_gev"] <= h["energy_gev"] + 1e-12) and np.all(h["energy_em_gev"] >= -1e-12)
    # pi0 deposits are all EM
    pi0 = ev.particles["pdg"][h["particle"]] == 111
    np.testing.assert_allclose(h["energy_em_gev"][pi0], h["energy_gev"][pi0])
    pull = (c["energy_gev"] - c["true_energy_gev"]) / c["noise_sigma_gev"]
    assert abs(pull.mean()) < 0.03 and pull.std() == pytest.approx(1.0, abs=0.03)
    # hits point to particles of the same event
    np.testing.assert_array_equal(ev.particles["event"][h["particle"]], c["event"][h["cell"]])
    assert np.all(np.diff(c["event"] * (1 << 20) + c["id"]) > 0)


def test_noise_window_geometry(sim, atlas):
    truth, ev = sim
    c = ev.cells
    g = atlas.cells
    noise_only = c["true_energy_gev"] == 0
    assert noise_only.sum() > 1000
    # every noise-only cell lies within window_dr (+ half a cell) of a particle crossing of its layer
    from pcloud.sim.tracks import propagate_to_radius, layer_mid_radii_mm
    _, radii = layer_mid_radii_mm(atlas)
    p3 = np.c_[truth.px_gev, truth.py_gev, truth.pz_gev]
    cross = propagate_to_radius(truth.vertex_mm, p3, P.charge_of(truth.pdg), radii)
    rows = np.nonzero(noise_only)[0]
    lay = g["layer"][c["id"][rows]]
    best = np.full(rows.size, np.inf)
    for i in range(truth.event.size):   # test-side loop over a few dozen particles
        same = c["event"][rows] == truth.event[i]
        d = _dr(cross["eta"][i, lay], cross["phi"][i, lay], g["eta"][c["id"][rows]], g["phi"][c["id"][rows]])
        best = np.where(same, np.fmin(best, d), best)
    half_cell = 0.5 * np.hypot(g["du"], g["dv"])[c["id"][rows]]
    assert np.all(best < 0.4 + half_cell + 1e-9)
    # and the window is filled: a cell-centre ring at DeltaR ~ 0.3 around a particle is present
    assert best.max() > 0.35


def test_noise_window_energy_threshold(atlas):
    """window_e_min_gev: noise windows only around particles above the threshold; deposit cells unchanged."""
    truth = G.generate_gun(6, np.random.default_rng(2), parent=["rho", "delta"], energy_gev=(5, 60), n_parents=2)
    e_min = float(np.median(truth.energy_gev))
    run = {v: E.simulate_events(atlas, truth, np.random.default_rng(1), deposit_fn=line_deposit, window_e_min_gev=v)
           for v in (0.0, e_min)}
    full, cut = run[0.0].cells, run[e_min].cells
    assert run[e_min].meta["window_e_min_gev"] == e_min
    assert 0 < cut["id"].size < full["id"].size
    dep = {v: set(zip(r.cells["event"][r.cells["true_energy_gev"] > 0], r.cells["id"][r.cells["true_energy_gev"] > 0]))
           for v, r in run.items()}
    assert dep[0.0] == dep[e_min]
    # every noise-only cell of the cut run lies in the window of a particle above the threshold
    from pcloud.sim.tracks import layer_mid_radii_mm, propagate_to_radius
    _, radii = layer_mid_radii_mm(atlas)
    hard = np.nonzero(truth.energy_gev >= e_min)[0]
    p3 = np.c_[truth.px_gev, truth.py_gev, truth.pz_gev][hard]
    cross = propagate_to_radius(truth.vertex_mm[hard], p3, P.charge_of(truth.pdg[hard]), radii)
    rows = np.nonzero(cut["true_energy_gev"] == 0)[0]
    g = atlas.cells
    lay = g["layer"][cut["id"][rows]]
    best = np.full(rows.size, np.inf)
    for i, row in enumerate(hard):  # test-side loop over a few particles
        same = cut["event"][rows] == truth.event[row]
        d = _dr(cross["eta"][i, lay], cross["phi"][i, lay], g["eta"][cut["id"][rows]], g["phi"][cut["id"][rows]])
        best = np.where(same, np.fmin(best, d), best)
    assert np.all(best < 0.4 + 0.5 * np.hypot(g["du"], g["dv"])[cut["id"][rows]] + 1e-9)
    with pytest.raises(ValueError, match="window_e_min_gev"):
        E.simulate_events(atlas, truth, np.random.default_rng(1), deposit_fn=line_deposit, window_e_min_gev=-1.0)


def test_chunking_does_not_change_the_events(atlas):
    # with a deterministic deposit and no noise, the chunk size is pure bookkeeping
    truth = G.generate_gun(7, np.random.default_rng(8), parent="rho", n_parents=2)
    a = E.simulate_events(atlas, truth, np.random.default_rng(1), deposit_fn=line_deposit, noise=False, chunk_events=2)
    b = E.simulate_events(atlas, truth, np.random.default_rng(1), deposit_fn=line_deposit, noise=False, chunk_events=50)
    for k in ("event", "id", "true_energy_gev"):
        np.testing.assert_array_equal(a.cells[k], b.cells[k])
    for k in a.hits:
        np.testing.assert_array_equal(a.hits[k], b.hits[k])
    # the line deposit puts each particle's (kinetic) energy in 6 cells: total is conserved
    e_dep = np.where(np.isin(truth.pdg, [2212, 2112]), truth.energy_gev - 0.938, truth.energy_gev)
    assert a.cells["true_energy_gev"].sum() == pytest.approx(e_dep.sum(), rel=1e-9)


def test_bad_inputs(atlas):
    from pcloud.geometry import get_geometry
    rng = np.random.default_rng(0)
    truth = G.generate_gun(2, rng)
    with pytest.raises(ValueError, match="collider-frame"):
        E.simulate_events(get_geometry("calogan"), truth, rng, deposit_fn=line_deposit)
    with pytest.raises(ValueError, match="energy_gev"):
        G.generate_gun(2, rng, energy_gev=(-1, 5))
    with pytest.raises(ValueError, match="n_parents"):
        G.generate_gun(2, rng, n_parents=0)
