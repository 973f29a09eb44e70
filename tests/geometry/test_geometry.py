"""Geometry checks against the seed tables and PDG material constants."""
import json

import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.geometry.materials import LAR, LEAD, Stack


def test_calogan_matches_seed004_table1():
    g = get_geometry("calogan")
    assert [s.name for s in g.sections] == ["layer_0", "layer_1", "layer_2"]
    assert [s.shape for s in g.sections] == [(1, 3, 96), (1, 12, 12), (1, 12, 6)]
    assert [s.depth_mm for s in g.sections] == [90.0, 347.0, 43.0]
    assert g.n_cells == 3 * 96 + 144 + 72 == 504
    d = g.describe()
    s0 = d["sections"][0]
    assert s0["cell_size_u"] == pytest.approx(160.0) and s0["cell_size_v"] == pytest.approx(5.0)
    s2 = d["sections"][2]
    assert s2["cell_size_u"] == pytest.approx(40.0) and s2["cell_size_v"] == pytest.approx(80.0)
    assert g.sections[0].layer_edges_mm[0] == pytest.approx(288.0)


def test_pb_lar_mixture_by_hand():
    # 1/X0 = (2/6)/5.612 + (4/6)/140  ->  15.586 mm (PDG mixture rule per unit length)
    st = Stack(active=LAR, active_mm=4.0, absorber=LEAD, absorber_mm=2.0)
    assert st.x0_mm == pytest.approx(1.0 / ((2 / 6) / 5.612 + (4 / 6) / 140.0), rel=1e-12)
    assert st.x0_mm == pytest.approx(15.586, abs=1e-3)
    assert st.moliere_mm == pytest.approx(1.0 / ((2 / 6) / 16.02 + (4 / 6) / 90.43), rel=1e-12)
    # E_c = E_s X0 / R_M
    assert st.ec_mev == pytest.approx(21.2052 * st.x0_mm / st.moliere_mm)
    # MIP sampling fraction: LAr 0.4 cm * 2.121 MeV/cm vs Pb 0.2 cm * 12.73 MeV/cm -> ~0.25
    assert st.sampling_fraction_mip == pytest.approx(0.2498, abs=2e-3)
    # a = 2.7% sqrt(d/f) ~ 10.8%, consistent with the ~10%/sqrt(E) of Pb/LAr sampling calorimeters
    assert 0.09 < st.sampling_term < 0.12
    # CaloGAN total depth ~ 30.8 X0 and ~1.3 lambda_I
    tot = get_geometry("calogan").total_depth()
    assert tot["depth_x0"] == pytest.approx(480 / st.x0_mm)
    assert 1.2 < tot["depth_lambda"] < 1.4


def test_clic_and_cms_and_atlas_dimensions():
    clic = get_geometry("clic")
    assert [s.shape for s in clic.sections] == [(25, 25, 25), (60, 11, 11)]
    assert clic.describe()["sections"][0]["cell_size_u"] == pytest.approx(5.1)
    assert clic.describe()["sections"][1]["cell_size_u"] == pytest.approx(30.0)
    assert 22 < clic.sections[0].depth_mm / clic.sections[0].stack.x0_mm < 28
    assert 6.5 < clic.sections[1].depth_mm / clic.sections[1].stack.lambda_i_mm < 8.0
    assert get_geometry("clic", ecal_cells=51).sections[0].shape == (25, 51, 51)
    with pytest.raises(ValueError, match="ecal_cells"):
        get_geometry("clic", ecal_cells=30)
    cms = get_geometry("cms")
    assert cms.sections[0].depth_mm / cms.sections[0].stack.x0_mm == pytest.approx(25.8, abs=0.1)
    atlas = get_geometry("atlas")
    d = {s["name"]: s for s in atlas.describe()["sections"]}
    assert d["EMB1"]["cell_size_u"] == pytest.approx(0.025 / 8)
    assert d["EMB2"]["cell_size_u"] == pytest.approx(0.025)
    assert d["EMB3"]["cell_size_u"] == pytest.approx(0.05)
    assert d["TileBar2"]["cell_size_u"] == pytest.approx(0.2)
    assert d["EMB2"]["cell_size_v"] == pytest.approx(2 * np.pi / 256)
    # EM barrel ~22 X0 at eta = 0
    em_x0 = sum(d[n]["depth_x0"] for n in ("EMB1", "EMB2", "EMB3"))
    assert 20 < em_x0 < 24
    assert all(d[n]["noise_sigma_gev"] > 0 for n in d)


