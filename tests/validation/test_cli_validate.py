"""``pcloud validate`` end to end (small n): a card, real-format files, and one-line errors with exit status 2."""
import json

import pytest

from pcloud.cli.main import main
from pcloud.validation.reference import builtin_path


def test_validate_card_end_to_end(tmp_path, capsys):
    out = tmp_path / "V"
    assert main(["validate", "calogan", "--reference", "calogan-geant4", "--out", str(out), "--n", "300",
                 "--particles", "e+,gamma", "--seed", "3"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["particles"] == ["e+", "gamma"] and len(res["rows"]) == 2 * 13
    row = next(r for r in res["rows"] if r["quantity"] == "eratio0" and r["particle"] == "e+")
    assert set(row["pcloud"]) >= {"p16", "median", "p84"} and row["distance"]["kind"] == "quantile"
    assert row["median_ratio"] == pytest.approx(row["pcloud"]["median"] / row["reference"]["median"])
    assert res["summary"]["total"] == 26 and isinstance(res["summary"]["all_passed"], bool)
    for name in res["figures"].values():
        assert (out / name).stat().st_size > 5000
    assert (out / "f0.png").exists() and (out / "summary.png").exists()
    md = (out / "report.md").read_text()
    assert "| eratio0 | e+ |" in md and "quantile distance" in md


def test_validate_against_files(tmp_path, capsys):
    """A CaloGAN-format file (here written by pcloud itself) as the reference: pcloud reads it, computes the same
    quantities and compares full distributions (KS, Wasserstein); the same simulation passes against itself."""
    h5 = tmp_path / "eplus.hdf5"
    assert main(["simulate", "calogan", "--particle", "e+", "--n", "400", "--seed", "8", "-o", str(h5)]) == 0
    out = tmp_path / "VF"
    assert main(["validate", "calogan", "--reference", f"{h5}:e+", "--out", str(out), "--n", "400"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["reference"]["kind"] == "files" and len(res["rows"]) == 13
    assert all(r["distance"]["kind"] == "ks" and 0 <= r["distance"]["value"] <= 1 for r in res["rows"])
    assert res["summary"]["passed"] >= 11, res["summary"]
    assert "KS / Wasserstein" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv,match", [
    (["--reference", "missing.json"], "no such reference card"),
    (["--reference", "calogan-geant4", "--particles", "e+,kaon"], "'kaon' is not in the card"),
    (["--reference", "plain.hdf5"], "FILE:PARTICLE"),
    (["--reference", "calogan-geant4", "--n", "3"], "at least 10"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, match):
    (tmp_path / "plain.hdf5").write_bytes(b"")
    argv = [a.replace("plain.hdf5", str(tmp_path / "plain.hdf5")) for a in argv]
    assert main(["validate", "calogan", "--out", str(tmp_path / "o")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err and "Traceback" not in err


def test_wrong_geometry_and_garbled_card(tmp_path, capsys):
    d = json.loads(builtin_path("calogan-geant4").read_text())
    d["configuration"]["geometry"] = "clic"
    p = tmp_path / "clic.json"
    p.write_text(json.dumps(d))
    assert main(["validate", "calogan", "--reference", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "a card for geometry 'clic'" in capsys.readouterr().err
    q = tmp_path / "bad.json"
    q.write_text("{not json")
    assert main(["validate", "calogan", "--reference", str(q), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and str(q) in err
