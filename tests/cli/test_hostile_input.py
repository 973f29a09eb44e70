"""Hostile files and interrupted runs (issue 14): no memory bombs, integrity checks, signals, clear messages.

The checkpoint and bundle cases (crafted pickles, resume with other settings, kills at several epochs) are in
tests/train/test_trainer.py and tests/pipeline/test_train_bundle.py.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from pcloud.cli.main import main
from pcloud.core.atomic import atomic_output
from pcloud.core.schema import build_clouds
from pcloud.data.convert import images_to_clouds
from pcloud.geometry import get_geometry
from pcloud.io.calochallenge import example_binning, parse_binning, write_calochallenge
from pcloud.io.calogan import write_calogan
from pcloud.io.errors import FormatError
from pcloud.io.native import iter_clouds, read_clouds, write_clouds
from pcloud.sim.showers import simulate_showers


@pytest.fixture(scope="module")
def calogan_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    s = simulate_showers(get_geometry("calogan"), "e+", 300, energy_gev=(1, 100), seed=3)
    write_calogan(d / "e.h5", s)
    write_clouds(d / "e.parquet", images_to_clouds(s), meta={"geometry": "calogan"}, row_group_events=100)
    return d


def _rewrite_meta(src, dst, change):
    """A copy of a native store whose pcloud metadata was changed by ``change(meta)``."""
    t = pq.read_table(src)
    meta = json.loads(pq.ParquetFile(src).metadata.metadata[b"pcloud"])
    change(meta)
    with pq.ParquetWriter(dst, t.schema) as w:
        w.write_table(t)
        w.add_key_value_metadata({"pcloud": json.dumps(meta)})


def test_metadata_cannot_ask_for_a_huge_geometry(calogan_store, tmp_path, capsys):
    bomb = tmp_path / "bomb.parquet"
    _rewrite_meta(calogan_store / "e.parquet", bomb, lambda m: m.update(geometry={"name": "cms",
                                                                                  "kwargs": {"n_crystals": 10**9}}))
    t0 = time.perf_counter()
    assert main(["show", str(bomb), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "argument 'n_crystals' must be an integer in [1, 400]" in err and time.perf_counter() - t0 < 30
    for bad in ("cms", ["cms"]):  # a geometry stored as a string or a list: one clear line, no internal error
        odd = tmp_path / "odd.parquet"
        _rewrite_meta(calogan_store / "e.parquet", odd, lambda m: m.update(geometry=bad))
        assert main(["info", str(odd)]) == 2
        assert "metadata 'geometry': expected an object with a geometry 'name'" in capsys.readouterr().err
    # an embedded binning of 2e7 angle bins is refused before anything is built
    xml = re.sub(r'n_bin_alpha="\d+"', 'n_bin_alpha="20000000"', parse_binning(example_binning()).to_xml(), count=1)
    with pytest.raises(FormatError, match="at most 1,000,000 voxels"):
        parse_binning(xml)
    with pytest.raises(FormatError, match="at most 1,000,000 voxels"):
        parse_binning(xml.replace('n_bin_alpha="20000000"', 'n_bin_alpha="1000000000000"'))


def test_binning_xml_checked_against_the_file_first(tmp_path, capsys):
    b = parse_binning(example_binning())
    s = simulate_showers(b.geometry, "gamma", 4, energy_gev=(10, 20), seed=1)
    write_calochallenge(tmp_path / "cc.h5", s, b)
    big = tmp_path / "big.xml"
    big.write_text(re.sub(r'n_bin_alpha="\d+"', 'n_bin_alpha="2000"', b.to_xml(), count=1))
    t0 = time.perf_counter()
    assert main(["convert", str(tmp_path / "cc.h5"), "--xml", str(big), "-o", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert "dataset 'showers': expected" in err and "checked before building" in err
    assert time.perf_counter() - t0 < 20
    assert main(["convert", str(tmp_path / "cc.h5"), "--xml", str(tmp_path), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "binning XML (--xml): expected an XML file, found a directory" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "cc.h5"), "--xml", str(tmp_path / "no.xml"), "-o",
                 str(tmp_path / "o.parquet")]) == 2
    assert "binning XML not found (--xml)" in capsys.readouterr().err


def test_flipped_bytes_and_bad_values_are_caught_on_read(calogan_store, tmp_path, capsys):
    src = (calogan_store / "e.parquet").read_bytes()
    flip = tmp_path / "flip.parquet"
    col = next(c for c in (pq.ParquetFile(calogan_store / "e.parquet").metadata.row_group(1).column(i)
                           for i in range(30)) if c.path_in_schema.endswith("energy") and "points" in c.path_in_schema)
    b = bytearray(src)
    b[col.data_page_offset + col.total_compressed_size // 2] ^= 0xFF  # inside a data page of the cell energies
    flip.write_bytes(bytes(b))
    with pytest.raises(FormatError, match="page checksum does not match|read error"):
        for _ in iter_clouds(flip):
            pass
    for value in (np.nan, -1e30, np.inf):
        c = build_clouds([3, 2], {"energy": np.array([1.0, value, 2.0, 0.5, 0.1], np.float32)}, {})
        path = tmp_path / "bad.parquet"
        write_clouds(path, c, meta={"geometry": "calogan"})
        with pytest.raises(FormatError, match=r"points.energy: expected finite energies.*first .* in event 0"):
            read_clouds(path)
        assert main(["info", str(path), "--json"]) == 2  # never an info with NaN in it
        capsys.readouterr()
    # noisy-geometry cells a few sigma negative are normal and read fine
    ok = build_clouds([2], {"energy": np.array([-0.15, 1.0], np.float32),
                            "noise_sigma": np.array([0.05, 0.05], np.float32)}, {})
    write_clouds(tmp_path / "noise.parquet", ok, meta={"geometry": "atlas"})
    assert len(read_clouds(tmp_path / "noise.parquet")) == 1
    assert main(["info", str(calogan_store / "e.parquet"), "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))


def _convert_cmd(src, out):
    return [sys.executable, "-c", "from pcloud.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))",
            "convert", str(src), "-o", str(out), "--chunk-size", "20"]


def test_sigterm_removes_the_temporary_and_exits_143(tmp_path):
    s = simulate_showers(get_geometry("calogan"), "e+", 6000, energy_gev=(1, 100), seed=4)
    write_calogan(tmp_path / "big.h5", s)
    out = tmp_path / "big.parquet"
    proc = subprocess.Popen(_convert_cmd(tmp_path / "big.h5", out), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".big.parquet.p*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the conversion ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".big.parquet.*"))


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "x.parquet"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    stale = tmp_path / f".x.parquet.p{dead.pid}.abc.parquet.tmp"
    live = tmp_path / f".x.parquet.p{os.getpid()}.def.parquet.tmp"
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    with atomic_output(target, suffix=".parquet.tmp") as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and not stale.exists() and live.exists()


def test_read_only_output_is_not_replaced(calogan_store, tmp_path, capsys):
    out = tmp_path / "ro.parquet"
    out.write_bytes(b"precious")
    out.chmod(0o444)
    try:
        assert main(["convert", str(calogan_store / "e.h5"), "-o", str(out)]) == 2
        assert "read-only; not replaced" in capsys.readouterr().err and out.read_bytes() == b"precious"
    finally:
        out.chmod(0o644)


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from pcloud.cli import files

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "cmd_geometry", interrupted)
    assert main(["geometry", "calogan"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "pcloud geometry: interrupted (Ctrl-C); unfinished outputs were removed"


def test_simulate_arguments_that_reach_the_code(tmp_path, capsys):
    out = str(tmp_path / "x.h5")
    for args, msg in ((["--particle", "999999", "--n", "5"], "--particle: the fast simulation showers"),
                      (["--particle", "e+", "--n", "5", "--seed", "-1"], "--seed: expected an integer >= 0"),
                      (["--particle", "e+", "--n", "5", "--energy", "1e300:1e301"], "parametrised for 0.01-10000"),
                      (["--particle", "e+", "--n", "1000000000"], "GiB of memory")):
        assert main(["simulate", "calogan", *args, "-o", out]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "internal error" not in err
    assert not (tmp_path / "x.h5").exists()


def test_string_truth_dataset_is_a_format_error(calogan_store, tmp_path, capsys):
    p = tmp_path / "s.h5"
    p.write_bytes((calogan_store / "e.h5").read_bytes())
    with h5py.File(p, "a") as f:
        g = f.require_group("pcloud_truth")
        g.create_dataset("comment", data=np.array([b"x"] * 300))
    assert main(["info", str(p)]) == 2
    assert "dataset 'pcloud_truth/comment': expected numbers" in capsys.readouterr().err


def test_truncated_root_file_is_one_line_naming_it(tmp_path, capsys):
    p = tmp_path / "cut.root"
    p.write_bytes(b"root" + b"\x00" * 200)
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cut.root" in err.splitlines()[0]


def test_info_json_turns_nan_into_null():
    from pcloud.core.jsonable import to_jsonable

    text = json.dumps(to_jsonable({"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.int64(3)}),
                      allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3}
    assert to_jsonable({"r": float("inf"), "_s": 1}, nonfinite="string", skip_private=True) == {"r": "inf"}
