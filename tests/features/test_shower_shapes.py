"""Shower shapes on hand-built images where every variable is computed by hand (seed 004 Table 2, seed 001 App. C/D)."""
import numpy as np
import pytest

from pcloud.features import calogan20_names, energy_regression_features, feature_unit, section_sums, shower_shapes
from pcloud.geometry import Geometry, Section, get_geometry
from pcloud.geometry.materials import LAR, LEAD, Stack
from pcloud.core.showers import ShowerImages

PAPER_NAMES = ["E_0", "E_1", "E_2", "E_tot", "f_0", "f_1", "f_2", "E_ratio_0", "E_ratio_1", "E_ratio_2", "d", "l_d",
               "s_d", "sigma_sd", "sigma_0", "sigma_1", "sigma_2", "sparsity_0", "sparsity_1", "sparsity_2"]


def calogan_showers(n):
    g = get_geometry("calogan")
    return g, g.empty_images(n)


def as_dict(x, names, row):
    return dict(zip(names, x[row]))


def test_calogan_has_the_20_paper_columns():
    g, im = calogan_showers(1)
    x, names = shower_shapes(ShowerImages(g, im))
    assert names == PAPER_NAMES == calogan20_names(3)
    assert x.shape == (1, 20) and x.dtype == np.float64


def test_single_cell_and_two_layer_shower_by_hand():
    g, im = calogan_showers(3)
    # event 0: 10 GeV in one cell of layer 1
    im["layer_1"][0, 0, 5, 7] = 10.0
    # event 1: layer 0 cells (1,10)=3 GeV and (1,12)=1 GeV; layer 2 cell (0,0) = 2 GeV
    im["layer_0"][1, 0, 1, 10] = 3.0
    im["layer_0"][1, 0, 1, 12] = 1.0
    im["layer_2"][1, 0, 0, 0] = 2.0
    # event 2: empty
    x, names = shower_shapes(ShowerImages(g, im))
    a = as_dict(x, names, 0)
    assert a["E_1"] == 10 and a["E_tot"] == 10 and a["f_1"] == 1 and a["f_0"] == 0
    assert a["E_ratio_1"] == 1 and a["E_ratio_0"] == 0 and a["E_ratio_2"] == 0
    assert a["d"] == 1 and a["l_d"] == 10 and a["s_d"] == 1 and a["sigma_sd"] == 0
    assert a["sigma_0"] == a["sigma_1"] == a["sigma_2"] == 0
    assert a["sparsity_1"] == pytest.approx(1 / 144) and a["sparsity_0"] == 0

    b = as_dict(x, names, 1)
    assert b["E_0"] == 4 and b["E_2"] == 2 and b["E_tot"] == 6
    assert b["f_0"] == pytest.approx(4 / 6) and b["f_2"] == pytest.approx(2 / 6)
    assert b["E_ratio_0"] == pytest.approx((3 - 1) / (3 + 1))
    assert b["d"] == 2
    assert b["l_d"] == pytest.approx(0 * 4 + 1 * 0 + 2 * 2)
    assert b["s_d"] == pytest.approx(4 / 6)
    assert b["sigma_sd"] == pytest.approx(np.sqrt((4 * 2) / 6 - (4 / 6) ** 2))
    # layer 0 lateral width along the fine axis v (96 cells): indices 10 (3 GeV), 12 (1 GeV) -> mean 10.5, var 0.75
    assert b["sigma_0"] == pytest.approx(np.sqrt(0.75))
    assert b["sparsity_0"] == pytest.approx(2 / 288) and b["sparsity_2"] == pytest.approx(1 / 72)

    c = as_dict(x, names, 2)
    assert all(v == 0 for v in c.values())
    assert np.all(np.isfinite(x))


def test_lateral_axis_options():
    g, im = calogan_showers(1)
    # layer 1 (12x12): 1 GeV at (2, 3) and 1 GeV at (4, 9): sigma_u = 1 cell, sigma_v = 3 cells
    im["layer_1"][0, 0, 2, 3] = 1.0
    im["layer_1"][0, 0, 4, 9] = 1.0
    sh = ShowerImages(g, im)
    get = {ax: as_dict(*shower_shapes(sh, lateral_axis=ax), 0)["sigma_1"] for ax in ("fine", "u", "v", "both")}
    assert get["u"] == pytest.approx(1.0) and get["v"] == pytest.approx(3.0)
    assert get["fine"] == get["u"]                     # tie 12 x 12 -> u
    assert get["both"] == pytest.approx(np.sqrt(10.0))
    with pytest.raises(ValueError, match="lateral_axis"):
        shower_shapes(sh, lateral_axis="w")


def test_threshold_changes_hits_only():
    g, im = calogan_showers(1)
    im["layer_0"][0, 0, 0, 0] = 5.0
    im["layer_2"][0, 0, 3, 3] = 0.01
    sh = ShowerImages(g, im)
    a = as_dict(*shower_shapes(sh), 0)
    b = as_dict(*shower_shapes(sh, threshold_gev=0.1), 0)
    assert a["d"] == 2 and b["d"] == 0
    assert a["sparsity_2"] == pytest.approx(1 / 72) and b["sparsity_2"] == 0
    assert a["E_2"] == b["E_2"] == pytest.approx(0.01)


