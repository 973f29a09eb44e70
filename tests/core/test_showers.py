import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.core.showers import ShowerImages
from pcloud.core.particles import particle_pdg


def _sample(n, seed):
    g = get_geometry("calogan")
    rng = np.random.default_rng(seed)
    return ShowerImages(g, {s.name: rng.random((n, *s.shape)).astype(np.float32) for s in g.sections},
                        {"energy_gev": rng.uniform(1, 100, n)})


def test_concatenate_keeps_event_numbers_unique():
    a, b = _sample(5, 1), _sample(7, 2)  # both numbered 0..n-1
    c = ShowerImages.concatenate([a, b])
    assert c.n_events == 12 and np.unique(c.truth["event_number"]).size == 12
    assert c.meta["event_numbers_renumbered"]
    np.testing.assert_array_equal(c.images["layer_1"][5:], b.images["layer_1"])
    # distinct numbers are kept as they are
    b.truth["event_number"] = np.arange(100, 107)
    d = ShowerImages.concatenate([a, b])
    np.testing.assert_array_equal(d.truth["event_number"], np.r_[np.arange(5), np.arange(100, 107)])
    assert "event_numbers_renumbered" not in d.meta


def test_shape_and_truth_errors():
    g = get_geometry("calogan")
    imgs = {s.name: np.zeros((3, *s.shape), np.float32) for s in g.sections}
    with pytest.raises(ValueError, match="truth 'energy_gev' has length 2"):
        ShowerImages(g, imgs, {"energy_gev": np.ones(2)})
    bad = dict(imgs, layer_2=np.zeros((3, 1, 12, 5), np.float32))
    with pytest.raises(ValueError, match="layer_2"):
        ShowerImages(g, bad)


def test_particle_names():
    assert particle_pdg("e+") == -11 and particle_pdg("γ") == 22 and particle_pdg("π0") == 111
    assert particle_pdg(211) == 211 and particle_pdg("-211") == -211
    with pytest.raises(ValueError, match="unknown particle"):
        particle_pdg("muon")
