"""``pcloud generate`` (MLTree files) and ``pcloud convert FILE.root`` (MLTree -> point clouds), with bad input."""
import builtins
import json

import awkward as ak
import numpy as np
import pytest
import uproot

from helpers.mltree import athena_style_file, has_root
from pcloud.cli.main import main
from pcloud.io.native import read_clouds, read_meta

CONTAINERS = [pytest.param("ttree", marks=pytest.mark.skipif(not has_root(), reason="needs the root extra")),
              "rntuple"]


def _block_import(monkeypatch, module):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)


@pytest.mark.parametrize("container", CONTAINERS)
def test_generate_info_convert(tmp_path, capsys, container):
    root = tmp_path / "gun.root"
    assert main(["generate", "gun", "--n", "12", "--seed", "4", "-o", str(root), "--container", container]) == 0
    assert "wrote 12 gun events" in capsys.readouterr().out
    with uproot.open(root) as f:
        t = f["EventTree"]
        assert t.num_entries == 12 and "trackEta_HEC3" in t.keys() and f["CellGeo"].num_entries == 1
        sub = ak.to_numpy(ak.flatten(t["trackSubtractedCaloEnergy"].array()))
        n_trk = int(np.sum(t["nTrack"].array(library="np")))
        events = t["eventNumber"].array(library="np")
    assert sub.size == n_trk and np.all((sub == -999) | (sub >= 0)) and np.max(sub) > 1000   # MeV
    assert main(["info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "mltree" and info["n_events"] == 12 and info["n_tracks"] == n_trk
    pq = tmp_path / "tracks.parquet"
    assert main(["convert", str(root), "-o", str(pq), "--dr-max", "0.15", "--chunk-size", "5"]) == 0
    clouds, meta = read_clouds(pq), read_meta(pq)
    assert meta["clouds"] == "track" and meta["dr_max"] == 0.15 and meta["mltree_reading"]["n_events"] == 12
    assert 0 < len(clouds) <= n_trk and set(ak.to_numpy(clouds.event_number)) <= set(events.tolist())
    assert float(ak.max(clouds.points["delta_r_ref"][clouds.points["type"] == 0])) < 0.15   # cells
    ev_pq = tmp_path / "events.parquet"
    assert main(["convert", str(root), "-o", str(ev_pq), "--clouds", "event"]) == 0
    ev_clouds = read_clouds(ev_pq)
    assert len(ev_clouds) == 12 and ak.to_numpy(ev_clouds.event_number).tolist() == events.tolist()
    assert "charged_fraction" in ev_clouds.points.fields


def test_convert_athena_style_with_separate_geometry(tmp_path, capsys):
    geo = tmp_path / "geo.root"
    src = athena_style_file(tmp_path / "athena.root", geo_path=geo)
    out = tmp_path / "a.parquet"
    assert main(["convert", str(src), "-o", str(out), "--geo", str(geo)]) == 0
    assert "cells mapped onto atlas 5/8" in capsys.readouterr().out
    cm = read_meta(out)["mltree_reading"]["cell_mapping"]
    assert cm["n_dropped_no_layer"] == 2 and cm["energy_fraction_dropped"] == pytest.approx(1.3 / 7.85, rel=1e-6)
    c = read_clouds(out)
    assert len(c) == 1 and int(c.event_number[0]) == 1001      # the one track reaching pcloud's barrel


def test_bad_mltree_input_is_one_line(tmp_path, capsys, monkeypatch):
    src = athena_style_file(tmp_path / "athena.root")
    data = src.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: len(data) // 3])
    for argv in (["info", str(cut)], ["convert", str(cut), "-o", str(tmp_path / "x.parquet")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cut.root" in err[0] and "readable ROOT file" in err[0]
    assert main(["convert", str(src), "-o", str(tmp_path / "x.parquet"), "--xml", "b.xml"]) == 2
    assert main(["convert", str(src), "-o", str(tmp_path / "x.parquet"), "--geo", str(tmp_path / "none.root")]) == 2
    assert main(["generate", "gun", "--n", "3", "-o", str(tmp_path / "x.h5")]) == 2
    assert not list(tmp_path.glob("x.*"))
    capsys.readouterr()
    _block_import(monkeypatch, "pythia8mc")
    assert main(["generate", "pythia-tau", "--n", "2", "-o", str(tmp_path / "tau.root")]) == 2
    assert "pythia8mc" in capsys.readouterr().err
    _block_import(monkeypatch, "ROOT")
    assert main(["generate", "gun", "--n", "2", "-o", str(tmp_path / "g.root")]) == 2
    err = capsys.readouterr().err
    assert "pcloud[root]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.root").exists() and not (tmp_path / "tau.root").exists()
