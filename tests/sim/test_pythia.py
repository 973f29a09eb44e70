"""Pythia8 events (optional extra ``pythia8mc``): selection, conservation, tau parents, seeds, simulation.

Skipped as a whole when ``pythia8mc`` is not installed; the clear-error test for the missing package lives in
test_events.py (``test_pythia_missing_gives_clear_message``) and runs without Pythia.
"""
import numpy as np
import pytest

pytest.importorskip("pythia8mc")

from pcloud.core import particles as PT  # noqa: E402
from pcloud.sim import pythia as PY  # noqa: E402

ECM_GEV = 13000.0
M_TAU_GEV = 1.77686  # PDG 2024
N_EVENTS = 8


def _generate(**kw):
    return PY.generate_pythia(N_EVENTS, **kw)


@pytest.fixture(scope="module")
def samples():
    """Pythia runs shared by the tests (each init ~0.3 s, ~5-15 ms per event)."""
    out = {}
    for proc, extra in (("tau", {}), ("dijet", {"pt_hat_min_gev": 30.0, "pt_hat_max_gev": 60.0})):
        out[proc, "full"] = _generate(process=proc, seed=7, eta_max=np.inf, keep_neutrinos=True, **extra)
        out[proc, "sel"] = _generate(process=proc, seed=7, **extra)
    out["tau", "sel_again"] = _generate(process="tau", seed=7)
    out["tau", "other_seed"] = _generate(process="tau", seed=8)
    out["dijet", "hard"] = _generate(process="dijet", seed=7, pt_hat_min_gev=300.0, pt_hat_max_gev=400.0)
    return out


def _per_event(t, arr):
    return np.bincount(t.event, arr, minlength=t.n_events)


def _charge(t):
    nu = np.isin(np.abs(t.pdg), list(PT.NEUTRINOS))
    q = np.zeros(t.pdg.size, np.int64)
    q[~nu] = PT.charge_of(t.pdg[~nu])
    return q


@pytest.mark.parametrize("proc", ["tau", "dijet"])
def test_full_final_state_conserves_four_momentum_and_charge(samples, proc):
    t = samples[proc, "full"]
    # all final-state particles incl. neutrinos and beam remnants: p p at rest frame -> (E, p) = (13 TeV, 0)
    np.testing.assert_allclose(_per_event(t, t.energy_gev), ECM_GEV, rtol=1e-8)
    for comp in (t.px_gev, t.py_gev, t.pz_gev):
        np.testing.assert_allclose(_per_event(t, comp), 0.0, atol=1e-4)
    np.testing.assert_array_equal(_per_event(t, _charge(t)), 2)  # two protons
    # on-shell: E^2 - p^2 = m^2 with the pcloud mass table (non-neutrinos)
    nu = np.isin(np.abs(t.pdg), list(PT.NEUTRINOS))
    m2 = t.energy_gev ** 2 - t.px_gev ** 2 - t.py_gev ** 2 - t.pz_gev ** 2
    np.testing.assert_allclose(np.sqrt(np.maximum(m2[~nu], 0)), PT.mass_of(t.pdg[~nu]), atol=2e-3)


@pytest.mark.parametrize("proc", ["tau", "dijet"])
def test_selection_is_the_barrel_subset_of_the_same_events(samples, proc):
    full, sel = samples[proc, "full"], samples[proc, "sel"]
    pt = np.hypot(full.px_gev, full.py_gev)
    eta = np.arcsinh(full.pz_gev / pt)
    keep = (np.abs(eta) < 1.4) & ~np.isin(np.abs(full.pdg), list(PT.NEUTRINOS))
    assert sel.pdg.size == keep.sum() > 10 * N_EVENTS  # the underlying event alone puts ~10+ per event there
    np.testing.assert_array_equal(sel.event, full.event[keep])
    np.testing.assert_array_equal(sel.pdg, full.pdg[keep])
    np.testing.assert_allclose(sel.energy_gev, full.energy_gev[keep], rtol=1e-12)
    # energy and momentum in the selection: per event equal to the barrel part of the full final state
    np.testing.assert_allclose(_per_event(sel, sel.energy_gev), _per_event(full, np.where(keep, full.energy_gev, 0)))
    sel_eta = np.arcsinh(sel.pz_gev / np.hypot(sel.px_gev, sel.py_gev))
    assert np.abs(sel_eta).max() < 1.4
    assert not np.isin(np.abs(sel.pdg), list(PT.NEUTRINOS)).any()
    # pi0 are final-state truth particles (not decayed by Pythia): isospin gives about half as many pi0 as pi+-
    n_pi0, n_pipm = np.sum(sel.pdg == 111), np.sum(np.abs(sel.pdg) == 211)
    assert 0.25 * n_pipm < n_pi0 < 0.8 * n_pipm
    # long-lived decays inside the decay cylinder only: every production vertex before the calorimeter front
    assert np.hypot(full.vertex_mm[:, 0], full.vertex_mm[:, 1]).max() < 1500.0
    assert np.abs(full.vertex_mm[:, 2]).max() < 3000.0


