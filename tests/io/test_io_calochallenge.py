"""CaloChallenge: binning XML parsing (structure of the public files), voxel order, units, round trips, bad input."""
import h5py
import numpy as np
import pytest

from pcloud.io import FormatError, iter_calochallenge, parse_binning, read_calochallenge, write_calochallenge
from pcloud.io.calochallenge import LayerBinning, binning_xml_text, example_binning, write_binning_xml

# Binning of CaloChallenge dataset 1, photons (numbers from the challenge's binning_dataset_1_photons.xml):
# 24 ATLAS samplings, only 0-3 and 12 have bins; the challenge README states 368 voxels.
DS1_PHOTON_LAYERS = {0: ("0,5,10,30,50,100,200,400,600", 1),
                     1: ("0,2,4,6,8,10,12,15,20,30,40,50,70,90,120,150,200", 10),
                     2: ("0,2,5,10,15,20,25,30,40,50,60,80,100,130,160,200,250,300,350,400", 10),
                     3: ("0,50,100,200,400,600", 1), 12: ("0,100,200,400,1000,2000", 1)}


def ds1_photon_xml():
    rows = "\n".join(f'      <Layer id="{i}" r_edges="{DS1_PHOTON_LAYERS.get(i, ("0", 1))[0]}" '
                     f'n_bin_alpha="{DS1_PHOTON_LAYERS.get(i, ("0", 1))[1]}" />' for i in range(24))
    return f'<Bins>\n   <Bin pid="22" etaMin="0" etaMax="130" name="photon">\n{rows}\n   </Bin>\n</Bins>\n'


def ds2_xml():
    edges = ",".join(f"{4.65 * i:g}" for i in range(10))
    rows = "\n".join(f'<Layer id="{i}" r_edges="{edges}" n_bin_alpha="16" />' for i in range(45))
    return f'<Bins><Bin pid="11" name="electron">{rows}</Bin></Bins>'


def test_dataset1_photon_binning(tmp_path):
    x = tmp_path / "binning_dataset_1_photons.xml"
    x.write_text(ds1_photon_xml())
    b = parse_binning(x)
    assert b.n_voxels == 368  # challenge README
    assert b.pid == 22 and b.particle == "photon" and b.bin_attrs == {"etaMin": "0", "etaMax": "130"}
    g = b.geometry
    assert g.section_names == ["layer_0", "layer_1", "layer_2", "layer_3", "layer_12"]  # empty samplings skipped
    assert [s.shape for s in g.sections] == [(1, 8, 1), (1, 16, 10), (1, 19, 10), (1, 5, 1), (1, 5, 1)]
    assert g.n_cells == 368 and g.sections[1].kind == "ralpha" and g.sections[1].v_periodic
    # ATLAS nominal depths: EMB2 1582-1889 mm, TileBar0 2280-2572 mm (pcloud.geometry.atlas)
    assert b.depth_model == "atlas"
    np.testing.assert_allclose(g.section("layer_2").layer_edges_mm, [1582.0, 1889.0])
    np.testing.assert_allclose(g.section("layer_12").layer_edges_mm, [2280.0, 2572.0])
    np.testing.assert_allclose(g.section("layer_1").v_edges, np.linspace(-np.pi, np.pi, 11))


def test_dataset2_binning_par04_depths():
    b = parse_binning(ds2_xml())
    assert b.n_voxels == 6480  # 9 x 16 x 45, challenge README
    assert b.depth_model == "par04" and len(b.geometry.sections) == 45
    fronts = b.geometry.layer_fronts_mm
    np.testing.assert_allclose(np.diff(fronts), 3.4)  # Par04: 2 x (1.4 mm W + 0.3 mm Si)
    assert fronts[0] == 800.0
    b2 = parse_binning(ds2_xml(), depth_model="uniform", pitch_mm=5.0)
    np.testing.assert_allclose(b2.geometry.layer_fronts_mm[:3], [0.0, 5.0, 10.0])


