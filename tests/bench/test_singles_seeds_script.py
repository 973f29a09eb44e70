"""scripts/singles_seeds.py: AUC mean / std over runs and the combined paired point-vs-dense difference, checked on
hand-made results files."""
from __future__ import annotations

import json
import math

import pytest
from helpers.scripts import load_script


@pytest.fixture(scope="module")
def seeds():
    return load_script("singles_seeds")


def _run(path, seed, auc_p, auc_d, diff, std):
    task = {"models": {"pointnet": {"auc": auc_p, "n_params": 10}, "densenet": {"auc": auc_d, "n_params": 20}},
            "paired_point_vs_dense": {"point": "pointnet", "dense": "densenet", "n_boot": 500,
                                      "difference": {"0.6": diff[0], "0.9": diff[1]},
                                      "bootstrap_std": {"0.6": std[0], "0.9": std[1]},
                                      "fraction_point_better": {"0.6": 0.5, "0.9": 0.5}}}
    path.write_text(json.dumps({"tasks": {"e_vs_gamma": task}, "config": {"seed": seed}, "device": "cpu"}))
    return path


def test_summary_by_hand(seeds, tmp_path, capsys):
    files = [_run(tmp_path / "a.json", 1, 0.70, 0.69, (0.10, -0.05), (0.06, 0.03)),
             _run(tmp_path / "b.json", 2, 0.72, 0.70, (0.00, -0.07), (0.08, 0.04))]
    task, runs = seeds.load_runs(files)
    s = seeds.summarise(runs)
    assert task == "e_vs_gamma" and s["seeds"] == [1, 2]
    assert s["auc"]["pointnet"]["mean"] == pytest.approx(0.71)
    assert s["auc"]["pointnet"]["std"] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of 0.70, 0.72
    c = s["paired"]["0.6"]
    assert c["mean"] == pytest.approx(0.05) and c["error"] == pytest.approx(0.05)  # sqrt(0.06^2 + 0.08^2) / 2
    assert c["at_or_above"]
    c9 = s["paired"]["0.9"]  # -0.06 +- 0.025: more than one error below zero
    assert c9["mean"] == pytest.approx(-0.06) and c9["error"] == pytest.approx(0.025) and not c9["at_or_above"]
    assert seeds.main([str(f) for f in files] + ["--out", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| 0.9 | -0.050 ± 0.030, -0.070 ± 0.040 | -0.060 ± 0.025 |" in text and "| NO |" in text
    assert capsys.readouterr().out == text
    with pytest.raises(ValueError, match="at least 2 runs"):
        seeds.load_runs(files[:1])
    with pytest.raises(ValueError, match="no task 'e_vs_pi'"):
        seeds.load_runs(files, "e_vs_pi")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: expected the results.json of a pcloud bench singles run"):
        seeds.load_runs([files[0], tmp_path / "bad.json"])
    with pytest.raises(ValueError, match="missing.json: expected the results.json"):
        seeds.load_runs([files[0], tmp_path / "missing.json"])
