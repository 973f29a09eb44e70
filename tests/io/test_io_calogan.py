"""CaloGAN HDF5: layout of the public files, units, round trips, chunked reads and every bad-input case."""
import h5py
import numpy as np
import pytest

from pcloud.io import FormatError, iter_calogan, read_calogan, write_calogan
from pcloud.io.calogan import calogan_n_events


def test_writer_layout_matches_public_files(tmp_path, calogan_showers):
    p = tmp_path / "gamma.h5"
    write_calogan(p, calogan_showers)
    with h5py.File(p, "r") as f:
        public = {k: (f[k].shape, f[k].dtype) for k in f if isinstance(f[k], h5py.Dataset)}
        # float64, as CaloGAN's generation/convert.py stores the double columns of its Geant4 ntuple
        assert public == {"energy": ((9, 1), np.float64), "layer_0": ((9, 3, 96), np.float64),
                          "layer_1": ((9, 12, 12), np.float64), "layer_2": ((9, 12, 6), np.float64),
                          "overflow": ((9, 3), np.float64)}
        assert f["layer_1"].compression == "gzip"
        assert sorted(f["pcloud_truth"]) == ["entry_x_mm", "event_number", "pdg", "theta_rad"]
        assert int(f.attrs["pdg"]) == 22 and f.attrs["pcloud_format"] == "calogan"
        assert f.attrs["pcloud_overflow"] == "from truth overflow_gev"
        # MeV in the file: 1000 x the GeV images; energy stays GeV
        np.testing.assert_allclose(f["layer_1"][:], calogan_showers.images["layer_1"][:, 0].astype(np.float64) * 1000,
                                   rtol=1e-15)
        np.testing.assert_allclose(f["overflow"][:], calogan_showers.truth["overflow_gev"] * 1000, rtol=1e-12)
        np.testing.assert_array_equal(f["energy"][:, 0], calogan_showers.truth["energy_gev"])
    q = tmp_path / "small.h5"
    write_calogan(q, calogan_showers, dtype="float32")
    with h5py.File(q, "r") as f:
        assert {f[k].dtype for k in ("energy", "layer_0", "overflow")} == {np.dtype(np.float32)}
    with pytest.raises(ValueError, match="dtype must be a float dtype"):
        write_calogan(q, calogan_showers, dtype="int32")


def test_round_trip_identical_to_float32(tmp_path, calogan_showers):
    p = tmp_path / "x.h5"
    write_calogan(p, calogan_showers)
    r = read_calogan(p)
    assert r.geometry.name == "calogan" and r.n_events == 9
    for k, v in calogan_showers.images.items():
        assert r.images[k].dtype == np.float32 and r.images[k].shape == v.shape
        np.testing.assert_array_equal(r.images[k], v)  # float64 MeV in the file: the float32 GeV come back exactly
    np.testing.assert_array_equal(r.truth["energy_gev"], calogan_showers.truth["energy_gev"])
    np.testing.assert_allclose(r.truth["overflow_gev"], calogan_showers.truth["overflow_gev"], rtol=1e-14)
    for k in ("theta_rad", "entry_x_mm", "event_number", "pdg"):
        np.testing.assert_array_equal(r.truth[k], calogan_showers.truth[k])
    assert r.meta["file_meta"] == {"generator": "tests/io random"}
    assert r.meta["n_negative_cells"] == 0


def test_units_hand_case(tmp_path, public_calogan):
    p = tmp_path / "hand.h5"
    l0 = np.zeros((1, 3, 96))
    l0[0, 1, 40] = 1500.0  # MeV
    public_calogan(p, n=1, energy=[[37.5]], layer_0=l0, layer_1=np.full((1, 12, 12), 2.0),
                   layer_2=np.zeros((1, 12, 6)), overflow=[[250.0, 0.0, 1000.0]])
    r = read_calogan(p)
    assert r.images["layer_0"][0, 0, 1, 40] == pytest.approx(1.5)  # 1500 MeV = 1.5 GeV
    assert r.images["layer_0"].sum() == pytest.approx(1.5)
    assert r.images["layer_1"].sum() == pytest.approx(144 * 0.002)
    assert r.truth["energy_gev"][0] == 37.5  # energy is already GeV in the public files
    np.testing.assert_allclose(r.truth["overflow_gev"][0], [0.25, 0.0, 1.0])
    assert r.total_energy()[0] == pytest.approx(1.5 + 0.288, rel=1e-6)


