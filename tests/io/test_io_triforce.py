"""Triforce/LCD HDF5: axis order (x, y, layer) <-> pcloud (layer, x, y), the public key sets and derived keys (as
Triforce's addFeatures.py computes them), what Triforce's loader reads, the calibrated energy scale, round trips and
bad input.

The helpers ``addfeatures_by_hand``, ``triforce_key_check`` and ``BluntLoaderLike`` restate, in my own words and
event by event, what Triforce_CaloML's ``SamplePrep/SampleAlterationCode/AddFeatures/addFeatures.py``,
``.../AddFeatures/test_files.py`` and ``Training/TriForce/Loader/blunt_loader.py`` do (see
pcloud/io/triforce.py for the sources); they are written independently of pcloud's vectorised code.
"""
import math
import warnings

import h5py
import numpy as np
import pytest

from pcloud.cli.main import main
from pcloud.core.showers import ShowerImages
from pcloud.geometry import get_geometry
from pcloud.io import EnergyScaleWarning, FormatError, iter_triforce, read_triforce, write_triforce
from pcloud.io.triforce import reco_angles
from pcloud.sim.showers import simulate_showers


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


# Key lists copied by hand from test_files.py (fixed angle: 53 keys; variable angle: + recoEta/Phi/Theta = 56).
MOMENTS = [f"{c}moment{a}{k}" for c in ("ECAL", "HCAL") for a in "XYZ" for k in range(1, 7)]
FIXED_53 = (["ECAL", "ECAL_E", "ECAL_nHits", "ECAL_ratioFirstLayerToSecondLayerE", "ECAL_ratioFirstLayerToTotalE"]
            + MOMENTS[:18]
            + ["HCAL", "HCAL_E", "HCAL_ECAL_ERatio", "HCAL_ECAL_nHitsRatio", "HCAL_nHits",
               "HCAL_ratioFirstLayerToSecondLayerE", "HCAL_ratioFirstLayerToTotalE"]
            + MOMENTS[18:] + ["R9", "conversion", "energy", "openingAngle", "pdgID"])
RANDOM_56 = FIXED_53 + ["recoEta", "recoPhi", "recoTheta"]


def triforce_key_check(path, random_angle: bool):
    """test_files.py: the file's keys, in h5py's order, must equal the expected list exactly."""
    with h5py.File(path, "r") as f:
        return list(f.keys()) == (RANDOM_56 if random_angle else FIXED_53)


def addfeatures_by_hand(ecal, hcal):
    """addFeatures.py's features, one event at a time with explicit loops (ECAL/HCAL in file order (x, y, layer))."""
    feats = {}

    def put(key, value):
        feats.setdefault(key, []).append(value)

    for ev in range(ecal.shape[0]):
        hits = {}
        energy = {}
        for name, cube in (("ECAL", ecal[ev].astype(np.float64)), ("HCAL", hcal[ev].astype(np.float64))):
            total = float(cube.sum())
            energy[name] = total
            hits[name] = int((cube > 0.1).sum())
            put(f"{name}_E", total)
            put(f"{name}_nHits", hits[name])
            layer0, layer1 = float(cube[:, :, 0].sum()), float(cube[:, :, 1].sum())
            put(f"{name}_ratioFirstLayerToTotalE", layer0 / total if total != 0 else 0.0)
            put(f"{name}_ratioFirstLayerToSecondLayerE", layer0 / layer1 if layer1 != 0 else 0.0)
            norm = float(cube.sum(axis=(1, 2)).sum())  # the X projection's sum divides every moment
            for letter, keep in (("X", 0), ("Y", 1), ("Z", 2)):
                proj = cube.sum(axis=tuple(ax for ax in range(3) if ax != keep))
                mean = sum(i * proj[i] for i in range(proj.size)) / norm if norm != 0 else 0.0
                put(f"{name}moment{letter}1", mean)
                for k in range(2, 7):
                    mk = sum((i - mean) ** k * proj[i] for i in range(proj.size))
                    put(f"{name}moment{letter}{k}", mk / norm if norm != 0 else 0.0)
        put("HCAL_ECAL_ERatio", energy["HCAL"] / energy["ECAL"] if energy["ECAL"] != 0 else 0.0)
        put("HCAL_ECAL_nHitsRatio", hits["HCAL"] / hits["ECAL"] if hits["ECAL"] != 0 else 0.0)
        flat = ecal[ev].astype(np.float64).sum(axis=2)
        best = max(flat[i:i + 3, j:j + 3].sum() for i in range(flat.shape[0] - 2) for j in range(flat.shape[1] - 2))
        put("R9", best / flat.sum() if flat.sum() > 0 else 0.0)
    return {k: np.array(v) for k, v in feats.items()}