def test_voxel_order_layer_alpha_radius_fastest(tmp_path):
    """File voxel k holds k MeV: the image must put voxel (layer l, alpha a, r i) at off_l + a * n_r + i."""
    b = parse_binning(example_binning("photon5"))
    nv = b.n_voxels
    assert nv == 169
    p = tmp_path / "order.h5"
    with h5py.File(p, "w") as f:
        f["incident_energies"] = np.array([[1000.0]])
        f["showers"] = np.arange(nv, dtype=np.float64)[None, :]
    r = read_calochallenge(p, xml=example_binning("photon5"))
    img1 = r.images["layer_1"][0, 0]  # (n_r=11, n_alpha=8)
    off1 = 6  # layer 0 has 6 radial x 1 angular bins
    for a in (0, 3, 7):
        for i in (0, 4, 10):
            assert img1[i, a] == pytest.approx((off1 + a * 11 + i) / 1000.0)
    off4 = 6 + 88 + 72  # layer 3 is empty
    np.testing.assert_allclose(r.images["layer_4"][0, 0, :, 0], (off4 + np.arange(3)) / 1000.0)
    assert r.truth["energy_gev"][0] == 1.0  # 1000 MeV
    assert r.truth["pdg"][0] == 22


def test_voxel_table_bin_centres():
    b = parse_binning(example_binning("photon5"))
    t = b.voxel_table()
    assert len(t["r_mm"]) == 169
    # file voxel 6 = layer 1, alpha bin 0, r bin 0: r centre 1 mm, alpha centre -pi + pi/8
    assert (t["layer_id"][6], t["r_bin"][6], t["alpha_bin"][6]) == (1, 0, 0)
    assert t["r_mm"][6] == pytest.approx(1.0) and t["alpha_rad"][6] == pytest.approx(-np.pi + np.pi / 8)
    assert t["x_mm"][6] == pytest.approx(np.cos(-7 * np.pi / 8)) and t["y_mm"][6] == pytest.approx(
        np.sin(-7 * np.pi / 8))
    # file voxel 6 + 11 = alpha bin 1 of the same radius
    assert (t["r_bin"][17], t["alpha_bin"][17]) == (0, 1)
    # single angular bin: centre at alpha = 0
    assert t["alpha_rad"][0] == 0.0 and t["r_mm"][0] == pytest.approx(2.5)
    assert t["z_mm"][0] == pytest.approx(800.0 + 1.7)


def test_round_trip_and_layout(tmp_path, make_showers):
    b = parse_binning(example_binning("uniform3"))
    sh = make_showers(b.geometry, 6, seed=5, pdg=np.full(6, 11, dtype=np.int32), theta_rad=np.full(6, 0.3))
    p = tmp_path / "cc.h5"
    xml_out = tmp_path / "binning.xml"
    write_calochallenge(p, sh, xml_path=xml_out)
    with h5py.File(p, "r") as f:
        assert f["incident_energies"].shape == (6, 1) and f["incident_energies"].dtype == np.float64
        assert f["showers"].shape == (6, 96) and f["showers"].dtype == np.float64
        assert f["showers"].compression == "gzip"
        np.testing.assert_allclose(f["incident_energies"][:, 0], sh.truth["energy_gev"] * 1000, rtol=1e-15)
        np.testing.assert_allclose(f["showers"][:].sum(axis=1), sh.total_energy() * 1000, rtol=1e-6)
        assert f.attrs["pcloud_negative_cells_clipped"] == 0
    for xml in (None, example_binning("uniform3"), xml_out):
        r = read_calochallenge(p, xml=xml)
        for k, v in sh.images.items():
            np.testing.assert_array_equal(r.images[k], v)  # float64 MeV: the float32 GeV come back exactly
        np.testing.assert_allclose(r.truth["energy_gev"], sh.truth["energy_gev"], rtol=1e-15)
        np.testing.assert_array_equal(r.truth["pdg"], 11)
        np.testing.assert_array_equal(r.truth["theta_rad"], 0.3)
    assert parse_binning(xml_out).n_voxels == 96