def test_public_file_float64_no_gzip_and_pdg_sources(tmp_path, public_calogan):
    p = tmp_path / "eplus.hdf5"
    data = public_calogan(p, n=3, dtype=np.float64)
    r = read_calogan(p)
    assert "pdg" not in r.truth  # public files carry no particle id
    np.testing.assert_allclose(r.images["layer_2"][:, 0], data["layer_2"] / 1000, rtol=1e-6)
    assert read_calogan(p, pdg="eplus").truth["pdg"].tolist() == [-11] * 3
    assert read_calogan(p, pdg=211).truth["pdg"].tolist() == [211] * 3
    with h5py.File(p, "a") as f:
        f.attrs["particle"] = "piplus"
    assert read_calogan(p).truth["pdg"].tolist() == [211] * 3
    with pytest.raises(FormatError, match="argument pdg: expected a PDG id or particle name"):
        read_calogan(p, pdg="muon-ish")
    with pytest.raises(FormatError, match=r"eplus\.hdf5: argument pdg: expected the PDG id of a known particle "
                                          r"\(.*\), found 12345"):
        read_calogan(p, pdg=12345)
    with h5py.File(p, "a") as f:
        f.attrs["particle"] = "999"
    with pytest.raises(FormatError, match=r"attribute 'particle': expected the PDG id of a known particle"):
        read_calogan(p)


def test_gzip_float16_accepted(tmp_path, public_calogan):
    p = tmp_path / "h.h5"
    public_calogan(p, n=2, dtype=np.float16, compression="gzip")
    assert read_calogan(p).n_events == 2