class BluntLoaderLike:
    """Triforce's blunt_loader.HDF5Dataset: one list of files per class; the event count of a file is
    ``ECAL.shape[0]``; an event is read key by key (``f[key][i]`` cast to float32, 0 for a missing key) and its
    class is ``pdgID_to_class[abs(pdgID)]`` (a KeyError for a particle outside the class list)."""

    FEATURES = ("ECAL", "HCAL", "ECAL_E", "HCAL_E", "HCAL_ECAL_ERatio", "energy", "eta", "recoEta", "phi",
                "recoPhi", "openingAngle", "pdgID")

    def __init__(self, files_per_class, pdg_ids):
        self.files = [h5py.File(p, "r") for files in files_per_class for p in files]
        self.cumulative = np.cumsum([f["ECAL"].shape[0] for f in self.files])
        self.pdg_to_class = {pdg: c for c, pdg in enumerate(pdg_ids)}

    def __len__(self):
        return int(self.cumulative[-1])

    def __getitem__(self, index):
        k = int(np.searchsorted(self.cumulative, index, side="right"))
        f = self.files[k]
        i = index - (int(self.cumulative[k - 1]) if k else 0)
        event = {}
        for key in self.FEATURES:
            event[key] = f[key][i].astype(np.float32) if key in f else np.float32(0)
        event["pdgID"] = int(f["pdgID"][i])
        event["classID"] = self.pdg_to_class[abs(event["pdgID"])]
        return event

    def batch(self, indices):
        events = [self[i] for i in indices]
        return {k: np.stack([np.asarray(e[k]) for e in events]) for k in events[0]}

    def close(self):
        for f in self.files:
            f.close()


@pytest.fixture(scope="module")
def clic51_visible():
    """e- and pi+ on the public 51-cell window, simulated in visible (active-layer) mode."""
    g = get_geometry("clic", ecal_cells=51)
    return {p: simulate_showers(g, p, 24, energy_gev=(10, 60), mode="visible", seed=s)
            for p, s in (("e-", 1), ("pi+", 2))}


# ------------------------------------------------------------------------------------------- layout
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
                      opening_angle_rad=np.array([np.nan, 0.01, np.nan, np.nan]),
                      recoEta=np.array([0.1, 0.2, 0.3, 0.4]), entry_x_mm=np.array([1.0, 2.0, 3.0, 4.0]))
    p = tmp_path / "tf.h5"
    write_triforce(p, sh)
    with h5py.File(p, "r") as f:
        assert f["ECAL"].shape == (4, ecal, ecal, 25) and f["ECAL"].dtype == np.float32
        assert f["ECAL"].chunks == (1, ecal, ecal, 25) and f["ECAL"].compression == "gzip"
        assert f["HCAL"].shape == (4, 11, 11, 60) and f["HCAL"].dtype == np.float32
        assert f["energy"].shape == (4,) and f["energy"].dtype == np.float64
        assert f["pdgID"].dtype == np.int64 and f["pdgID"][:].tolist() == [22, 111, 211, 11]
        np.testing.assert_array_equal(f["openingAngle"][:], [-1.0, 0.01, -1.0, -1.0])  # -1: not a pi0
        assert f["conversion"].dtype == np.int64 and f["conversion"][:].tolist() == [0, 0, 0, 0]
        np.testing.assert_allclose(f["ECAL_E"][:], sh.section_energy()["ECAL"], rtol=1e-6)
        ratio = sh.section_energy()["HCAL"] / sh.section_energy()["ECAL"]
        np.testing.assert_allclose(f["HCAL_ECAL_ERatio"][:], ratio, rtol=1e-6)
        np.testing.assert_array_equal(f["recoEta"][:], [0.1, 0.2, 0.3, 0.4])  # given: copied
        assert sorted(f["pcloud_truth"]) == ["entry_x_mm", "event_number"]
        assert f.attrs["pcloud_em_sampling_fraction_ECAL"] == 1.0  # no simulation mode: images as given
    r = read_triforce(p)
    assert r.geometry.section("ECAL").n_u == ecal
    for k, v in sh.images.items():
        np.testing.assert_array_equal(r.images[k], v)  # GeV float32 both sides: bit identical
    for k in ("energy_gev", "pdg", "opening_angle_rad", "recoEta", "entry_x_mm", "event_number"):
        np.testing.assert_array_equal(r.truth[k], sh.truth[k])
    assert set(r.meta["extra_keys"]) == set(RANDOM_56) - {"ECAL", "HCAL", "energy", "pdgID", "openingAngle"}