@pytest.mark.parametrize("name", ["calogan", "clic", "atlas", "cms"])
def test_locate_inverts_cell_centres(name):
    g = get_geometry(name)
    c = g.cells
    idx = g.locate(c["x"], c["y"], c["z"])
    np.testing.assert_array_equal(idx, np.arange(g.n_cells))
    # positions just outside the calorimeter are not in any cell
    assert g.locate(np.array([0.0]), np.array([0.0]), np.array([1.0]))[0] == -1


def test_locate_hand_case_calogan():
    g = get_geometry("calogan")
    # layer_1 (z 378..725 mm), x = 10 mm -> iu = (10 + 240) // 40 = 6, y = -55 mm -> iv = (-55 + 240) // 40 = 4
    idx = g.locate([10.0], [-55.0], [500.0])[0]
    assert idx == 288 + 6 * 12 + 4
    assert g.cells["section"][idx] == 1 and g.cells["layer"][idx] == 1
    assert g.cells["x"][idx] == pytest.approx(20.0) and g.cells["y"][idx] == pytest.approx(-60.0)
    # collider frame: x_C = z_L, y_C = x_L, z_C = y_L (seed 004 eq. 1)
    eta, phi = g.xyz_to_etaphi(np.array([0.0]), np.array([0.0]), np.array([500.0]))
    assert eta[0] == pytest.approx(0.0) and phi[0] == pytest.approx(0.0)


def test_atlas_phi_wraps():
    g = get_geometry("atlas")
    r = 1700.0
    a = g.locate([r * np.cos(np.pi - 1e-6)], [r * np.sin(np.pi - 1e-6)], [0.0])[0]
    b = g.locate([r * np.cos(-np.pi + 1e-6)], [r * np.sin(-np.pi + 1e-6)], [0.0])[0]
    assert a >= 0 and b >= 0 and a != b
    assert g.cells["section"][a] == 1  # EMB2


def test_flatten_roundtrip_and_errors():
    g = get_geometry("calogan")
    rng = np.random.default_rng(0)
    imgs = {s.name: rng.random((4, *s.shape)).astype(np.float32) for s in g.sections}
    flat = g.flatten_images(imgs)
    assert flat.shape == (4, 504)
    back = g.unflatten_images(flat)
    for k in imgs:
        np.testing.assert_array_equal(back[k], imgs[k])
    bad = dict(imgs, layer_1=np.zeros((4, 1, 12, 11), np.float32))
    with pytest.raises(ValueError, match="layer_1.*found"):
        g.flatten_images(bad)
    with pytest.raises(KeyError, match="layer_2"):
        g.flatten_images({k: v for k, v in imgs.items() if k != "layer_2"})


def test_describe_is_json_serialisable():
    for n in ("calogan", "clic", "atlas", "cms"):
        d = get_geometry(n).describe()
        s = json.dumps(d)
        assert '"depth_x0"' in s and '"n_cells"' in s
    with pytest.raises(ValueError, match="unknown geometry"):
        get_geometry("lhcb")


def test_locate_scalar_and_2d_inputs():
    g = get_geometry("calogan")
    assert g.locate(10.0, -55.0, 500.0) == 288 + 6 * 12 + 4
    xyz = np.array([[10.0, -55.0, 500.0], [0.0, 0.0, 1.0]])
    got = g.locate(np.tile(xyz[:, 0], (3, 1)), np.tile(xyz[:, 1], (3, 1)), np.tile(xyz[:, 2], (3, 1)))
    assert got.shape == (3, 2)
    np.testing.assert_array_equal(got, [[364, -1]] * 3)


def test_material_constants_are_self_consistent():
    """R_M = E_s X0 / E_c (PDG eq. 34.37) must hold for every tabulated material to 0.5%."""
    from pcloud.geometry.materials import ES_MEV, MATERIALS

    for m in MATERIALS.values():
        assert m.moliere_mm == pytest.approx(ES_MEV * m.x0_mm / m.ec_mev, rel=5e-3), m.name
        assert m.lambda_i_mm > m.x0_mm, m.name


def test_wrap_phi():
    from pcloud.geometry import wrap_phi

    np.testing.assert_allclose(wrap_phi([0.1, np.pi + 0.1, -np.pi - 0.1, 4 * np.pi + 0.2]),
                               [0.1, -np.pi + 0.1, np.pi - 0.1, 0.2], atol=1e-12)
    assert wrap_phi(np.pi) == pytest.approx(-np.pi)  # half-open interval [-pi, pi)