def test_start_stop_and_chunks(tmp_path, calogan_showers):
    p = tmp_path / "x.h5"
    write_calogan(p, calogan_showers)
    assert calogan_n_events(p) == 9
    part = read_calogan(p, start=2, stop=5)
    np.testing.assert_array_equal(part.truth["event_number"], [2, 3, 4])
    np.testing.assert_allclose(part.images["layer_0"], calogan_showers.images["layer_0"][2:5], rtol=2e-7)
    chunks = list(iter_calogan(p, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 1]
    whole = read_calogan(p)
    for k in whole.images:
        np.testing.assert_array_equal(np.concatenate([c.images[k] for c in chunks]), whole.images[k])
    assert [len(c) for c in iter_calogan(p, chunk_size=2, start=3, stop=8)] == [2, 2, 1]
    # a read past the end returns 0 events (loops of start += chunk stop there)
    end = read_calogan(p, start=9, stop=12)
    assert end.n_events == 0 and end.images["layer_2"].shape == (0, 1, 12, 6)


def test_event_numbers_of_public_file_chunks_are_file_indices(tmp_path, public_calogan):
    p = tmp_path / "pub.h5"
    public_calogan(p, n=5)
    nums = np.concatenate([c.truth["event_number"] for c in iter_calogan(p, chunk_size=2)])
    np.testing.assert_array_equal(nums, np.arange(5))


# ------------------------------------------------------------------------------------------- bad input
def test_missing_key(tmp_path, public_calogan):
    p = tmp_path / "m.h5"
    public_calogan(p, layer_1=None)
    with pytest.raises(FormatError, match=r"m\.h5: dataset 'layer_1': expected a dataset named 'layer_1', "
                                          r"found keys \['energy', 'layer_0', 'layer_2', 'overflow'\]"):
        read_calogan(p)


def test_wrong_shape(tmp_path, public_calogan):
    p = tmp_path / "s.h5"
    public_calogan(p, n=4, layer_1=np.ones((4, 12, 11)))
    with pytest.raises(FormatError, match=r"dataset 'layer_1': expected shape \(N, 12, 12\), found \(4, 12, 11\)"):
        read_calogan(p)
    public_calogan(p, n=4, energy=np.ones((4, 2)))
    with pytest.raises(FormatError, match=r"dataset 'energy': expected shape \(N, 1\) or \(N,\), found \(4, 2\)"):
        read_calogan(p)
    public_calogan(p, n=4, layer_2=np.ones((3, 12, 6)))
    with pytest.raises(FormatError, match=r"dataset 'layer_2': expected 4 events .*found 3 events"):
        read_calogan(p)


def test_integer_dtype_rejected(tmp_path, public_calogan):
    p = tmp_path / "i.h5"
    public_calogan(p, n=2, layer_0=np.ones((2, 3, 96), dtype=np.int32))
    with pytest.raises(FormatError, match="dataset 'layer_0': expected a floating-point dtype, found dtype int32"):
        read_calogan(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected(tmp_path, public_calogan, bad):
    p = tmp_path / "n.h5"
    l1 = np.ones((4, 12, 12))
    l1[2, 5, 5] = bad
    public_calogan(p, n=4, layer_1=l1)
    with pytest.raises(FormatError, match=r"dataset 'layer_1': expected finite values, found 1 NaN/inf values "
                                          r"\(first in event 2\)"):
        read_calogan(p)
    # the bad event is outside the requested range: reading the rest works
    assert read_calogan(p, start=3).n_events == 1


def test_bad_incident_energy(tmp_path, public_calogan):
    p = tmp_path / "e.h5"
    public_calogan(p, n=3, energy=[[10.0], [0.0], [5.0]])
    with pytest.raises(FormatError, match=r"dataset 'energy': expected energies > 0, found 1 values <= 0 "
                                          r"\(first in event 1"):
        read_calogan(p)
    public_calogan(p, n=3, energy=[[10.0], [np.nan], [5.0]])
    with pytest.raises(FormatError, match="dataset 'energy': expected finite values"):
        read_calogan(p)


def test_negative_cells_policy(tmp_path, public_calogan):
    p = tmp_path / "neg.h5"
    l0 = np.ones((2, 3, 96))
    l0[0, 0, 0] = -0.4  # MeV: within the 1 MeV noise tolerance
    l0[1, 2, 3] = -0.2
    public_calogan(p, n=2, layer_0=l0)
    r = read_calogan(p)
    assert r.meta["n_negative_cells"] == 2
    assert r.images["layer_0"][0, 0, 0, 0] == pytest.approx(-0.0004)
    rc = read_calogan(p, clip_negative=True)
    assert rc.images["layer_0"].min() == 0.0 and rc.meta["n_negative_cells"] == 2
    l0[1, 2, 3] = -50.0  # MeV: far beyond noise
    public_calogan(p, n=2, layer_0=l0)
    with pytest.raises(FormatError, match=r"dataset 'layer_0': expected cell energies >= -0\.001 GeV "
                                          r"\(noise tolerance\), found minimum -0\.05 GeV \(first in event 1\)"):
        read_calogan(p)
    assert read_calogan(p, negative_tolerance_gev=0.1).meta["n_negative_cells"] == 2


def test_empty_file(tmp_path, public_calogan):
    p = tmp_path / "empty.h5"
    public_calogan(p, n=0)
    with pytest.raises(FormatError, match=r"empty\.h5: number of events: expected at least one event, "
                                          r"found 0 events"):
        read_calogan(p)
    r = read_calogan(p, allow_empty=True)
    assert r.n_events == 0 and r.images["layer_1"].shape == (0, 1, 12, 12)
    assert list(iter_calogan(p, allow_empty=True)) == []


def test_truncated_file(tmp_path, calogan_showers):
    p = tmp_path / "t.h5"
    write_calogan(p, calogan_showers)
    size = p.stat().st_size
    for frac in (0.1, 0.5, 0.95):
        q = tmp_path / f"t{frac}.h5"
        q.write_bytes(p.read_bytes()[: int(size * frac)])
        with pytest.raises(FormatError, match=rf"t{frac}\.h5: file: expected a readable HDF5 file, found an "
                                              r"unreadable or truncated file of \d+ bytes"):
            read_calogan(q)


def test_corrupt_bytes_give_format_error(tmp_path, calogan_showers):
    p = tmp_path / "c.h5"
    write_calogan(p, calogan_showers)
    raw = bytearray(p.read_bytes())
    q = tmp_path / "bad.h5"
    # a sweep over the whole file: wherever the bytes are overwritten, the reader either succeeds (free space,
    # attribute text) or raises FormatError; any other exception type fails the test
    n_err = 0
    for off in range(0, len(raw) - 64, len(raw) // 25):
        bad = bytearray(raw)
        bad[off:off + 64] = b"\xff" * 64
        q.write_bytes(bytes(bad))
        try:
            read_calogan(q)
        except FormatError:
            n_err += 1
    assert n_err >= 5
    # overwriting the stored bytes of any public dataset is always a FormatError (gzip error or NaN values)
    with h5py.File(p, "r") as f:
        where = {k: (f[k].id.get_chunk_info(0).byte_offset, f[k].id.get_chunk_info(0).size)
                 for k in ("energy", "layer_0", "layer_1", "layer_2", "overflow")}
    for off, size in where.values():
        bad = bytearray(raw)
        bad[off:off + min(size, 64)] = b"\xff" * min(size, 64)
        q.write_bytes(bytes(bad))
        with pytest.raises(FormatError, match=r"bad\.h5: "):
            read_calogan(q)


def test_not_hdf5(tmp_path):
    p = tmp_path / "notes.h5"
    p.write_text("energy,layer_0\n1,2\n")
    with pytest.raises(FormatError, match=r"notes\.h5: file signature: expected HDF5 signature .*found b'energy,l'"):
        read_calogan(p)
    z = tmp_path / "zero.h5"
    z.write_bytes(b"")
    with pytest.raises(FormatError, match=r"zero\.h5: file: expected an HDF5 file, found an empty file \(0 bytes\)"):
        read_calogan(z)
    with pytest.raises(FileNotFoundError):
        read_calogan(tmp_path / "missing.h5")


def test_writer_refuses_wrong_input(tmp_path, calogan_showers, clic_showers):
    with pytest.raises(ValueError, match="must be on the 'calogan' geometry, found geometry 'clic'"):
        write_calogan(tmp_path / "w.h5", clic_showers)
    no_e = calogan_showers.select(np.arange(3))
    del no_e.truth["energy_gev"]
    with pytest.raises(ValueError, match="truth 'energy_gev' is required"):
        write_calogan(tmp_path / "w.h5", no_e)
    assert not (tmp_path / "w.h5").exists()


def test_failed_write_keeps_existing_file(tmp_path, calogan_showers):
    p = tmp_path / "keep.h5"
    write_calogan(p, calogan_showers)
    before = p.read_bytes()
    bad = calogan_showers.select(np.arange(9))
    bad.truth["label"] = np.array(["a"] * 9)  # strings cannot be written -> fails mid-write
    with pytest.raises(TypeError, match="only numeric arrays"):
        write_calogan(p, bad)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.h5"]


def test_overflow_filled_or_marked(tmp_path, public_calogan):
    """overflow = energy outside the +-240 mm window per layer (CaloGAN's SteppingAction): written from truth
    overflow_gev; without that truth (pcloud's simulation does not compute it yet) zeros, marked as such."""
    from pcloud.geometry import get_geometry
    from pcloud.sim.showers import simulate_showers

    sim = simulate_showers(get_geometry("calogan"), "e+", 8, energy_gev=(10, 50), seed=2)
    sim.truth.pop("overflow_gev", None)  # a simulation without the overflow truth (as pcloud.sim today)
    p = tmp_path / "sim.h5"
    write_calogan(p, sim)
    with h5py.File(p, "r") as f:
        assert f["overflow"].shape == (8, 3) and not f["overflow"][:].any()
        assert f.attrs["pcloud_overflow"] == "zeros: not simulated"
    r = read_calogan(p)
    assert "overflow_gev" not in r.truth and "not read into truth 'overflow_gev'" in r.meta["notes"][0]
    sim.truth["overflow_gev"] = np.tile([0.5, 0.0, 0.25], (8, 1))
    write_calogan(p, sim)
    r = read_calogan(p)
    np.testing.assert_array_equal(r.truth["overflow_gev"][:, 0], 0.5)
    assert "notes" not in r.meta
    # public files: the overflow is read whatever its values; negative overflow beyond the noise tolerance is bad
    q = tmp_path / "pub.h5"
    public_calogan(q, n=3, overflow=np.array([[10.0, 0.0, 5.0], [0.0, -50.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(FormatError, match=r"dataset 'overflow': expected cell energies >= -0\.001 GeV"):
        read_calogan(q)
    for bad in (np.full((8, 3), -0.1), np.zeros((8, 2)), np.full((8, 3), np.nan)):
        sim.truth["overflow_gev"] = bad
        with pytest.raises(ValueError, match=r"truth 'overflow_gev' must be \(N, 3\) = \(8, 3\), finite and >= 0"):
            write_calogan(tmp_path / "bad.h5", sim)
    assert not (tmp_path / "bad.h5").exists()


def test_calogan_loader_reads_pcloud_files(tmp_path):
    """What CaloGAN's models/train.py does with a file: layer_0/1/2 read whole with a channel axis appended,
    energy reshaped to (-1, 1) and multiplied by 1000, all four cast to float32 and divided by 1000 (layers and
    energy in GeV); the discriminator compares the summed layers with the requested energy (|sum - E| flagged
    above 5 GeV). A pcloud total-mode file must fit that: MeV layers, GeV energy, shapes (3, 96), (12, 12), (12, 6)."""
    from pcloud.geometry import get_geometry
    from pcloud.sim.showers import simulate_showers

    p = tmp_path / "eplus.hdf5"
    write_calogan(p, simulate_showers(get_geometry("calogan"), "e+", 60, energy_gev=(1, 100), seed=5))
    with h5py.File(p, "r") as f:
        layers = [np.expand_dims(f[f"layer_{i}"][:], -1) for i in range(3)]
        energy = f["energy"][:].reshape(-1, 1) * 1000
    layers = [x.astype(np.float32) / 1000 for x in layers]
    energy = energy.astype(np.float32) / 1000
    assert [x.shape[1:] for x in layers] == [(3, 96, 1), (12, 12, 1), (12, 6, 1)]
    assert 1.0 <= energy.min() and energy.max() <= 100.0
    total = sum(x.sum(axis=(1, 2, 3)) for x in layers)
    ratio = total / energy[:, 0]
    assert 0.9 < np.median(ratio) <= 1.0  # total-mode deposits, contained e+ showers
    assert np.mean(np.abs(total - energy[:, 0]) > 5.0) < 0.2


def test_energy_in_mev_is_caught(tmp_path):
    import h5py

    from pcloud.io.calogan import read_calogan
    from pcloud.io.errors import FormatError

    rng = np.random.default_rng(0)
    n = 50
    e_gev = rng.uniform(1, 100, n)
    path = tmp_path / "mev.h5"
    with h5py.File(path, "w") as f:
        # cells in MeV carrying ~the incident energy, as in the public files ...
        f["layer_0"] = np.zeros((n, 3, 96), np.float32)
        l1 = np.zeros((n, 12, 12), np.float32)
        l1[:, 6, 6] = 1000 * e_gev
        f["layer_1"] = l1
        f["layer_2"] = np.zeros((n, 12, 6), np.float32)
        f["overflow"] = np.zeros((n, 3), np.float32)
        f["energy"] = (1000 * e_gev)[:, None]  # ... but the incident energy wrongly in MeV
    with pytest.raises(FormatError, match="median ratio 0.001"):
        read_calogan(path)
    assert read_calogan(path, check_units=False).n_events == n