def check_file_as_evaluate(path, dataset):
    """CaloChallenge code/evaluate.py, ``check_file`` and the data preparation after it, in my words: the voxel
    count is fixed per dataset, both datasets have N rows; everything is read whole, voxels below the dataset's
    minimal readout are set to 0, and the low-level classifier input is [log10 E_inc, 100 voxels / E_inc, label]
    concatenated along axis 1 (so incident_energies must be 2-D (N, 1))."""
    n_vox = {"1-photons": 368, "1-pions": 533, "2": 6480, "3": 40500}[dataset]
    with h5py.File(path, "r") as f:
        n = f["incident_energies"].shape[0]
        assert f["showers"].shape[0] == n, "number of energies differs from the number of showers"
        assert f["showers"].shape[1] == n_vox, "showers have the wrong shape"
        showers, e_inc = f["showers"][:], f["incident_energies"][:]
    cut = np.where(showers < {"1-photons": 10, "1-pions": 10, "2": 0.5e-3 / 0.033, "3": 0.5e-3 / 0.033}[dataset],
                   0.0, showers)
    low = np.concatenate([np.log10(e_inc), 100.0 * cut / e_inc, np.zeros_like(e_inc)], axis=1)
    assert low.shape == (n, n_vox + 2) and np.all(np.isfinite(low))
    return showers, e_inc


def xml_as_xmlhandler(xml_path, particle):
    """CaloChallenge code/XMLHandler.py as HighLevelFeatures uses it, in my words: the <Bin> named ``particle``;
    its <Layer> children in document order; per layer r bins = number of comma-separated edges - 1, voxels = r bins
    x n_bin_alpha; cumulative voxel offsets by document position; 'relevant' layers = positions with r bins > 0;
    layers binned in alpha recorded by their id attribute."""
    import xml.etree.ElementTree as ET

    root = ET.parse(xml_path).getroot()
    bins = [b for b in root if b.get("name") == particle]
    assert len(bins) == 1, f"no <Bin name={particle!r}>"
    edges, ids, alpha = [], [], []
    for layer in bins[0]:
        r = [float(x) for x in layer.get("r_edges").split(",")]
        edges.append(r)
        ids.append(int(layer.get("id")))
        alpha.append(int(layer.get("n_bin_alpha")))
    n_vox = [(len(r) - 1) * a for r, a in zip(edges, alpha)]
    return {"bin_edges": np.concatenate([[0], np.cumsum(n_vox)]).astype(int), "ids": ids,
            "relevant": [i for i, r in enumerate(edges) if len(r) > 1],
            "alpha_layers": [i for i, a in zip(ids, alpha) if a > 1], "n_r": [len(r) - 1 for r in edges],
            "n_alpha": alpha}


@pytest.mark.parametrize("dataset, xml_text, particle", [("2", ds2_xml(), "electron"),
                                                          ("1-photons", ds1_photon_xml(), "photon")])
def test_written_file_passes_evaluate_and_xmlhandler(tmp_path, make_showers, dataset, xml_text, particle):
    src = tmp_path / "binning_in.xml"
    src.write_text(xml_text)
    b = parse_binning(src)
    sh = make_showers(b.geometry, 5, seed=9, sparsity=0.8)
    sh.images[b.geometry.section_names[0]][0, 0, 0, 0] = -1e-4  # a noise-like negative cell: clipped to 0
    p, xml_out = tmp_path / "dataset.h5", tmp_path / "binning_out.xml"
    write_calochallenge(p, sh, xml_path=xml_out)
    with h5py.File(p, "r") as f:
        assert f["showers"].dtype == np.float64 and f["incident_energies"].dtype == np.float64
        assert f["showers"][:].min() >= 0.0 and f.attrs["pcloud_negative_cells_clipped"] == 1
    showers, e_inc = check_file_as_evaluate(p, dataset)
    np.testing.assert_allclose(e_inc[:, 0], sh.truth["energy_gev"] * 1000)
    h = xml_as_xmlhandler(xml_out, particle)
    assert h["bin_edges"][-1] == showers.shape[1] == b.n_voxels
    assert h["ids"] == list(range(len(h["ids"])))  # ids = document positions, as HighLevelFeatures assumes
    assert h["relevant"] == [lay.layer_id for lay in b.layers if lay.n_voxels]
    # the voxels between XMLHandler's offsets of a layer hold exactly that pcloud layer (same order of layers)
    for pos in h["relevant"]:
        part = showers[:, h["bin_edges"][pos]:h["bin_edges"][pos + 1]]
        img = sh.images[f"layer_{pos}"].astype(np.float64).clip(min=0) * 1000
        np.testing.assert_allclose(part.sum(axis=1), img.reshape(5, -1).sum(axis=1), rtol=1e-12)
        # inside a layer: alpha bins outer, radius inner (XMLHandler's eta/phi lists are generated in that order)
        n_r, n_a = h["n_r"][pos], h["n_alpha"][pos]
        np.testing.assert_array_equal(part.reshape(5, n_a, n_r), np.transpose(img[:, 0], (0, 2, 1)))


