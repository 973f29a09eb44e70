"""pcloud train / evaluate / predict end to end on small files; model bundles load safely or refuse clearly."""
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pcloud.cli.main import main
from pcloud.io.calogan import read_calogan
from pcloud.pipeline.bundle import BundleError, load_bundle, read_bundle_meta
from pcloud.pipeline.config import run_config
from pcloud.pipeline.evaluate import evaluate, predict
from pcloud.pipeline.train import train

QUICK = ["train.epochs=2", "train.batch_size=32", "data.max_points=48", "train.shuffle_buffer=64"]


@pytest.fixture(scope="module")
def bundle(calogan_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    cfg = run_config(None, QUICK, data=[f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"], model="pointnet")
    res = train(cfg, out, log=lambda s: None)
    return out, res


def test_train_writes_a_bundle_and_test_results(bundle):
    out, res = bundle
    meta = read_bundle_meta(out)
    assert meta["task"] == "id" and meta["data"]["classes"] == ["e+", "pi+"] and meta["model"]["name"] == "pointnet"
    assert meta["geometry"]["name"] == "calogan" and meta["normaliser"]["features"] == ["x", "y", "z", "layer",
                                                                                          "log_energy"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["split"] == "test" and 0.5 < saved["metrics"]["auc"] <= 1.0  # e+ vs pi+ is easy
    assert saved["metrics"]["n_events"] == sum(json.loads((out / "splits.json").read_text())["counts"]["test"]
                                               for _ in [0])
    assert (out / "runs" / "last.pt").exists() and (out / "rejection.png").exists()


def test_evaluate_and_predict_on_new_files(bundle, calogan_files, tmp_path):
    out, _ = bundle
    res = evaluate(out, [f"{calogan_files['e2']}:e+", f"{calogan_files['pi2']}:pi+"], tmp_path / "E",
                   log=lambda s: None)
    assert res["metrics"]["n_events"] == 120 and "auc" in res["metrics"]
    assert json.loads((tmp_path / "E" / "results.json").read_text())["metrics"]["auc"] == res["metrics"]["auc"]
    info = predict(out, str(calogan_files["e2"]), tmp_path / "p.parquet", log=lambda s: None)
    t = pq.read_table(tmp_path / "p.parquet").to_pydict()
    assert info["n_events"] == 60 and len(t["p_e+"]) == 60
    np.testing.assert_allclose(np.add(t["p_e+"], t["p_pi+"]), 1.0, rtol=1e-6)
    # source_event joins back to the file's own event numbers and true energies
    s = read_calogan(calogan_files["e2"])
    np.testing.assert_array_equal(np.sort(t["source_event"]), s.truth["event_number"])
    np.testing.assert_allclose(np.asarray(t["energy_gev"]), s.truth["energy_gev"][np.asarray(t["source_event"])],
                               rtol=1e-6)
    # the same bundle reloaded gives the same scores
    again = predict(out, str(calogan_files["e2"]), tmp_path / "q.parquet", log=lambda s: None)
    assert again["n_events"] == 60
    np.testing.assert_array_equal(pq.read_table(tmp_path / "q.parquet")["p_e+"].to_numpy(), t["p_e+"])


def _copy_bundle(src, dst):
    dst.mkdir()
    for name in ("bundle.json", "weights.pt"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_corrupted_and_foreign_bundles_are_refused(bundle, tmp_path):
    out, _ = bundle
    b = _copy_bundle(out, tmp_path / "flip")
    w = bytearray((b / "weights.pt").read_bytes())
    w[len(w) // 2] ^= 0xFF
    (b / "weights.pt").write_bytes(bytes(w))
    with pytest.raises(BundleError, match="corrupted bundle: the weights differ"):
        load_bundle(b)
    b = _copy_bundle(out, tmp_path / "old")
    meta = json.loads((b / "bundle.json").read_text())
    meta["pcloud_version"] = "0.0.9"
    (b / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="made by pcloud 0.0.9, this is pcloud"):
        load_bundle(b)
    b = _copy_bundle(out, tmp_path / "trunc")
    (b / "bundle.json").write_text((out / "bundle.json").read_text()[:200])
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(b)
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_bundle",))


def test_crafted_pickle_in_a_bundle_never_runs(bundle, tmp_path, monkeypatch):
    out, _ = bundle
    monkeypatch.chdir(tmp_path)
    b = _copy_bundle(out, tmp_path / "evil")
    torch.save({"model": _Boom()}, b / "weights.pt")  # a real torch file whose pickle would run a command
    meta = json.loads((b / "bundle.json").read_text())  # an attacker can also fix the recorded hash
    import hashlib
    meta["weights"].update(bytes=(b / "weights.pt").stat().st_size,
                           sha256=hashlib.sha256((b / "weights.pt").read_bytes()).hexdigest())
    (b / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="refused to load|not a readable torch checkpoint"):
        load_bundle(b)
    assert not (tmp_path / "pwned_by_bundle").exists()


def test_dense_model_and_energy_task(calogan_files, tmp_path):
    cfg = run_config(None, QUICK, data=[f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"], model="cnn3d",
                     task="id+energy")
    res = train(cfg, tmp_path / "D", log=lambda s: None)
    m = res["metrics"]
    # classes with fewer than 30 test events get no per-class resolution; the pooled one is always there
    assert "auc" in m and "all" in m["energy"] and m["energy"]["all"]["n"]
    b = load_bundle(tmp_path / "D")
    batch = b.batcher()  # images rebuilt from the cells of the store
    assert b.family == "dense" and batch.kind == "dense"
    cfg = run_config(None, QUICK + ["data.features=[x, y, z, log_energy]"],
                     data=[f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"], task="energy")
    res = train(cfg, tmp_path / "En", log=lambda s: None)
    assert "auc" not in res["metrics"] and "fit" in res["metrics"]["energy"]["all"]


def test_cli_bad_input_is_one_line_and_leaves_nothing(calogan_files, tmp_path, capsys):
    out = tmp_path / "B"
    rc = main(["train", "--data", f"{calogan_files['e']}:electronz", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown label 'electronz'" in err
    assert not (out / "bundle.json").exists()
    rc = main(["train", "--data", f"{calogan_files['e']}:e+", "--out", str(out), "--set", "train.epochs=0"])
    assert rc == 2 and "train.epochs: expected a positive integer" in capsys.readouterr().err
    rc = main(["train", "--data", f"{calogan_files['e']}:e+", "--out", str(out)])
    assert rc == 2 and "needs at least two classes" in capsys.readouterr().err
    assert not (out / "bundle.json").exists()
    rc = main(["evaluate", str(tmp_path), "--data", str(calogan_files["e"]), "--out", str(tmp_path / "E")])
    assert rc == 2 and "not a pcloud model bundle" in capsys.readouterr().err
    rc = main(["train", "--data", f"{calogan_files['e']}:e+", "--out", str(out), "--set", "data.colour=1"])
    assert rc == 2 and "unknown key(s) ['data.colour']" in capsys.readouterr().err


def test_torch_state_of_bundle_matches_model(bundle):
    out, _ = bundle
    b = load_bundle(out)
    state = torch.load(out / "weights.pt", weights_only=True)
    assert set(state) == set(b.model.state_dict())
