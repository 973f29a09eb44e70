"""Images / sparse deposits <-> point clouds: energy conservation, threshold, positions, errors."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from pcloud.core.schema import SchemaError
from pcloud.data import clouds_to_images, images_to_clouds, sparse_to_clouds
from pcloud.core.schema import PointType, hard_labels
from pcloud.core.showers import ShowerImages


def _sum_above(showers, thr):
    flat = showers.flat().astype(np.float64)
    return (flat * (flat > thr)).sum(axis=1)


@pytest.mark.parametrize("thr", [0.0, 0.3])
def test_energy_conserved_float64_exactly(calogan, make_random_showers, thr):
    sh = make_random_showers(calogan, 40, dtype=np.float64, noise_gev=0.02, seed=3)
    c = images_to_clouds(sh, threshold_gev=thr, dtype=np.float64)
    assert str(ak.type(c.points.energy)).endswith("var * float64")
    got = ak.to_numpy(ak.sum(c.points.energy, axis=1))
    want = _sum_above(sh, thr)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert ak.all(c.points.energy > thr)


def test_energy_conserved_float32_storage(calogan, make_random_showers):
    sh = make_random_showers(calogan, 40, dtype=np.float64, seed=4)
    c = images_to_clouds(sh, threshold_gev=0.0)  # float32 storage
    got = ak.to_numpy(ak.sum(ak.values_astype(c.points.energy, np.float64), axis=1))
    np.testing.assert_allclose(got, _sum_above(sh, 0.0), rtol=1e-6)
    # float32 images are carried bit for bit
    sh32 = make_random_showers(calogan, 20, seed=5)
    c32 = images_to_clouds(sh32)
    flat = sh32.flat()
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(c32.points.energy)), flat[flat > 0])


def test_threshold_is_strict(calogan):
    imgs = calogan.empty_images(1)
    imgs["layer_0"][0, 0, 1, 2] = 0.5          # exactly at threshold: dropped
    imgs["layer_1"][0, 0, 3, 4] = 0.5000001    # above: kept
    imgs["layer_2"][0, 0, 0, 0] = 0.2          # below: dropped
    imgs["layer_2"][0, 0, 1, 1] = -1.0         # negative: dropped
    c = images_to_clouds(ShowerImages(calogan, imgs), threshold_gev=0.5)
    assert ak.num(c.points, axis=1).tolist() == [1]
    assert c.points.layer[0].tolist() == [1]
    # threshold None keeps every non-zero cell, negative ones included
    c0 = images_to_clouds(ShowerImages(calogan, imgs), threshold_gev=None)
    assert sorted(c0.points.energy[0].tolist()) == sorted(np.float32([0.5, 0.5000001, 0.2, -1.0]).tolist())


def test_hand_placed_deposit_position(calogan):
    # layer_1: 12 x 12 cells of 40 mm from -240 mm; cell (iu=5, iv=7) spans x in [-40, 0), y in [40, 80);
    # depth: layer_1 runs from z0 + 90 = 378 mm to 378 + 347 = 725 mm -> centre 551.5 mm.
    imgs = calogan.empty_images(2)
    imgs["layer_1"][1, 0, 5, 7] = 3.25
    c = images_to_clouds(ShowerImages(calogan, imgs))
    assert ak.num(c.points, axis=1).tolist() == [0, 1]
    p = c.points[1, 0]
    assert (p.x, p.y, p.z) == (-20.0, 60.0, 551.5)
    assert p.layer == 1 and p.energy == np.float32(3.25) and p["type"] == PointType.CELL
    assert p.cell_id == 3 * 96 + 5 * 12 + 7  # layer_0 has 288 cells, then C order (u, v)
    assert p.track_index == -1 and p.truth_index.tolist() == []
    # collider frame (seed 004 eq. 1): x_C = z_L, y_C = x_L, z_C = y_L -> eta = asinh(60 / hypot(551.5, -20))
    assert p.eta == pytest.approx(np.arcsinh(60 / np.hypot(551.5, -20.0)), rel=1e-6)
    assert p.phi == pytest.approx(np.arctan2(-20.0, 551.5), rel=1e-6)


def test_window_eta_shifts_eta_per_event(calogan):
    imgs = calogan.empty_images(2)
    imgs["layer_1"][:, 0, 5, 7] = 1.0
    sh = ShowerImages(calogan, imgs, {"window_eta": np.array([0.0, 1.0])})
    c = images_to_clouds(sh)
    eta = ak.to_numpy(ak.flatten(c.points.eta))
    z_c = 60.0 + 551.5 * np.sinh(1.0)
    np.testing.assert_allclose(eta, [np.arcsinh(60 / np.hypot(551.5, 20)), np.arcsinh(z_c / np.hypot(551.5, 20))],
                               rtol=1e-6)
    np.testing.assert_allclose(ak.to_numpy(c.window_eta), [0.0, 1.0])


def test_truth_keys_carried_and_single_truth(calogan, make_random_showers):
    sh = make_random_showers(calogan, 5, event_number=[10, 11, 12, 13, 14])
    c = images_to_clouds(sh, cell_truth="single")
    assert c.event_number.tolist() == [10, 11, 12, 13, 14]
    np.testing.assert_array_equal(ak.to_numpy(c.energy_gev), sh.truth["energy_gev"])
    assert c.pdg.tolist() == [11] * 5
    assert ak.all(hard_labels(c.points) == 0)
    assert ak.all(ak.flatten(c.points.truth_energy, axis=2) == c.points.energy)


def test_clouds_to_images_inverse(calogan, make_random_showers):
    sh = make_random_showers(calogan, 30, seed=7)
    back = clouds_to_images(images_to_clouds(sh), calogan)
    for s in calogan.sections:
        np.testing.assert_array_equal(back.images[s.name], sh.images[s.name])
    np.testing.assert_array_equal(back.truth["energy_gev"], sh.truth["energy_gev"])


def test_sparse_sums_duplicates_and_keeps_empty_events(atlas):
    ev = np.array([0, 0, 2, 2, 2])
    cell = np.array([100, 100, 7, 9, 7])
    e = np.array([0.25, 0.5, 1.0, 0.05, 2.0])
    truth = {"event_number": np.array([5, 6, 7]), "energy_gev": np.array([1.0, 2.0, 3.0])}
    c = sparse_to_clouds(atlas, truth, ev, cell, e, threshold_gev=0.1)
    assert ak.num(c.points, axis=1).tolist() == [1, 0, 1]   # event 1 empty; cell 9 (0.05) below threshold
    assert c.points.cell_id.tolist() == [[100], [], [7]]
    assert c.points.energy.tolist() == [[0.75], [], [3.0]]
    assert c.event_number.tolist() == [5, 6, 7]
    # positions from the geometry's cell table (collider frame for atlas)
    np.testing.assert_allclose(c.points.x[2, 0], atlas.cells["x"][7], rtol=1e-6)
    np.testing.assert_allclose(c.points.noise_sigma[2, 0], atlas.cells["noise_sigma_gev"][7], rtol=1e-6)


def test_sparse_per_particle_truth(atlas):
    ev = np.array([0, 0, 0, 0])
    cell = np.array([3, 3, 3, 8])
    e = np.array([1.0, 2.0, 0.5, 0.7])
    pidx = np.array([1, 0, -1, 1])  # the 0.5 GeV deposit is noise (no particle)
    c = sparse_to_clouds(atlas, {}, ev, cell, e, n_events=1, particle_index=pidx)
    assert c.points.energy.tolist() == [[3.5, pytest.approx(0.7)]]
    assert c.points.truth_index.tolist() == [[[0, 1], [1]]]
    assert c.points.truth_energy.tolist() == [[[2.0, 1.0], [pytest.approx(0.7)]]]
    assert hard_labels(c.points).tolist() == [[0, 1]]


def test_sparse_conserves_energy(atlas):
    rng = np.random.default_rng(1)
    n = 2000
    ev = rng.integers(0, 10, n)
    cell = rng.integers(0, atlas.n_cells, n)
    e = rng.exponential(0.3, n)
    c = sparse_to_clouds(atlas, {}, ev, cell, e, n_events=12, dtype=np.float64)
    want = np.bincount(ev, weights=e, minlength=12)
    np.testing.assert_allclose(ak.to_numpy(ak.sum(c.points.energy, axis=1)), want, rtol=1e-12)
    assert ak.num(c.points, axis=1).tolist()[10:] == [0, 0]


def test_bad_input_errors(calogan, atlas):
    imgs = calogan.empty_images(3)
    imgs["layer_2"][1, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match="layer_2.*non-finite.*index \\(1, "):
        images_to_clouds(ShowerImages(calogan, imgs))
    with pytest.raises(ValueError, match="no events"):
        images_to_clouds(ShowerImages(calogan, calogan.empty_images(0)))
    with pytest.raises(ValueError, match="n_events"):
        sparse_to_clouds(atlas, {}, [], [], [])
    with pytest.raises(ValueError, match=r"cell ids must be in \[0, 504\).*wrong geometry"):
        sparse_to_clouds(calogan, {}, [0], [600], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        sparse_to_clouds(atlas, {}, [0], [1], [np.nan])
    with pytest.raises(ValueError, match="truth arrays must have n_events=2"):
        sparse_to_clouds(atlas, {"energy_gev": np.ones(3)}, [0], [1], [1.0], n_events=2)
    with pytest.raises(TypeError, match="ShowerImages"):
        images_to_clouds({"layer_0": np.zeros((1, 1, 3, 96))})
    # clouds made on atlas cannot be turned into calogan images
    c = sparse_to_clouds(atlas, {}, [0], [1000], [1.0])
    with pytest.raises(ValueError, match="geometry 'atlas'.*'calogan'"):
        clouds_to_images(c, calogan)
    untagged = ak.Array(c.layout)  # parameters dropped: the cell-id range check still catches it
    untagged = ak.without_parameters(untagged)
    with pytest.raises(SchemaError, match="wrong geometry"):
        clouds_to_images(untagged, calogan)