def test_chunks(tmp_path, make_showers):
    b = parse_binning(example_binning("photon5"))
    sh = make_showers(b.geometry, 7, seed=6)
    p = tmp_path / "cc.h5"
    write_calochallenge(p, sh, compression=None)
    chunks = list(iter_calochallenge(p, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert all(c.geometry is chunks[0].geometry for c in chunks)  # XML parsed once
    np.testing.assert_array_equal(np.concatenate([c.images["layer_2"] for c in chunks]),
                                  read_calochallenge(p).images["layer_2"])
    part = read_calochallenge(p, start=5)
    np.testing.assert_array_equal(part.truth["event_number"], [5, 6])


def test_xml_text_round_trip_keeps_empty_layers():
    layers = [LayerBinning(0, np.array([0.0, 1.5, 3.0]), 4), LayerBinning(1, np.array([0.0]), 1),
              LayerBinning(2, np.array([0.0, 10.0]), 1)]
    text = binning_xml_text(211, "pion", layers, {"etaMin": "0"})
    b = parse_binning(text)
    assert [lay.layer_id for lay in b.layers] == [0, 1, 2] and b.n_voxels == 9
    assert b.pid == 211 and b.bin_attrs == {"etaMin": "0"}
    np.testing.assert_array_equal(b.layers[0].r_edges_mm, [0.0, 1.5, 3.0])


# ------------------------------------------------------------------------------------------- bad input
def _cc_file(path, n=3, nvox=96, **over):
    data = {"incident_energies": np.full((n, 1), 5000.0), "showers": np.ones((n, nvox))}
    data.update(over)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if v is not None:
                f[k] = v


def test_xml_voxel_count_mismatch(tmp_path):
    p = tmp_path / "ds.h5"
    _cc_file(p, nvox=100)
    with pytest.raises(FormatError, match=r"ds\.h5: dataset 'showers': expected 169 voxels per event \(binning XML "
                                          r".*binning_example_photon5\.xml\), found 100 \(checked before building"):
        read_calochallenge(p, xml=example_binning("photon5"))


def test_missing_xml_and_keys(tmp_path):
    p = tmp_path / "ds.h5"
    _cc_file(p)
    with pytest.raises(FormatError, match="binning: expected a binning XML .* found no xml argument"):
        read_calochallenge(p)
    _cc_file(p, incident_energies=None)
    with pytest.raises(FormatError, match=r"dataset 'incident_energies': expected a dataset named "
                                          r"'incident_energies', found keys \['showers'\]"):
        read_calochallenge(p, xml=example_binning("uniform3"))


def test_bad_values(tmp_path):
    p = tmp_path / "v.h5"
    s = np.ones((3, 96))
    s[1, 50] = np.nan
    _cc_file(p, showers=s)
    with pytest.raises(FormatError, match=r"dataset 'showers': expected finite values, found 1 NaN/inf values "
                                          r"\(first in event 1\)"):
        read_calochallenge(p, xml=example_binning("uniform3"))
    s[1, 50] = -20.0  # MeV
    _cc_file(p, showers=s)
    with pytest.raises(FormatError, match=r"expected cell energies >= -0\.001 GeV .*found minimum -0\.02 GeV"):
        read_calochallenge(p, xml=example_binning("uniform3"))
    _cc_file(p, incident_energies=np.array([[1.0], [-3.0], [2.0]]))
    with pytest.raises(FormatError, match="dataset 'incident_energies': expected energies > 0"):
        read_calochallenge(p, xml=example_binning("uniform3"))
    _cc_file(p, n=0)
    with pytest.raises(FormatError, match="expected at least one event, found 0 events"):
        read_calochallenge(p, xml=example_binning("uniform3"))


def test_truncated_and_non_hdf5(tmp_path, make_showers):
    b = parse_binning(example_binning("uniform3"))
    p = tmp_path / "cc.h5"
    write_calochallenge(p, make_showers(b.geometry, 4))
    q = tmp_path / "cut.h5"
    q.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(FormatError, match=r"cut\.h5: file: expected a readable HDF5 file"):
        read_calochallenge(q, xml=b)
    t = tmp_path / "x.h5"
    t.write_text("<Bins/>")
    with pytest.raises(FormatError, match=r"x\.h5: file signature: expected HDF5 signature"):
        read_calochallenge(t, xml=b)


@pytest.mark.parametrize("xml, match", [
    ("<Bins><Bin pid='11'><Layer id='0' r_edges='0,5,3' n_bin_alpha='2'/></Bin></Bins>",
     r"<Layer id=0> r_edges: expected finite, non-negative, strictly increasing radii, found '0,5,3'"),
    ("<Bins><Bin pid='11'><Layer id='0' r_edges='0,5' /></Bin></Bins>",
     r"<Layer> #0 attribute 'n_bin_alpha': expected attributes id, r_edges, n_bin_alpha, found attributes "
     r"\['id', 'r_edges'\]"),
    ("<Bins><Bin pid='11'><Layer id='0' r_edges='0,a' n_bin_alpha='1'/></Bin></Bins>",
     r"r_edges: expected comma separated numbers \(mm\), found '0,a'"),
    ("<Bins><Bin pid='11'><Layer id='0' r_edges='0,5' n_bin_alpha='0'/></Bin></Bins>",
     r"<Layer id=0> n_bin_alpha: expected >= 1 angular bin, found 0"),
    ("<Bins><Bin pid='11'><Layer id='1' r_edges='0,5' n_bin_alpha='1'/><Layer id='0' r_edges='0,5' "
     "n_bin_alpha='1'/></Bin></Bins>", r"<Layer> ids: expected strictly increasing layer ids"),
    ("<Bins><Bin pid='11'><Layer id='0' r_edges='0' n_bin_alpha='1'/></Bin></Bins>",
     "expected at least one layer with radial bins, found only empty layers"),
    ("<Bins><Layers/></Bins>", r"<Bins>: expected at least one <Bin> element"),
    ("<Bins><Bin pid='11'>", "XML: expected well-formed XML, found a parse error"),
])
def test_bad_xml(xml, match):
    with pytest.raises(FormatError, match=match):
        parse_binning(xml)


def test_multiple_bins_need_particle():
    text = ("<Bins><Bin pid='22' name='photon'><Layer id='0' r_edges='0,5' n_bin_alpha='1'/></Bin>"
            "<Bin pid='211' name='pion'><Layer id='0' r_edges='0,5,9' n_bin_alpha='2'/></Bin></Bins>")
    with pytest.raises(FormatError, match=r"expected one <Bin> element \(or pass particle=\), found 2"):
        parse_binning(text)
    assert parse_binning(text, particle=211).n_voxels == 4
    assert parse_binning(text, particle="photon").n_voxels == 1


def test_write_binning_xml_file(tmp_path):
    b = parse_binning(example_binning("photon5"))
    out = tmp_path / "b.xml"
    write_binning_xml(out, b)
    b2 = parse_binning(out)
    assert b2.n_voxels == b.n_voxels and np.array_equal(b2.file_to_flat, b.file_to_flat)


def test_atlas_depths_need_barrel_layers():
    layers = {i: ("0", 1) for i in range(24)}
    layers.update({1: ("0,5,10", 4), 6: ("0,5", 1)})  # sampling 6 = EME2, not barrel
    rows = "".join(f'<Layer id="{i}" r_edges="{e}" n_bin_alpha="{a}"/>' for i, (e, a) in layers.items())
    text = f'<Bins><Bin pid="22" etaMin="0" etaMax="130" name="photon">{rows}</Bin></Bins>'
    assert parse_binning(text).depth_model == "par04"  # auto falls back
    with pytest.raises(ValueError, match=r"layers \[6\] have voxels but are not ATLAS barrel samplings"):
        parse_binning(text, depth_model="atlas")
