"""Triforce/LCD HDF5: axis order (x, y, layer) <-> pcloud (layer, x, y), optional keys, round trips, bad input."""
import h5py
import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.io import FormatError, iter_triforce, read_triforce, write_triforce


def _tf_file(path, n=3, ecal=25, **over):
    rng = np.random.default_rng(0)
    data = {"ECAL": rng.exponential(0.01, (n, ecal, ecal, 25)), "HCAL": rng.exponential(0.01, (n, 11, 11, 60)),
            "energy": rng.uniform(10, 500, n), "pdgID": np.array([22, 111, 11, 211, -211][:n] + [22] * max(0, n - 5))}
    data.update(over)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if v is not None:
                f.create_dataset(k, data=np.asarray(v))
    return data


def test_axis_transpose_hand_case(tmp_path):
    e = np.zeros((1, 25, 25, 25))
    e[0, 3, 5, 7] = 2.0  # x = 3, y = 5, layer 7
    h = np.zeros((1, 11, 11, 60))
    h[0, 10, 0, 59] = 0.75
    p = tmp_path / "hand.h5"
    _tf_file(p, n=1, ECAL=e, HCAL=h, energy=[50.0], pdgID=[211])
    r = read_triforce(p)
    assert r.geometry.name == "clic" and r.images["ECAL"].shape == (1, 25, 25, 25)
    assert r.images["ECAL"][0, 7, 3, 5] == 2.0 and r.images["ECAL"].sum() == 2.0
    assert r.images["HCAL"].shape == (1, 60, 11, 11) and r.images["HCAL"][0, 59, 10, 0] == 0.75
    assert r.truth["energy_gev"][0] == 50.0 and r.truth["pdg"][0] == 211  # GeV in the file, no conversion
    # the cell sits in ECAL layer 7 of the geometry: depth 1500 + 7.5 * 8 mm (8 mm pitch), x index 3 of 5.1 mm
    g = r.geometry
    flat = int(np.flatnonzero(r.flat()[0])[0])
    assert g.cells["layer"][flat] == 7
    assert g.cells["x"][flat] == pytest.approx((3 + 0.5) * 5.1 - 25 * 5.1 / 2)
    assert g.cells["y"][flat] == pytest.approx((5 + 0.5) * 5.1 - 25 * 5.1 / 2)


@pytest.mark.parametrize("ecal", [25, 51])
def test_round_trip_and_layout(tmp_path, make_showers, ecal):
    g = get_geometry("clic", ecal_cells=ecal)
    sh = make_showers(g, 4, seed=ecal, sparsity=0.97, pdg=np.array([22, 111, 211, 11], dtype=np.int32),
                      opening_angle_rad=np.array([0.0, 0.01, 0.0, 0.0]), recoEta=np.array([0.1, 0.2, 0.3, 0.4]),
                      entry_x_mm=np.array([1.0, 2.0, 3.0, 4.0]))
    p = tmp_path / "tf.h5"
    write_triforce(p, sh)
    with h5py.File(p, "r") as f:
        assert f["ECAL"].shape == (4, ecal, ecal, 25) and f["ECAL"].dtype == np.float32
        assert f["HCAL"].shape == (4, 11, 11, 60) and f["HCAL"].dtype == np.float32
        assert f["energy"].shape == (4,) and f["energy"].dtype == np.float64
        assert f["pdgID"].dtype.kind == "i" and f["pdgID"][:].tolist() == [22, 111, 211, 11]
        np.testing.assert_allclose(f["openingAngle"][:], [0.0, 0.01, 0.0, 0.0])
        np.testing.assert_allclose(f["ECAL_E"][:], sh.section_energy()["ECAL"], rtol=1e-6)
        ratio = sh.section_energy()["HCAL"] / sh.section_energy()["ECAL"]
        np.testing.assert_allclose(f["HCAL_ECAL_ERatio"][:], ratio, rtol=1e-6)
        assert sorted(f["pcloud_truth"]) == ["entry_x_mm", "event_number"]
    r = read_triforce(p)
    assert r.geometry.section("ECAL").n_u == ecal
    for k, v in sh.images.items():
        np.testing.assert_array_equal(r.images[k], v)  # GeV float32 both sides: bit identical
    for k in ("energy_gev", "pdg", "opening_angle_rad", "recoEta", "entry_x_mm", "event_number"):
        np.testing.assert_array_equal(r.truth[k], sh.truth[k])
    assert set(r.meta["extra_keys"]) == {"ECAL_E", "HCAL_E", "HCAL_ECAL_ERatio", "recoEta"}


