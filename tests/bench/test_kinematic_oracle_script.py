"""scripts/kinematic_oracle_convergence.py on a few quick-mode events: both oracles per replica count, the effective
replicas per significance bin, and a bad replica count is one clear line."""
import json

import pytest

from helpers.scripts import load_script


@pytest.mark.slow
def test_convergence_script_on_quick_events(tmp_path, capsys):
    mod = load_script("kinematic_oracle_convergence")
    out = tmp_path / "ko.json"
    assert mod.main(["--quick", "--events", "40", "--replicas", "1", "4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["mode"] == "quick" and set(res["replicas"]) == {"1", "4"} and res["n_cells"] > 100
    for k, row in res["replicas"].items():
        for name in ("oracle_kinematic", "oracle_kinematic_cell"):
            r = row[name]
            assert 0 < r["f1"] < 1 and 0.3 < r["energy_weighted_accuracy"] < 1
            assert sum(r["energy_lost"].values()) == pytest.approx(1 - r["energy_weighted_accuracy"], abs=1e-9)
        eff = [v for v in row["effective_replicas_median"].values() if v is not None]
        assert eff and all(1.0 <= v <= int(k) + 1e-9 for v in eff)
    # with one replica the weights have nothing to weigh: both estimates are the same decision
    one = res["replicas"]["1"]
    assert one["oracle_kinematic"]["f1"] == pytest.approx(one["oracle_kinematic_cell"]["f1"], abs=1e-12)
    assert "K=  4 oracle_kinematic_cell" in capsys.readouterr().out
    assert mod.main(["--quick", "--replicas", "0"]) == 2
    assert "--replicas must be >= 1" in capsys.readouterr().err