def test_tau_parents_hadronic_decays(samples):
    t = samples["tau", "full"]
    R = t.parent_pdg.size
    assert R == 2 * N_EVENTS and set(np.abs(t.parent_pdg)) == {15}
    np.testing.assert_array_equal(np.bincount(t.parent_event, t.parent_pdg, minlength=N_EVENTS), 0)  # tau+ tau-
    d = t.parent >= 0
    p4 = np.zeros((R, 4))
    for col, arr in enumerate((t.energy_gev, t.px_gev, t.py_gev, t.pz_gev)):
        np.add.at(p4[:, col], t.parent[d], arr[d])
    # decay products (incl. neutrinos) rebuild the tau: energy, mass m_tau, charge = tau charge (pdg 15 = tau-)
    np.testing.assert_allclose(p4[:, 0], t.parent_energy_gev, rtol=1e-8)
    mass = np.sqrt(p4[:, 0] ** 2 - np.sum(p4[:, 1:] ** 2, axis=1))
    np.testing.assert_allclose(mass, M_TAU_GEV, atol=2e-3)
    np.testing.assert_allclose(t.parent_mass_gev, M_TAU_GEV, atol=2e-3)
    q = _charge(t)
    np.testing.assert_array_equal(np.bincount(t.parent[d], q[d], minlength=R), -np.sign(t.parent_pdg))
    # hadronic only: one nu_tau per tau, no e/mu, an odd number of charged prongs (1 or 3)
    np.testing.assert_array_equal(np.bincount(t.parent[d], np.abs(t.pdg[d]) == 16, minlength=R), 1)
    assert not np.isin(np.abs(t.pdg[d]), [11, 12, 13, 14]).any()
    prongs = np.bincount(t.parent[d], q[d] != 0, minlength=R)
    assert np.all(prongs % 2 == 1)
    assert np.sum(t.pdg[d] == 111) > 0  # tau -> rho nu -> pi pi0 nu etc.: pi0 kept
    p_pt = np.hypot(p4[:, 1], p4[:, 2])
    np.testing.assert_allclose(np.arcsinh(p4[:, 3] / p_pt), t.parent_eta, atol=1e-6)
    # the barrel selection keeps the links to the same tau rows
    sel = samples["tau", "sel"]
    np.testing.assert_allclose(sel.parent_energy_gev, t.parent_energy_gev)
    ds = sel.parent >= 0
    assert ds.any() and np.all(sel.parent_event[sel.parent[ds]] == sel.event[ds])