def test_optional_public_keys_kept(tmp_path):
    p = tmp_path / "pub.h5"
    n = 3
    _tf_file(p, n=n, energy=np.array([[10.0], [20.0], [30.0]]), pdgID=np.array([111.0, 22.0, 111.0]),
             recoTheta=np.array([1.5, 1.6, 1.7]), theta=np.array([1.51, 1.61, 1.71]), R9=np.ones(n),
             ECALmomentX2=np.arange(3.0), conversion=np.array([0, 1, 0]), openingAngle=np.array([0.02, 0.0, 0.03]),
             file_info=np.arange(7))  # not one entry per event: ignored
    r = read_triforce(p)
    np.testing.assert_array_equal(r.truth["energy_gev"], [10.0, 20.0, 30.0])  # (N, 1) accepted
    assert r.truth["pdg"].dtype == np.int32 and r.truth["pdg"].tolist() == [111, 22, 111]
    np.testing.assert_array_equal(r.truth["theta_rad"], [1.51, 1.61, 1.71])
    np.testing.assert_array_equal(r.truth["opening_angle_rad"], [0.02, 0.0, 0.03])
    for k in ("recoTheta", "R9", "ECALmomentX2", "conversion"):
        assert k in r.truth and k in r.meta["extra_keys"]
    assert "file_info" not in r.truth
    assert "recoTheta" not in read_triforce(p, extras=False).truth
    # re-writing keeps the public names
    q = tmp_path / "again.h5"
    write_triforce(q, r)
    with h5py.File(q, "r") as f:
        for k in ("recoTheta", "R9", "ECALmomentX2", "conversion", "theta", "openingAngle"):
            assert k in f, k
    r2 = read_triforce(q)
    np.testing.assert_array_equal(r2.truth["recoTheta"], r.truth["recoTheta"])


def test_chunks(tmp_path):
    p = tmp_path / "c.h5"
    _tf_file(p, n=5)
    chunks = list(iter_triforce(p, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    whole = read_triforce(p)
    np.testing.assert_array_equal(np.concatenate([c.images["HCAL"] for c in chunks]), whole.images["HCAL"])
    np.testing.assert_array_equal(np.concatenate([c.truth["pdg"] for c in chunks]), whole.truth["pdg"])


# ------------------------------------------------------------------------------------------- bad input
def test_wrong_shapes_and_missing_keys(tmp_path):
    p = tmp_path / "b.h5"
    _tf_file(p, ECAL=np.zeros((3, 25, 25, 30)))
    with pytest.raises(FormatError, match=r"dataset 'ECAL': expected shape \(N, 25, 25, 25\) or \(N, 51, 51, 25\), "
                                          r"found \(3, 25, 25, 30\)"):
        read_triforce(p)
    _tf_file(p, HCAL=np.zeros((3, 60, 11, 11)))  # pcloud axis order written by mistake
    with pytest.raises(FormatError, match=r"dataset 'HCAL': expected shape \(N, 11, 11, 60\), found \(3, 60, 11, 11\)"):
        read_triforce(p)
    _tf_file(p, pdgID=None)
    with pytest.raises(FormatError, match=r"dataset 'pdgID': expected a dataset named 'pdgID', found keys "
                                          r"\['ECAL', 'HCAL', 'energy'\]"):
        read_triforce(p)
    _tf_file(p, energy=np.ones(2))
    with pytest.raises(FormatError, match=r"dataset 'energy': expected 3 events \(as 'ECAL'\), found 2 events"):
        read_triforce(p)
    _tf_file(p, recoEta=np.ones(2))
    with pytest.raises(FormatError, match=r"dataset 'recoEta': expected 3 entries \(one per event\), found shape"):
        read_triforce(p)


def test_bad_values(tmp_path):
    p = tmp_path / "v.h5"
    h = np.zeros((3, 11, 11, 60))
    h[2, 1, 1, 1] = np.inf
    _tf_file(p, HCAL=h)
    with pytest.raises(FormatError, match=r"dataset 'HCAL': expected finite values, found 1 NaN/inf values "
                                          r"\(first in event 2\)"):
        read_triforce(p)
    h[2, 1, 1, 1] = -0.5  # GeV
    _tf_file(p, HCAL=h)
    with pytest.raises(FormatError, match=r"dataset 'HCAL': expected cell energies >= -0\.001 GeV"):
        read_triforce(p)
    h[2, 1, 1, 1] = -0.0002
    _tf_file(p, HCAL=h)
    r = read_triforce(p)
    assert r.meta["n_negative_cells"] == 1 and r.images["HCAL"][2, 1, 1, 1] == pytest.approx(-0.0002)
    _tf_file(p, pdgID=np.array([22.0, 22.5, 11.0]))
    with pytest.raises(FormatError, match="dataset 'pdgID': expected integer PDG ids"):
        read_triforce(p)
    _tf_file(p, energy=np.array([1.0, 0.0, 2.0]))
    with pytest.raises(FormatError, match="dataset 'energy': expected energies > 0"):
        read_triforce(p)
    _tf_file(p, n=0)
    with pytest.raises(FormatError, match="expected at least one event, found 0 events"):
        read_triforce(p)
    assert read_triforce(p, allow_empty=True).images["ECAL"].shape == (0, 25, 25, 25)


def test_truncated(tmp_path, clic_showers):
    p = tmp_path / "t.h5"
    write_triforce(p, clic_showers)
    q = tmp_path / "cut.h5"
    q.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.6)])
    with pytest.raises(FormatError, match=r"cut\.h5: file: expected a readable HDF5 file, found an unreadable or "
                                          r"truncated file"):
        read_triforce(q)


def test_writer_requires_truth(tmp_path, clic_showers):
    s = clic_showers.select(np.arange(2))
    del s.truth["pdg"]
    with pytest.raises(ValueError, match=r"truth \['pdg'\] required"):
        write_triforce(tmp_path / "w.h5", s)
    assert not (tmp_path / "w.h5").exists()