def test_optional_public_keys_kept(tmp_path):
    p = tmp_path / "pub.h5"
    n = 3
    _tf_file(p, n=n, energy=np.array([[10.0], [20.0], [30.0]]), pdgID=np.array([111.0, 22.0, 111.0]),
             recoTheta=np.array([1.5, 1.6, 1.7]), theta=np.array([1.51, 1.61, 1.71]), R9=np.ones(n),
             ECALmomentX2=np.arange(3.0), conversion=np.array([0, 1, 0]), openingAngle=np.array([0.02, -1.0, 0.03]),
             file_info=np.arange(7))  # not one entry per event: ignored
    r = read_triforce(p)
    np.testing.assert_array_equal(r.truth["energy_gev"], [10.0, 20.0, 30.0])  # (N, 1) accepted
    assert r.truth["pdg"].dtype == np.int32 and r.truth["pdg"].tolist() == [111, 22, 111]
    np.testing.assert_array_equal(r.truth["theta_rad"], [1.51, 1.61, 1.71])
    np.testing.assert_array_equal(r.truth["opening_angle_rad"], [0.02, np.nan, 0.03])  # -1 -> NaN (not a pi0)
    for k in ("recoTheta", "R9", "ECALmomentX2", "conversion"):
        assert k in r.truth and k in r.meta["extra_keys"]
    assert "file_info" not in r.truth
    assert "recoTheta" not in read_triforce(p, extras=False).truth
    # re-writing keeps the public names; derived keys are recomputed, truth-only keys copied
    q = tmp_path / "again.h5"
    write_triforce(q, r)
    with h5py.File(q, "r") as f:
        for k in ("recoTheta", "R9", "ECALmomentX2", "conversion", "theta", "openingAngle"):
            assert k in f, k
        assert f["conversion"][:].tolist() == [0, 1, 0]
        np.testing.assert_array_equal(f["openingAngle"][:], [0.02, -1.0, 0.03])
        assert f["ECALmomentX2"][0] != 0.0  # recomputed from the images, not the file's 0, 1, 2
        assert f.attrs["pcloud_em_sampling_fraction_ECAL"] == 1.0  # read cells are calibrated: no second factor
    r2 = read_triforce(q)
    np.testing.assert_array_equal(r2.truth["recoTheta"], r.truth["recoTheta"])
    np.testing.assert_array_equal(r2.images["ECAL"], r.images["ECAL"])


