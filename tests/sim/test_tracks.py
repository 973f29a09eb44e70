"""Helix tracks: radius law, bending sign, straight-line limit, loopers, resolution and fit quality."""
import numpy as np
import pytest

from pcloud.sim import tracks as trk


def test_helix_radius_hand_case():
    # PDG: pT = 0.3 |q| B R  ->  1 GeV, 2 T: R = 1 / (0.2998 * 2) m = 1.66782 m
    assert trk.helix_radius_mm(1.0, 1, 2.0) == pytest.approx(1667.82, abs=0.01)
    assert trk.helix_radius_mm(10.0, -1, 2.0) == pytest.approx(16678.2, abs=0.1)
    assert trk.helix_radius_mm(1.0, 2, 2.0) == pytest.approx(1667.82 / 2, abs=0.01)  # |q| = 2
    assert np.isinf(trk.helix_radius_mm(1.0, 0, 2.0))


def test_crossing_from_axis_matches_chord_geometry():
    # from the beam axis, a circle of radius R crosses r at azimuth phi0 - h asin(r / 2R), after s_T = 2R asin(r/2R),
    # and the momentum has turned by twice that angle
    pt, r = 1.0, 1500.0
    R = trk.helix_radius_mm(pt, 1)
    half = np.arcsin(r / (2 * R))
    out = trk.propagate_to_radius(np.zeros((1, 3)), [[pt, 0.0, pt * np.sinh(0.5)]], [1], [r])
    assert out["reached"][0, 0]
    assert out["phi"][0, 0] == pytest.approx(-half, abs=1e-9)
    assert np.hypot(out["x"][0, 0], out["y"][0, 0]) == pytest.approx(r, abs=1e-6)
    # z advances by the transverse arc length times cot(theta) = sinh(eta)
    assert out["z"][0, 0] == pytest.approx(2 * R * half * np.sinh(0.5), rel=1e-9)
    d = out["direction"][0, 0]
    assert np.arctan2(d[1], d[0]) == pytest.approx(-2 * half, abs=1e-9)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-12)


def test_bending_sign_follows_charge():
    # B along +z: positive particles turn clockwise (phi decreases), negative ones anticlockwise
    p = np.array([[2.0 * np.cos(0.3), 2.0 * np.sin(0.3), 0.0]] * 2)
    out = trk.propagate_to_radius(np.zeros((2, 3)), p, [1, -1], [1500.0, 3000.0])
    assert np.all(out["phi"][0] < 0.3) and np.all(out["phi"][1] > 0.3)
    np.testing.assert_allclose(out["phi"][0] - 0.3, -(out["phi"][1] - 0.3), atol=1e-12)
    # more bending further out
    assert out["phi"][0, 1] < out["phi"][0, 0]
    # reversing the field reverses the bending
    rev = trk.propagate_to_radius(np.zeros((2, 3)), p, [1, -1], [1500.0], b_field_t=-2.0)
    np.testing.assert_allclose(rev["phi"][0, 0], out["phi"][1, 0], atol=1e-12)


def test_straight_line_at_infinite_pt_and_for_neutrals():
    eta, phi = 0.7, 1.2
    for pt, q in ((1e7, 1), (50.0, 0)):
        p = pt * np.array([[np.cos(phi), np.sin(phi), np.sinh(eta)]])
        out = trk.propagate_to_radius(np.zeros((1, 3)), p, [q], [1500.0, 3719.0])
        np.testing.assert_allclose(out["phi"][0], phi, atol=2e-6)
        np.testing.assert_allclose(out["eta"][0], eta, atol=1e-9)
        np.testing.assert_allclose(out["z"][0], np.array([1500.0, 3719.0]) * np.sinh(eta), rtol=1e-9)


