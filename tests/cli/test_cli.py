"""The acceptance path of the foundation issue through the ``pcloud`` command line."""
import json

import h5py
import numpy as np
import pytest

from pcloud.cli.main import main


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_convert_info_show(tmp_path, capsys):
    h5, pq, png = tmp_path / "e.h5", tmp_path / "e.parquet", tmp_path / "e0.png"
    assert main(["simulate", "calogan", "--particle", "e+", "--n", "300", "--energy", "1:100", "--seed", "4",
                 "-o", str(h5)]) == 0
    with h5py.File(h5) as f:  # the public CaloGAN layout and units
        assert f["energy"].shape == (300, 1) and f["layer_0"].shape == (300, 3, 96)
        assert f["layer_1"].shape == (300, 12, 12) and f["layer_2"].shape == (300, 12, 6)
        assert f["overflow"].shape == (300, 3)
        e_true = f["energy"][:, 0]
        assert 1.0 <= e_true.min() and e_true.max() <= 100.0
        layers_mev = sum(f[k][:].astype(np.float64).sum(axis=(1, 2)) for k in ("layer_0", "layer_1", "layer_2"))
    # total-mode deposits (MeV) are a large fraction of the true energy (GeV): MeV units, contained EM showers
    assert 0.9 < np.median(layers_mev / (1000 * e_true)) <= 1.0
    capsys.readouterr()
    assert main(["convert", str(h5), "-o", str(pq)]) == 0
    capsys.readouterr()
    a = run_json(capsys, ["info", str(pq), "--json"])
    b = run_json(capsys, ["info", str(h5), "--json"])
    assert a["n_events"] == b["n_events"] == 300
    assert abs(a["total_energy_gev"] - b["total_energy_gev"]) <= 1e-6 * b["total_energy_gev"]
    assert a["total_energy_gev"] == pytest.approx(layers_mev.sum() / 1000, rel=1e-6)
    assert a["points_per_event"]["mean"] == pytest.approx(b["points_per_event"]["mean"])
    # a threshold removes points and energy
    pq2 = tmp_path / "e_thr.parquet"
    assert main(["convert", str(h5), "-o", str(pq2), "--threshold-mev", "10"]) == 0
    capsys.readouterr()
    c = run_json(capsys, ["info", str(pq2), "--json"])
    assert c["points_per_event"]["mean"] < a["points_per_event"]["mean"]
    assert c["total_energy_gev"] < a["total_energy_gev"]
    assert main(["show", str(pq), "--event", "3", "-o", str(png)]) == 0
    assert png.stat().st_size > 20_000


def test_noisy_geometry_threshold_sigma(tmp_path, capsys):
    out = tmp_path / "cms.parquet"
    assert main(["simulate", "cms", "--particle", "gamma", "--n", "40", "--energy", "50:50", "--seed", "1",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    default = run_json(capsys, ["info", str(out), "--json"])
    assert main(["simulate", "cms", "--particle", "gamma", "--n", "40", "--energy", "50:50", "--seed", "1",
                 "--threshold-sigma", "0", "-o", str(out)]) == 0
    capsys.readouterr()
    loose = run_json(capsys, ["info", str(out), "--json"])
    # 4 sigma (160 MeV) keeps far fewer noisy crystals than E > 0 (half of all pure-noise crystals pass that)
    assert default["points_per_event"]["mean"] < 0.5 * loose["points_per_event"]["mean"]
    import awkward as ak

    from pcloud.io.native import read_clouds
    e = ak.to_numpy(ak.flatten(read_clouds(out).points.energy))
    assert e.min() > 0


@pytest.mark.parametrize("argv, message", [
    (["simulate", "calogan", "--particle", "e+", "--n", "5", "--energy", "100:1", "-o", "x.h5"], "0 < LO <= HI"),
    (["simulate", "calogan", "--particle", "muon", "--n", "5", "-o", "x.h5"], "unknown particle"),
    (["simulate", "atlas", "--particle", "e+", "--n", "5", "-o", "x.h5"], "parquet"),
    (["convert", "missing.h5", "-o", "x.parquet"], "no such file"),
])
def test_bad_input_messages(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_convert_bad_shape_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["energy"] = np.ones((10, 1))
        f["layer_0"] = np.ones((10, 3, 96))
        f["layer_1"] = np.ones((10, 12, 11))
        f["layer_2"] = np.ones((10, 12, 6))
        f["overflow"] = np.zeros((10, 3))
    out = tmp_path / "bad.parquet"
    assert main(["convert", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "layer_1" in err and "(N, 12, 12)" in err and "(10, 12, 11)" in err
    assert not out.exists()


def test_calochallenge_convert_show_roundtrip(tmp_path, capsys):
    from pcloud.io import example_binning, parse_binning, write_calochallenge
    from pcloud.core.showers import ShowerImages

    b = parse_binning(example_binning("photon5"))
    g = b.geometry
    rng = np.random.default_rng(0)
    imgs = {s.name: rng.exponential(0.01, (12, *s.shape)).astype(np.float32) for s in g.sections}
    src = tmp_path / "cc.h5"
    write_calochallenge(src, ShowerImages(g, imgs, {"energy_gev": np.full(12, 10.0)}), xml=b)
    out = tmp_path / "cc.parquet"
    assert main(["convert", str(src), "-o", str(out), "--chunk-size", "5"]) == 0  # 3 chunks
    capsys.readouterr()
    info = run_json(capsys, ["info", str(out), "--json"])
    assert info["n_events"] == 12
    expected = sum(float(v.astype(np.float64).sum()) for v in imgs.values())
    assert info["total_energy_gev"] == pytest.approx(expected, rel=1e-6)
    # the store remembers the binning, so the event display can rebuild the polar geometry without the XML
    assert main(["show", str(out), "--event", "11", "-o", str(tmp_path / "cc.png")]) == 0


def test_info_on_mltree(tmp_path, capsys):
    from pcloud.geometry import get_geometry
    from pcloud.io.mltree import write_mltree
    from pcloud.pflow.topocluster import topo_cluster_events
    from pcloud.sim.events import generate_events

    g = get_geometry("atlas")
    ev = generate_events(g, 3, np.random.default_rng(1), parent="rho")
    path = tmp_path / "t.root"
    write_mltree(path, ev, topo_cluster_events(g, ev), g)
    info = run_json(capsys, ["info", str(path), "--json"])
    assert info["format"] == "mltree" and info["n_events"] == 3 and info["n_cells"] > 0


def test_atlas_topo_selection_keeps_clusters(tmp_path, capsys):
    out_sigma, out_topo = tmp_path / "a4.parquet", tmp_path / "atopo.parquet"
    common = ["simulate", "atlas", "--particle", "pi+", "--n", "30", "--energy", "10:30", "--seed", "3"]
    assert main(common + ["-o", str(out_sigma)]) == 0
    assert main(common + ["--topo", "-o", str(out_topo)]) == 0
    capsys.readouterr()
    a = run_json(capsys, ["info", str(out_sigma), "--json"])
    b = run_json(capsys, ["info", str(out_topo), "--json"])
    # topo-clusters add the 2-sigma growth and perimeter cells around the 4-sigma seeds of the same showers
    assert b["points_per_event"]["mean"] > 1.5 * a["points_per_event"]["mean"]
    assert b["total_energy_gev"] > a["total_energy_gev"]
    assert main(["simulate", "cms", "--particle", "e-", "--n", "3", "--topo", "-o", str(tmp_path / "c.parquet")]) == 2
    assert "atlas geometry only" in capsys.readouterr().err
