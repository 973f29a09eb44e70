"""pcloud.core.events: selecting events keeps every cross-reference."""
import numpy as np
import pytest

from pcloud.core.attribution import truth_attribution
from pcloud.core.events import select_events
from pcloud.geometry import get_geometry
from pcloud.sim.events import generate_events


def test_select_events_keeps_cross_references():
    g = get_geometry("atlas")
    ev = generate_events(g, 12, np.random.default_rng(3), n_parents=(1, 2), energy_gev=(10, 30))
    keep = np.zeros(12, bool)
    keep[[1, 4, 5, 10]] = True
    sub = select_events(ev, keep)
    assert sub.n_events == 4
    np.testing.assert_array_equal(sub.meta["event_number"], [1, 4, 5, 10])
    # per-event sums of cells, hits and truth attribution are those of the chosen events
    e_full = np.bincount(ev.cells["event"], ev.cells["energy_gev"], minlength=12)[keep]
    np.testing.assert_allclose(np.bincount(sub.cells["event"], sub.cells["energy_gev"], minlength=4), e_full)
    t_full = truth_attribution(ev)
    t_sub = truth_attribution(sub)
    per_ev_full = np.bincount(ev.tracks["event"][t_full.track_row], t_full.energy_gev, minlength=12)[keep]
    np.testing.assert_allclose(np.bincount(sub.tracks["event"][t_sub.track_row], t_sub.energy_gev, minlength=4),
                               per_ev_full)
    # the hit -> particle and track -> particle links point at the same physical particles
    pe_full = ev.particles["energy_gev"][ev.tracks["particle"][keep[ev.tracks["event"]]]]
    np.testing.assert_array_equal(sub.particles["energy_gev"][sub.tracks["particle"]], pe_full)
    with pytest.raises(ValueError, match="one entry per event"):
        select_events(ev, np.ones(5, bool))
