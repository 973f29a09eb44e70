"""The benchmark's event mixture: truth concatenation and the dense component (2-3 parents at small DeltaR)."""
import numpy as np
import pytest

from pcloud.pflow.samples import concat_truth, event_component, mixture_truth
from pcloud.sim.decay_gun import generate_gun


def _wrap(d):
    return np.mod(d + np.pi, 2 * np.pi) - np.pi


def test_concat_truth_shifts_events_and_parents():
    a = generate_gun(5, np.random.default_rng(1), n_parents=(1, 2))
    b = generate_gun(4, np.random.default_rng(2), n_parents=3, dr=(0.05, 0.1))
    c = concat_truth(a, b)
    na_p, na_r = a.event.size, a.parent_event.size
    assert c.n_events == 9 and c.event.size == na_p + b.event.size
    np.testing.assert_array_equal(c.event[na_p:], b.event + 5)
    np.testing.assert_array_equal(c.parent_event[na_r:], b.parent_event + 5)
    # every particle still points at a parent of its own event, with the same parent energy as before
    np.testing.assert_array_equal(c.parent_event[c.parent], c.event)
    np.testing.assert_array_equal(c.parent_energy_gev[c.parent[na_p:]], b.parent_energy_gev[b.parent])
    np.testing.assert_array_equal(c.energy_gev, np.concatenate([a.energy_gev, b.energy_gev]))


def test_mixture_dense_component():
    n, frac = 200, 0.25
    t = mixture_truth(n, np.random.default_rng(7), dense_fraction=frac, dense_n_parents=(2, 3),
                      dense_dr=(0.02, 0.15), n_parents=1)
    comp = event_component(n, frac)
    assert t.n_events == n and (comp == "dense").sum() == 50 and comp[-1] == "dense" and comp[0] == "standard"
    n_par = np.bincount(t.parent_event, minlength=n)
    assert np.all(n_par[comp == "standard"] == 1)
    assert np.all((n_par[comp == "dense"] >= 2) & (n_par[comp == "dense"] <= 3))
    assert set(np.unique(n_par[comp == "dense"])) == {2, 3}
    # later parents of a dense event sit at DeltaR in [0.02, 0.15] from the first one
    first = np.searchsorted(t.parent_event, t.parent_event, side="left")
    later = np.arange(t.parent_event.size) != first
    d = np.hypot(t.parent_eta - t.parent_eta[first], _wrap(t.parent_phi - t.parent_phi[first]))[later]
    assert d.size > 50 and d.min() >= 0.02 - 1e-9 and d.max() <= 0.15 + 1e-9
    # particles are sorted by event (TruthParticles invariant) and daughters follow their parents
    assert np.all(np.diff(t.event) >= 0)
    np.testing.assert_array_equal(t.parent_event[t.parent], t.event)


def test_mixture_edge_cases():
    t = mixture_truth(10, np.random.default_rng(0), dense_fraction=0.0)
    assert t.n_events == 10
    t = mixture_truth(10, np.random.default_rng(0), dense_fraction=1.0)
    assert np.all(np.bincount(t.parent_event, minlength=10) >= 2)
    with pytest.raises(ValueError, match="dense_fraction"):
        mixture_truth(10, np.random.default_rng(0), dense_fraction=1.5)
    with pytest.raises(ValueError, match=">= 2 parents"):
        mixture_truth(10, np.random.default_rng(0), dense_fraction=0.5, dense_n_parents=(1, 2))
