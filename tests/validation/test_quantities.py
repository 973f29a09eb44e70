"""CaloGAN per-shower quantities on hand-computed tiny images (definitions of hep-lbdl/CaloGAN analysis/feats1d.py)."""
import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.core.showers import ShowerImages
from pcloud.validation.quantities import CALOGAN_WINDOWS, QUANTITIES, calogan_quantities, eratio, window_mask


@pytest.fixture(scope="module")
def calogan():
    return get_geometry("calogan")


def _images(calogan, cells, energy_gev):
    """cells: list of dicts {layer: [(ix, iy, GeV), ...]} per event."""
    n = len(cells)
    img = {s.name: np.zeros((n,) + s.shape, np.float32) for s in calogan.sections}
    for k, ev in enumerate(cells):
        for layer, entries in ev.items():
            for ix, iy, e in entries:
                img[f"layer_{layer}"][k, 0, ix, iy] += e
    return ShowerImages(calogan, img, {"energy_gev": np.asarray(energy_gev, float)})


def test_hand_computed_event(calogan):
    # layer 0: 1 GeV in the middle x cell (centre 0 mm) and 1 GeV in the first (centre -160 mm), same strip;
    # layer 1: 0.75 and 0.25 GeV in the two cells either side of x = 0 (centres -20, +20 mm); layer 2: 1 GeV
    ev = {0: [(1, 47, 1.0), (0, 47, 1.0)], 1: [(5, 5, 0.75), (6, 5, 0.25)], 2: [(6, 3, 1.0)]}
    q = calogan_quantities(_images(calogan, [ev], [5.0]))
    e0, e1, e2, tot = 2.0, 1.0, 1.0, 4.0
    assert q["f0"][0] == pytest.approx(e0 / tot) and q["f1"][0] == pytest.approx(e1 / tot)
    assert q["f2"][0] == pytest.approx(e2 / tot)
    sd = (e1 + 2 * e2) / tot
    assert q["shower_depth"][0] == pytest.approx(sd)
    assert q["depth_width"][0] == pytest.approx(np.sqrt((e1 + 4 * e2) / tot - sd ** 2))
    assert q["sigma0_mm"][0] == pytest.approx(80.0)          # centres -160 and 0, equal weights
    # layer 1: mean = 0.75 * -20 + 0.25 * 20 = -10; var = 400 - 100
    assert q["sigma1_mm"][0] == pytest.approx(np.sqrt(300.0), rel=1e-6)
    assert q["eratio0"][0] == pytest.approx(0.0)             # a tie between the two hottest cells
    assert q["eratio1"][0] == pytest.approx(0.5)             # (0.75 - 0.25) / 1
    assert q["sparsity0"][0] == pytest.approx(2 / 288) and q["sparsity1"][0] == pytest.approx(2 / 144)
    assert q["sparsity2"][0] == pytest.approx(1 / 72)
    assert q["total_energy_over_E"][0] == pytest.approx(tot / 5.0)
    assert list(q) == list(QUANTITIES)


def test_sigma_uses_the_first_image_axis_and_a_single_hot_cell(calogan):
    # spread along the 96 strips (second axis) only: sigma0 (first axis) is 0; one cell in layer 1: eratio 1
    ev = {0: [(1, 10, 1.0), (1, 80, 1.0)], 1: [(3, 3, 2.0)]}
    q = calogan_quantities(_images(calogan, [ev], [3.0]))
    assert q["sigma0_mm"][0] == pytest.approx(0.0, abs=1e-6)
    assert q["eratio1"][0] == pytest.approx(1.0) and q["sigma1_mm"][0] == pytest.approx(0.0, abs=1e-6)


def test_empty_layers_are_undefined_not_zero(calogan):
    ev = {1: [(5, 5, 1.0), (6, 6, 0.5)]}
    q = calogan_quantities(_images(calogan, [ev, {}], [2.0, 2.0]))
    assert np.isnan(q["sigma0_mm"][0]) and np.isnan(q["eratio0"][0])
    assert q["sparsity0"][0] == 0.0 and q["f0"][0] == 0.0
    assert all(np.isnan(q[k][1]) for k in ("f0", "shower_depth", "depth_width", "sigma1_mm", "eratio1"))
    assert q["sparsity1"][1] == 0.0


def test_eratio_vectorised():
    img = np.array([[[0.0, 3.0], [1.0, 0.0]], [[2.0, 2.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    r = eratio(img)
    assert r[0] == pytest.approx(0.5) and r[1] == pytest.approx(0.0) and np.isnan(r[2])


def test_windows_follow_the_calogan_figures():
    assert CALOGAN_WINDOWS["f2"][:2] == (0.0, 0.008)
    v = np.array([0.001, 0.02, np.nan, -0.1])
    assert window_mask("f2", v).tolist() == [True, False, False, False]
    assert window_mask("sigma0_mm", np.array([0.5, 1.0, 999.0, 1001.0])).tolist() == [False, True, True, False]


def test_wrong_geometry_is_refused():
    g = get_geometry("cms")
    img = {s.name: np.zeros((1,) + s.shape, np.float32) for s in g.sections}
    with pytest.raises(ValueError, match="calogan geometry"):
        calogan_quantities(ShowerImages(g, img))