def test_chunks(tmp_path):
    p = tmp_path / "c.h5"
    _tf_file(p, n=5)
    chunks = list(iter_triforce(p, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    whole = read_triforce(p)
    np.testing.assert_array_equal(np.concatenate([c.images["HCAL"] for c in chunks]), whole.images["HCAL"])
    np.testing.assert_array_equal(np.concatenate([c.truth["pdg"] for c in chunks]), whole.truth["pdg"])


# ------------------------------------------------------------------------------------------- public keys
def test_derived_keys_hand_case(tmp_path):
    g = get_geometry("clic")
    ecal = np.zeros((2, *g.section("ECAL").shape), np.float32)
    hcal = np.zeros((2, *g.section("HCAL").shape), np.float32)
    ecal[0, 7, 3, 5] = 2.0   # pcloud order (layer, x, y): file cell (x 3, y 5, layer 7)
    ecal[0, 0, 3, 5] = 0.05  # below the 0.1 GeV hit threshold, in layer 0
    hcal[1, 1, 4, 4] = 3.0   # event 1: HCAL only
    sh = ShowerImages(g, {"ECAL": ecal, "HCAL": hcal}, {"energy_gev": np.array([2.0, 3.0]), "pdg": np.array([11, 211])})
    p = tmp_path / "hand.h5"
    write_triforce(p, sh)
    with h5py.File(p, "r") as f:
        d = {k: f[k][:] for k in f if k not in ("ECAL", "HCAL", "pcloud_truth")}
    assert d["ECAL_E"][0] == pytest.approx(2.05) and d["ECAL_nHits"].tolist() == [1, 0]
    assert d["ECAL_nHits"].dtype == np.int64 and d["HCAL_nHits"].tolist() == [0, 1]
    assert d["ECALmomentX1"][0] == pytest.approx(3.0) and d["ECALmomentY1"][0] == pytest.approx(5.0)
    z1 = 7 * 2.0 / 2.05
    assert d["ECALmomentZ1"][0] == pytest.approx(z1)
    assert d["ECALmomentZ2"][0] == pytest.approx(((7 - z1) ** 2 * 2.0 + z1 ** 2 * 0.05) / 2.05)
    assert d["ECALmomentX2"][0] == pytest.approx(0.0, abs=1e-12)  # both cells at x = 3
    assert d["ECAL_ratioFirstLayerToTotalE"][0] == pytest.approx(0.05 / 2.05)
    assert d["ECAL_ratioFirstLayerToSecondLayerE"][0] == 0.0  # layer 1 empty: 0, not inf
    assert d["R9"][0] == pytest.approx(1.0) and d["R9"][1] == 0.0
    assert d["HCAL_ECAL_ERatio"].tolist() == [0.0, 0.0]  # event 1 has no ECAL energy: 0, not inf
    assert d["HCALmomentZ1"][1] == pytest.approx(1.0) and d["HCAL_ratioFirstLayerToSecondLayerE"][1] == 0.0


def test_derived_keys_as_addfeatures(tmp_path, make_showers):
    g = get_geometry("clic", ecal_cells=51)
    sh = make_showers(g, 6, seed=4, sparsity=0.9)
    for s in ("ECAL", "HCAL"):
        sh.images[s] *= np.float32(0.6)  # about half of the non-empty cells above the 0.1 GeV hit threshold
    sh.images["ECAL"][2] = 0.0       # no ECAL energy: ratios and moments 0
    sh.images["HCAL"][3, :2] = 0.0   # empty first two HCAL layers
    p = tmp_path / "feat.h5"
    write_triforce(p, sh)
    with h5py.File(p, "r") as f:
        ref = addfeatures_by_hand(f["ECAL"][:], f["HCAL"][:])  # from the float32 cells as stored
        assert len(ref) == 47
        for k, v in ref.items():
            assert f[k].shape == (6,), k
            assert f[k].dtype == (np.int64 if k.endswith("nHits") else np.float64), k
            np.testing.assert_allclose(f[k][:], v, rtol=1e-10, atol=1e-12, err_msg=k)
        assert 0 < f["ECAL_nHits"][0] < np.count_nonzero(f["ECAL"][0])


def test_strict_keys_pass_triforce_key_check(tmp_path, clic51_visible):
    e = clic51_visible["e-"]
    assert np.ptp(e.truth["theta_rad"]) > 0  # the CLIC gun varies the angle: the 56-key set
    p = tmp_path / "strict.h5"
    write_triforce(p, e, strict_keys=True)
    assert triforce_key_check(p, random_angle=True)
    assert not triforce_key_check(p, random_angle=False)
    fixed = e.select(np.arange(e.n_events))
    fixed.truth["theta_rad"] = np.full(e.n_events, np.pi / 2)
    q = tmp_path / "fixed.h5"
    write_triforce(q, fixed, strict_keys=True)
    assert triforce_key_check(q, random_angle=False)
    write_triforce(q, e, strict_keys=True, angles="fixed")
    assert triforce_key_check(q, random_angle=False)
    # the default keeps pcloud's truth: the check fails (as for any extra dataset) but the loaders do not care
    d = tmp_path / "default.h5"
    write_triforce(d, e)
    assert not triforce_key_check(d, random_angle=True)
    with h5py.File(d, "r") as f:
        assert set(f) == set(RANDOM_56) | {"theta", "phi", "pcloud_truth"}
    # strict files read back; only pcloud-only truth is lost
    r = read_triforce(p)
    np.testing.assert_array_equal(r.images["ECAL"], read_triforce(d).images["ECAL"])
    np.testing.assert_array_equal(r.truth["event_number"], np.arange(e.n_events))
    assert "theta_rad" not in r.truth and r.truth["pdg"].tolist() == [11] * e.n_events


def test_blunt_loader_reads_pcloud_files(tmp_path, clic51_visible):
    paths = {}
    for p, sh in clic51_visible.items():
        paths[p] = tmp_path / f"{p}.h5"
        write_triforce(paths[p], sh, strict_keys=True)
    loader = BluntLoaderLike([[paths["e-"]], [paths["pi+"]]], pdg_ids=[11, 211])
    try:
        assert len(loader) == 48
        ev = loader[30]
        assert ev["ECAL"].shape == (51, 51, 25) and ev["HCAL"].shape == (11, 11, 60)
        assert ev["energy"].shape == () and ev["pdgID"] == 211 and ev["classID"] == 1
        assert ev["eta"] == 0 and ev["recoEta"] != 0  # eta is not in the public key set: the loader's 0
        b = loader.batch(range(0, 48, 3))
        assert b["ECAL"].shape == (16, 51, 51, 25) and b["energy"].shape == (16,)
        # Triforce's regression target and its recoOverGen filter work on (B,) arrays of calibrated GeV
        target = (b["energy"] - (b["ECAL_E"] + b["HCAL_E"])) / (10 * np.log(b["energy"]))
        assert target.shape == (16,)
        electrons = b["classID"] == 0
        reco_over_gen = (b["ECAL_E"] + b["HCAL_E"]) / b["energy"]
        assert np.all(reco_over_gen[electrons] > 0.66) and np.all(reco_over_gen[~electrons] > 0.3)
        assert np.all(np.abs(b["openingAngle"] + 1) < 1e-7)
    finally:
        loader.close()
    # a particle outside the loader's class list stops it: pcloud's reader turns unknown ids into a FormatError
    loader = BluntLoaderLike([[paths["e-"]]], pdg_ids=[22])
    with pytest.raises(KeyError):
        loader[0]
    loader.close()


def test_reco_angles_follow_the_shower(tmp_path):
    g = get_geometry("clic")
    ecal = np.zeros((2, *g.section("ECAL").shape), np.float32)
    hcal = np.zeros((2, *g.section("HCAL").shape), np.float32)
    ecal[0, 10, 12, 20] = 1.0  # one cell: the barycentre is its centre
    weta = np.array([0.4, -0.3])
    sh = ShowerImages(g, {"ECAL": ecal, "HCAL": hcal}, {"energy_gev": np.array([1.5, 2.0]), "pdg": np.array([22, 22]),
                                                        "window_eta": weta})
    out = reco_angles(g, sh.images, weta)
    flat = int(np.flatnonzero(sh.flat()[0])[0])
    c = g.cells
    eta, phi = g.xyz_to_etaphi(c["x"][flat], c["y"][flat], c["z"][flat], weta[0])
    assert out["recoEta"][0] == pytest.approx(float(eta), abs=1e-9)
    assert out["recoPhi"][0] == pytest.approx(float(phi), abs=1e-9)
    assert out["recoTheta"][0] == pytest.approx(2 * math.atan(math.exp(-float(eta))), abs=1e-9)
    # no energy: the window axis
    assert out["recoEta"][1] == -0.3 and out["recoPhi"][1] == 0.0
    assert out["recoTheta"][1] == pytest.approx(2 * math.atan(math.exp(0.3)))
    p = tmp_path / "reco.h5"
    write_triforce(p, sh)
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(f["recoEta"][:], out["recoEta"])


def test_simulated_reco_angles_match_truth(clic51_visible):
    sh = clic51_visible["e-"]
    out = reco_angles(sh.geometry, sh.images, sh.truth["window_eta"])
    true_eta = -np.log(np.tan(sh.truth["theta_rad"] / 2))
    assert np.max(np.abs(out["recoEta"] - true_eta)) < 0.01
    assert np.max(np.abs(out["recoPhi"])) < 0.01  # the CLIC gun shoots at phi = 0


# ------------------------------------------------------------------------------------------- energy scale
def _median_ratio(path):
    with h5py.File(path, "r") as f:
        return float(np.median((f["ECAL_E"][:] + f["HCAL_E"][:]) / f["energy"][:]))


def test_visible_mode_written_as_calibrated_gev(tmp_path):
    from pcloud.bench.singles.tasks import em_scale
    from pcloud.sim.media import em_sampling_fraction

    g = get_geometry("clic")
    e = simulate_showers(g, "e-", 150, energy_gev=(10, 100), mode="visible", seed=7)
    pi = simulate_showers(g, "pi+", 150, energy_gev=(10, 100), mode="visible", seed=8)
    assert np.median(e.total_energy() / e.truth["energy_gev"]) < 0.03  # active-layer energies: ~1/64
    p, q = tmp_path / "e.h5", tmp_path / "pi.h5"
    write_triforce(p, e)
    write_triforce(q, pi)
    assert 0.93 < _median_ratio(p) < 1.03          # calibrated GeV, as Triforce's loader assumes
    assert 0.6 < _median_ratio(q) < 0.95           # pions below: e/h > 1 and leakage
    with h5py.File(p, "r") as f:
        for s in ("ECAL", "HCAL"):
            assert f.attrs[f"pcloud_em_sampling_fraction_{s}"] == em_sampling_fraction(g.section(s).stack)
        assert "divided by the EM sampling fraction" in f.attrs["pcloud_energy_scale"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # calibrated files read without a scale warning
        r = read_triforce(p)
    # the reader returns the calibrated cells (the calibration of the singles benchmark, bit for bit) ...
    cal = em_scale(e)
    for s in ("ECAL", "HCAL"):
        np.testing.assert_array_equal(r.images[s], cal.images[s])
    assert r.meta["energy_scale"] == "calibrated" and r.meta["calibration"]["em_sampling_fraction"]["ECAL"] < 0.02
    # ... and scale="visible" gives the simulated visible energies back
    v = read_triforce(p, scale="visible")
    for s in ("ECAL", "HCAL"):
        np.testing.assert_allclose(v.images[s], e.images[s], rtol=3e-7, atol=0)
    assert v.meta["energy_scale"] == "visible"
    # writing the visible read again calibrates it again (same factors); total mode gets no factor
    w = tmp_path / "again.h5"
    write_triforce(w, v)
    np.testing.assert_allclose(read_triforce(w).images["ECAL"], r.images["ECAL"], rtol=3e-7)
    t = simulate_showers(g, "e-", 20, energy_gev=(10, 100), mode="total", seed=7)
    write_triforce(w, t)
    with h5py.File(w, "r") as f:
        assert f.attrs["pcloud_em_sampling_fraction_ECAL"] == 1.0 and "total" in f.attrs["pcloud_energy_scale"]
    np.testing.assert_array_equal(read_triforce(w).images["ECAL"], t.images["ECAL"])
    assert 0.9 < _median_ratio(w) < 1.02
    write_triforce(w, e, calibrate=False)  # the caller says the images are calibrated already
    assert _median_ratio(w) < 0.03


def test_old_visible_scale_file_warns(tmp_path):
    g = get_geometry("clic")
    e = simulate_showers(g, "e-", 20, energy_gev=(10, 100), mode="visible", seed=3)
    p = tmp_path / "old.h5"
    write_triforce(p, e, calibrate=False)
    with h5py.File(p, "r+") as f:  # what pcloud wrote before the calibration: visible cells, no factors
        for k in [k for k in f.attrs if k.startswith(("pcloud_em_sampling", "pcloud_energy_scale"))]:
            del f.attrs[k]
        f.attrs["pcloud_meta"] = '{"mode": "visible"}'
    with pytest.warns(EnergyScaleWarning, match=r"old\.h5: written by an older pcloud in visible mode"):
        r = read_triforce(p)
    assert r.meta["energy_scale"] == "visible" and "older pcloud" in r.meta["notes"][0]
    np.testing.assert_array_equal(r.images["ECAL"], e.images["ECAL"])  # read as stored, not refused
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = read_triforce(p, scale="calibrated")
    assert 0.93 < np.median(c.total_energy() / c.truth["energy_gev"]) < 1.03
    assert c.meta["energy_scale"] == "calibrated" and "divided by the EM sampling fractions" in c.meta["notes"][0]


def test_energy_scale_far_from_one_warns(tmp_path):
    p = tmp_path / "mev.h5"
    e = np.zeros((6, 25, 25, 25))
    e[:, 12, 12, 5] = 20.0  # 20 GeV cells
    _tf_file(p, n=6, ECAL=e, HCAL=np.zeros((6, 11, 11, 60)), energy=np.full(6, 20_000.0), pdgID=np.full(6, 11))
    with pytest.warns(EnergyScaleWarning, match=r"mev\.h5: median \(ECAL_E \+ HCAL_E\) / energy = 0\.001 over 6 "
                                                r"events, outside \[0\.2, 2\.0\]"):
        r = read_triforce(p)
    assert r.n_events == 6 and "not look like calibrated GeV" in r.meta["notes"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_triforce(p, stop=4)  # too few events to judge: no note
        _tf_file(p, n=6, ECAL=e, HCAL=np.zeros((6, 11, 11, 60)), energy=np.full(6, 21.0), pdgID=np.full(6, 11))
        assert "notes" not in read_triforce(p).meta
    with pytest.raises(FormatError, match="scale='visible'"):
        read_triforce(p, scale="visible")  # a public-style file records no factor to undo


def test_cli_strict_flag(tmp_path, capsys):
    p = tmp_path / "g.h5"
    assert main(["simulate", "clic", "--particle", "gamma", "--n", "12", "--energy", "10:20", "--mode", "visible",
                 "--seed", "1", "--triforce-strict", "-o", str(p)]) == 0
    assert triforce_key_check(p, random_angle=True)
    assert 0.9 < _median_ratio(p) < 1.05
    assert main(["simulate", "calogan", "--particle", "gamma", "--n", "2", "--triforce-strict",
                 "-o", str(tmp_path / "c.h5")]) == 2
    assert "--triforce-strict applies to clic .h5 outputs" in capsys.readouterr().err


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


def test_unknown_pdg(tmp_path, clic_showers):
    p = tmp_path / "u.h5"
    _tf_file(p, pdgID=np.array([22, 12345, 11]))
    with pytest.raises(FormatError, match=r"u\.h5: dataset 'pdgID': expected PDG ids of known particles \(.*211.*\), "
                                          r"found unknown ids \[12345\]"):
        read_triforce(p)
    s = clic_showers.select(np.arange(2))
    s.truth["pdg"] = np.array([22, 0])
    with pytest.raises(FormatError, match=r"truth 'pdg': expected PDG ids of known particles .* found unknown ids \[0\]"):
        write_triforce(tmp_path / "w.h5", s)
    assert not (tmp_path / "w.h5").exists()


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
    s = clic_showers.select(np.arange(2))
    s.truth["conversion"] = np.array([0.0, 0.5])
    with pytest.raises(ValueError, match="'conversion' must hold integer counts"):
        write_triforce(tmp_path / "w.h5", s)
    assert not (tmp_path / "w.h5").exists()