def test_seed_reproducibility(samples):
    a, b, c = samples["tau", "sel"], samples["tau", "sel_again"], samples["tau", "other_seed"]
    for k in ("event", "pdg", "px_gev", "energy_gev", "parent", "vertex_mm", "parent_energy_gev"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.pdg.size != c.pdg.size or not np.array_equal(a.energy_gev, c.energy_gev)


def test_pt_hat_range_sets_the_event_scale(samples):
    soft, hard = samples["dijet", "sel"], samples["dijet", "hard"]
    ht_soft = _per_event(soft, np.hypot(soft.px_gev, soft.py_gev))
    ht_hard = _per_event(hard, np.hypot(hard.px_gev, hard.py_gev))
    # scalar pT sum in the barrel follows pT-hat (30-60 vs 300-400 GeV): medians at least 3x apart
    assert np.median(ht_hard) > 3 * np.median(ht_soft)
    # the hardest barrel particle of a 300-400 GeV event is harder than any in the 30-60 GeV events typically
    lead = lambda t: np.array([np.hypot(t.px_gev, t.py_gev)[t.event == i].max(initial=0) for i in range(N_EVENTS)])  # noqa: E731
    assert np.median(lead(hard)) > 2 * np.median(lead(soft))


def test_settings_validation():
    with pytest.raises(ValueError, match="unknown process"):
        PY.pythia_settings("ttbar")
    with pytest.raises(ValueError, match="seed"):
        PY.pythia_settings("dijet", seed=0)
    with pytest.raises(ValueError, match="pT-hat"):
        PY.pythia_settings("dijet", pt_hat_min_gev=50.0, pt_hat_max_gev=40.0)
    with pytest.raises(ValueError, match="tau_decays"):
        PY.pythia_settings("tau", tau_decays="leptonic")
    s = PY.pythia_settings("dijet", pt_hat_min_gev=30.0, pt_hat_max_gev=60.0)
    assert "PhaseSpace:pTHatMin = 30.0" in s and "PhaseSpace:pTHatMax = 60.0" in s and "111:mayDecay = off" in s
    with pytest.raises(ValueError, match="setting"):
        PY.generate_pythia(1, "dijet", extra_settings=["NoSuchSetting:xyz = 3"])


def test_unknown_species_is_an_error(monkeypatch):
    monkeypatch.delitem(PT.PDG_CHARGE, 111)
    with pytest.raises(RuntimeError, match=r"111"):
        PY.generate_pythia(2, "dijet", seed=3)


@pytest.mark.parametrize("proc", ["tau", "dijet"])
def test_simulated_pythia_events(atlas, deposit_fn, proc):
    ev = PY.generate_pythia_events(atlas, 4, np.random.default_rng(5), proc, seed=21, deposit_fn=deposit_fn)
    P, T = ev.particles, ev.tracks
    assert ev.n_events == 4 and ev.meta["generator"] == f"pythia8 {proc}"
    # tracks: exactly the charged particles with pT > 0.5 GeV (|eta| < 1.4 < 2.5), none for neutrals
    want = np.nonzero((P["charge"] != 0) & (P["pt_gev"] > 0.5))[0]
    np.testing.assert_array_equal(np.sort(T["particle"]), want)
    assert T["particle"].size > 0
    np.testing.assert_allclose(T["true_pt_gev"], P["pt_gev"][T["particle"]])
    # deposits: no particle deposits more than it carries (kinetic energy for baryons), neutrinos absent,
    # cell truth = sum of its hits, pi0 deposits are all EM
    assert not np.isin(np.abs(P["pdg"]), list(PT.NEUTRINOS)).any()
    e_dep = np.where(np.isin(np.abs(P["pdg"]), list(PT.BARYONS)), P["energy_gev"] - P["mass_gev"], P["energy_gev"])
    per_part = np.bincount(ev.hits["particle"], ev.hits["energy_gev"], minlength=P["pdg"].size)
    assert np.all(per_part <= e_dep + 1e-9)
    assert np.all(per_part[~P["showered"]] == 0)
    em = P["showered"] & np.isin(P["pdg"], [22, 111]) & (P["energy_gev"] > 1.0)
    assert em.sum() > 0 and np.sum(per_part[em]) > 0.9 * np.sum(e_dep[em])  # EM showers contained
    np.testing.assert_allclose(np.bincount(ev.hits["cell"], ev.hits["energy_gev"], minlength=ev.cells["id"].size),
                               ev.cells["true_energy_gev"], atol=1e-9)
    pi0 = P["pdg"][ev.hits["particle"]] == 111
    np.testing.assert_allclose(ev.hits["energy_em_gev"][pi0], ev.hits["energy_gev"][pi0])
    # parents carried through (taus) / absent (dijets)
    assert ev.parents["pdg"].size == (8 if proc == "tau" else 0)