def test_all_set_moments_and_r9_by_hand():
    g, im = calogan_showers(2)
    # event 0: single 10 GeV cell in layer 1 at (iu=5, iv=7): x = -240 + 40*5.5 = -20 mm, y = -240 + 40*7.5 = 60 mm
    im["layer_1"][0, 0, 5, 7] = 10.0
    # event 1: 3x3 block of 1 GeV around (6, 6) in layer 1 plus 1 GeV far away at (0, 0) -> R9 = 9 / 10 ...
    im["layer_1"][1, 0, 5:8, 5:8] = 1.0
    im["layer_1"][1, 0, 0, 0] = 1.0
    # ... and 2 GeV in layer 0 (cell (1, 48), x = 0, y = -240 + 5*48.5 = 2.5) and 2 GeV in layer 2
    im["layer_0"][1, 0, 1, 48] = 2.0
    im["layer_2"][1, 0, 6, 3] = 2.0
    x, names = shower_shapes(ShowerImages(g, im), "all")
    a = as_dict(x, names, 0)
    depth1 = 288 + 90 + 347 / 2
    assert a["E_layer_1"] == 10 and a["R9_layer_1"] == 1 and a["R9_layer_0"] == 0
    assert a["mean_x_mm_layer_1"] == pytest.approx(-20) and a["mean_y_mm_layer_1"] == pytest.approx(60)
    assert a["mean_depth_mm_layer_1"] == pytest.approx(depth1) and a["rms_depth_mm_layer_1"] == 0
    assert a["rms_xy_mm_layer_1"] == 0 and a["mean_depth_mm"] == pytest.approx(depth1)
    for k in ("mean_x_mm_layer_0", "rms_x_mm_layer_2", "mean_depth_mm_layer_2"):
        assert a[k] == 0                               # empty sections give 0
    b = as_dict(x, names, 1)
    # barycentre of layer 1: u = (9*6 + 0)/10 = 5.4 -> cell 5; v likewise -> window u,v in 4..6 holds 4 cells of the
    # block: (5,5),(5,6),(6,5),(6,6) -> R9 = 4 / 10
    assert b["R9_layer_1"] == pytest.approx(4 / 10)
    assert b["R9_layer_0"] == 1 and b["R9_layer_2"] == 1
    d0, d2 = 288 + 45, 288 + 90 + 347 + 43 / 2
    md = (2 * d0 + 10 * depth1 + 2 * d2) / 14
    assert b["mean_depth_mm"] == pytest.approx(md)
    assert b["rms_depth_mm"] == pytest.approx(np.sqrt((2 * d0 ** 2 + 10 * depth1 ** 2 + 2 * d2 ** 2) / 14 - md ** 2))
    # layer 1 lateral: block centre x = -240 + 40*6.5 = 20 (x9), far cell x = -220
    mx = (9 * 20 + (-220)) / 10
    assert b["mean_x_mm_layer_1"] == pytest.approx(mx)
    sx = np.sqrt((3 * 3 * ((-20) ** 2 + 20 ** 2 + 60 ** 2) / 3 + 220 ** 2) / 10 - mx ** 2)
    assert b["rms_x_mm_layer_1"] == pytest.approx(sx)
    assert b["rms_xy_mm_layer_1"] == pytest.approx(np.hypot(sx, b["rms_y_mm_layer_1"]))
    assert b["mean_y_mm_layer_0"] == pytest.approx(2.5) and b["mean_x_mm_layer_0"] == pytest.approx(0)
    assert all(feature_unit(n) for n in names)
    assert feature_unit("rms_x_mm_layer_0") == "mm" and feature_unit("E_layer_1") == "GeV"
    assert feature_unit("sigma_1") == "cells" and feature_unit("E_ratio_0") == "1"


def test_r9_at_grid_edge():
    g, im = calogan_showers(1)
    im["layer_2"][0, 0, 0, 0] = 3.0          # corner: only a 2x2 window exists
    im["layer_2"][0, 0, 1, 1] = 1.0
    im["layer_2"][0, 0, 11, 5] = 1.0
    b = as_dict(*shower_shapes(ShowerImages(g, im), "all"), 0)
    # barycentre u = (0*3 + 1 + 11)/5 = 2.4 -> 2, v = (0 + 1 + 5)/5 = 1.2 -> 1: window u 1..3, v 0..2 holds (1,1)
    assert b["R9_layer_2"] == pytest.approx(1 / 5)


def _periodic_geometry():
    st = Stack(active=LAR, active_mm=4.0, absorber=LEAD, absorber_mm=2.0)
    sec = Section(name="EM", kind="etaphi", layer_edges_mm=[1500.0, 1600.0, 1800.0],
                  u_edges=np.linspace(-0.5, 0.5, 11), v_edges=np.linspace(-np.pi, np.pi, 17), stack=st,
                  v_periodic=True)
    return Geometry(name="ring", sections=[sec])


