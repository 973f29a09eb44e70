"""pcloud tune (optuna scan, resumable sqlite study) and pcloud train --repeat K (every metric with its spread)."""
import json

import pytest

from pcloud.cli.main import main

pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")

SCAN = """
base: ["train.epochs=2", "train.patience=2", "train.batch_size=32", "data.max_points=24", "train.shuffle_buffer=64"]
metric: val_loss
direction: minimize
pruner: median
space:
  train.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  model.options.channels: {type: categorical, choices: [[8, 16], [16, 32]]}
"""


def test_scan_runs_prunes_and_resumes(ops_files, tmp_path, capsys):
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(SCAN)
    data = ["--data", f"{ops_files['e']}:e+", "--data", f"{ops_files['pi']}:pi+"]
    assert main(["tune", str(cfg), "--trials", "4", "--out", str(tmp_path / "S"), *data]) == 0
    s = json.loads((tmp_path / "S" / "summary.json").read_text())
    assert s["n_trials"] == 4 and s["best_trial"] is not None and s["best_value"] > 0
    assert set(s["best_params"]) == {"train.lr", "model.options.channels"}
    # resumed from the sqlite study: 2 more trials join the 4 (TPE continues from the stored ones)
    assert main(["tune", str(cfg), "--trials", "2", "--out", str(tmp_path / "S"), *data]) == 0
    s2 = json.loads((tmp_path / "S" / "summary.json").read_text())
    assert s2["n_trials"] == 6 and [t["trial"] for t in s2["trials"]] == list(range(6))
    assert s2["n_complete"] + s2["n_pruned"] == 6
    assert "best trial" in capsys.readouterr().out
    assert (tmp_path / "S" / "summary.md").read_text().count("\n| ") >= 7


def test_pruning_stops_a_bad_trial():
    import optuna

    from pcloud.tune import suggest

    st = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    for _ in range(3):  # three good complete trials
        t = st.ask()
        for e in range(3):
            t.report(1.0, e)
        st.tell(t, 1.0)
    t = st.ask()
    suggest(t, {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    t.report(10.0, 0)
    t.report(10.0, 1)
    assert t.should_prune()


def test_train_repeat_reports_mean_and_spread(ops_files, tmp_path):
    out = tmp_path / "R"
    assert main(["train", "--data", f"{ops_files['e']}:e+", "--data", f"{ops_files['pi']}:pi+", "--epochs", "1",
                 "--set", "train.batch_size=32", "--set", "data.max_points=24", "--repeat", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    r = json.loads((out / "repeat.json").read_text())
    assert r["seeds"] == [5, 6] and (out / "seed_5" / "bundle.json").exists() and (out / "seed_6" / "bundle.json").exists()
    auc = r["metrics"]["metrics.auc"]
    assert len(auc["values"]) == 2 and auc["std"] >= 0 and min(auc["values"]) <= auc["mean"] <= max(auc["values"])
    assert "| auc |" in (out / "repeat.md").read_text()


def test_shipped_scan_file_is_valid():
    """pcloud/configs/tune.yaml: every key of its space is a recipe key and every choice / bound is accepted."""
    from pathlib import Path

    import pcloud
    from pcloud.pipeline.config import run_config
    from pcloud.train.trainer import OPTIMIZERS, SCHEDULES
    from pcloud.tune import load_scan

    scan = load_scan(Path(pcloud.__file__).parent / "configs" / "tune.yaml")
    assert {"train.lr", "train.optimizer", "train.schedule", "train.weight_decay"} <= set(scan["space"])
    for key, spec in scan["space"].items():
        values = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for v in values:
            cfg = run_config(None, [*scan["base"], f"{key}={v}"], data=["e.h5:e+"]).to_dict()
            section, name = key.split(".", 1)
            assert cfg[section][name] == v, (key, v)
    assert set(scan["space"]["train.optimizer"]["choices"]) <= set(OPTIMIZERS)
    assert set(scan["space"]["train.schedule"]["choices"]) <= set(SCHEDULES)