def test_loopers_have_no_point():
    # pT = 0.4 GeV: 2R = 1334 mm < 1500 mm -> never reaches the calorimeter; 0.5 GeV reaches EMB (2R = 1668) only
    p = np.array([[0.4, 0, 0], [0.5, 0, 0]])
    out = trk.propagate_to_radius(np.zeros((2, 3)), p, [1, -1], [1500.0, 2426.0])
    assert out["reached"].tolist() == [[False, False], [True, False]]
    assert np.isnan(out["eta"][0]).all()


def test_off_axis_origin_against_numerical_stepping():
    o = np.array([[120.0, -60.0, 30.0]])
    p = np.array([[0.9, 0.6, 0.4]])
    q = -1
    out = trk.propagate_to_radius(o, p, [q], [1500.0])
    # integrate dp/ds = q (v x B) with small steps (Lorentz force), find the first r crossing
    B = 2.0
    pos, mom = o[0].copy(), p[0].copy()
    ds = 0.05
    k = trk.GEV_PER_T_M * 1e-3 * q * B  # GeV per mm per unit (p x z_hat)/|p|
    while np.hypot(pos[0], pos[1]) < 1500.0:
        u = mom / np.linalg.norm(mom)
        mom = mom + k * np.array([u[1], -u[0], 0.0]) * ds
        pos = pos + u * ds
    np.testing.assert_allclose([out["x"][0, 0], out["y"][0, 0], out["z"][0, 0]], pos, atol=0.2)


def test_extrapolate_to_atlas_layers(atlas):
    ext = trk.extrapolate_to_layers(atlas, np.zeros((2, 3)), [[5.0, 0, 0], [5.0, 0, 5.0 * np.sinh(1.6)]], [1, 1])
    assert ext.layer_names == ["EMB1", "EMB2", "EMB3", "TileBar0", "TileBar1", "TileBar2"]
    np.testing.assert_allclose(ext.radius_mm, [1541.0, 1735.5, 1908.0, 2426.0, 2970.5, 3544.0])
    assert ext.reached[0].all()
    assert not ext.reached[1].any()  # eta 1.6 is outside the |eta| < 1.4 barrel


def test_pt_resolution_matches_design_formula():
    rng = np.random.default_rng(3)
    for pt in (2.0, 100.0):
        n = 40000
        pt_m, q_m = trk.smear_pt(np.full(n, pt), np.ones(n), rng)
        k = q_m / pt_m
        expected = np.hypot(trk.PT_RES_A_PER_GEV, trk.PT_RES_B / pt)
        assert np.std(k) == pytest.approx(expected, rel=0.03)
        assert np.mean(k) == pytest.approx(1 / pt, abs=4 * expected / np.sqrt(n))


def test_fit_quality_chi2_over_ndf():
    rng = np.random.default_rng(4)
    chi2, ndf = trk.draw_fit_quality(50000, rng)
    assert ndf.min() == 10 and ndf.max() == 20
    r = chi2 / ndf
    assert r.mean() == pytest.approx(1.0, abs=0.01)
    assert r.var() == pytest.approx(np.mean(2.0 / ndf), rel=0.05)
    with pytest.raises(ValueError, match="ndf_range"):
        trk.draw_fit_quality(3, rng, ndf_range=(0, 5))


@pytest.mark.parametrize("r_over", [50.0, 99.9, 100.1, 1e4, 1e8])
def test_both_solvers_agree_with_chord_formula(r_over):
    # the circle-intersection solver (R < 100 r) and the iterative chord solver (R >= 100 r) must both give
    # phi = -h asin(r / 2R) and z = 2 R asin(r / 2R) cot(theta) for tracks from the axis
    r = 2000.0
    R = r_over * r
    pt = R * trk.GEV_PER_T_M * 2.0 / 1000.0
    out = trk.propagate_to_radius(np.zeros((1, 3)), [[pt, 0.0, pt]], [1], [r])
    half = np.arcsin(r / (2 * R))
    assert out["phi"][0, 0] == pytest.approx(-half, rel=1e-8, abs=1e-13)
    assert out["z"][0, 0] == pytest.approx(2 * R * half, rel=1e-9)