def test_periodic_phi_does_not_split_showers():
    g = _periodic_geometry()
    im = g.empty_images(1)
    im["EM"][0, 0, 5, 0] = 1.0               # phi bins 0 and 15 are neighbours across -pi/+pi
    im["EM"][0, 0, 5, 15] = 1.0
    x, names = shower_shapes(ShowerImages(g, im), "all", lateral_axis="v")
    a = as_dict(x, names, 0)
    assert a["sigma_0"] == pytest.approx(0.5)              # not 7.5 cells
    assert a["R9_EM"] == pytest.approx(1.0)
    # lateral x = r * dphi: both cells at +-half a bin (pi/16) from the seam, r = 1550 mm
    assert a["mean_x_mm_EM"] == pytest.approx(0.0, abs=1e-6)
    assert a["rms_x_mm_EM"] == pytest.approx(1550 * np.pi / 16)
    # barycentre just below the seam (phi index 15.8 == -0.2) belongs to cell 0: window {15, 0, 1}
    im2 = g.empty_images(1)
    im2["EM"][0, 1, 5, 15] = 2.0
    im2["EM"][0, 1, 5, 0] = 2.0
    im2["EM"][0, 1, 5, 1] = 1.0
    b = as_dict(*shower_shapes(ShowerImages(g, im2), "all"), 0)
    assert b["R9_EM"] == pytest.approx(1.0)
    # eta 0 bin centre is +-0.05: y = r sinh(eta) -> cell (5) centre eta = 0.05
    assert a["mean_y_mm_EM"] == pytest.approx(1550 * np.sinh(0.05))


def test_generalised_names_on_multilayer_geometry():
    g = get_geometry("clic")
    im = g.empty_images(2)
    im["HCAL"][0, 10, 5, 5] = 4.0            # global layer 25 + 10 = 35
    im["ECAL"][0, 3, 12, 12] = 1.0
    x, names = shower_shapes(ShowerImages(g, im))
    assert len(names) == 5 * 85 + 5 and names[:2] == ["E_0", "E_1"] and "sigma_84" in names
    a = as_dict(x, names, 0)
    assert a["E_35"] == 4 and a["E_3"] == 1 and a["d"] == 35
    assert a["s_d"] == pytest.approx((3 * 1 + 35 * 4) / 5)
    xr, nr = energy_regression_features(ShowerImages(g, im))
    assert nr == ["E_ECAL", "E_HCAL", "mean_depth_mm_ECAL", "mean_depth_mm_HCAL", "mean_depth_mm", "rms_depth_mm",
                  "rms_x_mm_ECAL", "rms_xy_mm_HCAL"]
    r = dict(zip(nr, xr[0]))
    ecal, hcal = g.sections
    z_e = 0.5 * (ecal.layer_edges_mm[3] + ecal.layer_edges_mm[4])
    z_h = 0.5 * (hcal.layer_edges_mm[10] + hcal.layer_edges_mm[11])
    assert r["E_ECAL"] == 1 and r["E_HCAL"] == 4
    assert r["mean_depth_mm_ECAL"] == pytest.approx(z_e) and r["mean_depth_mm_HCAL"] == pytest.approx(z_h)
    assert r["mean_depth_mm"] == pytest.approx((z_e + 4 * z_h) / 5)
    s, sn = section_sums(ShowerImages(g, im))
    assert sn == ["E_ECAL", "E_HCAL"] and s[0].tolist() == [1.0, 4.0]


def test_noise_and_negative_energies_stay_finite():
    g = get_geometry("calogan")
    rng = np.random.default_rng(1)
    im = {s.name: rng.normal(0, 0.01, (50, *s.shape)).astype(np.float32) for s in g.sections}
    im["layer_0"][0] = -1.0                                # a negative layer
    for s in g.sections:
        im[s.name][1] = 0.0
    x, _ = shower_shapes(ShowerImages(g, im), "all")
    assert np.all(np.isfinite(x))


def test_chunking_gives_identical_results():
    g = get_geometry("calogan")
    rng = np.random.default_rng(2)
    im = {s.name: rng.exponential(0.1, (37, *s.shape)).astype(np.float32) for s in g.sections}
    sh = ShowerImages(g, im)
    a, _ = shower_shapes(sh, "all")
    b, _ = shower_shapes(sh, "all", max_chunk_values=504 * 5)
    np.testing.assert_array_equal(a, b)


def test_bad_input_messages():
    g, im = calogan_showers(1)
    with pytest.raises(TypeError, match="ShowerImages"):
        shower_shapes(im)
    with pytest.raises(ValueError, match="set must be one of"):
        shower_shapes(ShowerImages(g, im), set="calogan21")
    im["layer_2"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="layer_2"):
        shower_shapes(ShowerImages(g, im))
