"""``pcloud bench pflow`` in a tiny configuration, event subsetting and the CLI registration."""
import json

import pytest

from pcloud.bench.pflow import PFLOW_MODES, PflowConfig, run_pflow
from pcloud.cli.main import build_parser

METHODS = ("pointnet_iterative", "pointnet_common", "dgcnn_iterative", "dgcnn_common", "event_pointnet",
           "oracle_iterative", "rule_based", "dr_nearest", "random", "trivial")
ABLATION = ("pointnet_binary_ce_iterative", "pointnet_hard_focal_iterative")


@pytest.mark.slow
def test_run_pflow_tiny(tmp_path):
    cfg = PflowConfig(out=str(tmp_path / "pf"), quick=True, n_events=60, epochs=1, max_points=64, n_displays=1,
                      device="cpu", ablation=True, event_max_points=128, dense_fraction=0.5)
    res = run_pflow(cfg, log=lambda s: None)
    out = tmp_path / "pf"
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["ablation"]) == set(ABLATION)
    for m in METHODS + ABLATION:
        r = on_disk["methods"][m]
        for k in ("f1", "iou", "energy_weighted_accuracy", "track_energy_resolution", "neutral_energy_recovered",
                  "by_dr"):
            assert k in r, (m, k)
        assert r["conservation_ok"] is True, m
        assert set(r["by_dr"]) == {"0-0.05", "0.05-0.1", "0.1-0.2", ">0.2"}
        d = r["dense"]
        assert d["dr"] == 0.1
        # the dense and isolated summaries partition the test tracks and events
        assert d["tracks"]["n_tracks"] + d["isolated_tracks"]["n_tracks"] == r["n_tracks"]
        assert d["events"]["n_events"] + d["isolated_events"]["n_events"] == r["n_events"]
        # events without a track (DeltaR = inf) fall in no bin
        assert 0 < sum(b["n_events"] for b in r["by_event_dr"].values()) <= r["n_events"]
    # the dense component populates DeltaR < 0.1
    smp = on_disk["sample"]
    assert smp["n_dense_events_generated"] == 30 and smp["test_tracks_dr_lt_cut"] > 0
    assert on_disk["methods"]["oracle_iterative"]["dense"]["tracks"]["n_tracks"] == smp["test_tracks_dr_lt_cut"]
    acc = on_disk["acceptance"]
    assert acc["inference_conserves"] is True and acc["mltree_roundtrip_ok"] is True
    assert set(acc["learned_beats_baselines"]) >= {"pointnet_iterative", "event_pointnet"}
    assert on_disk["all_conserve"] is True and "config" in on_disk
    # the oracle reproduces the truth inside the cones: it beats every baseline in energy-weighted accuracy
    ew = {m: res["methods"][m]["energy_weighted_accuracy"] for m in METHODS}
    assert ew["oracle_iterative"] > 0.95
    assert all(ew["oracle_iterative"] > ew[m] for m in ("rule_based", "dr_nearest", "random", "trivial"))
    assert res["mltree_roundtrip"]["ok"] is True
    report = (out / "report.md").read_text()
    assert "rule_based" in report and "MLTree round trip" in report
    assert "Dense environments: DeltaR(track, nearest other particle) < 0.1" in report
    assert "Target / loss ablation" in report and "Where each method fails" in report
    for p in on_disk["plots"]:
        assert (out / p).stat().st_size > 1000
    assert json.loads((out / "splits.json").read_text())["seed"] == 1


def test_modes_resolve():
    q = PflowConfig(quick=True).resolved()
    assert (q.n_events, q.epochs, q.ablation, q.max_points) == (600, 2, False, 128)
    m = PflowConfig(medium=True).resolved()
    assert m.mode == "medium" and (m.n_events, m.epochs, m.ablation) == (3000, 8, True)
    assert m.minutes("pointnet") == PFLOW_MODES["medium"]["model_minutes"]["pointnet"] and m.arch("dgcnn")["k"] == 8
    f = PflowConfig(n_events=50).resolved()
    assert f.mode == "full" and f.n_events == 50 and f.epochs == 15 and f.minutes("pointnet") is None
    assert PflowConfig(medium=True, n_events=100, ablation=False).resolved().ablation is False
    with pytest.raises(ValueError, match="quick and medium"):
        PflowConfig(quick=True, medium=True).resolved()
    with pytest.raises(ValueError, match="dense_fraction"):
        PflowConfig(dense_fraction=2.0).resolved()


def test_cli_has_the_pflow_command():
    parser = build_parser()
    args = parser.parse_args(["bench", "pflow", "--quick", "--out", "x", "--device", "cpu", "--events", "100",
                              "--epochs", "2"])
    assert args.quick and args.out == "x" and args.device == "cpu" and args.events == 100 and args.epochs == 2
    assert callable(args.func)
    args = parser.parse_args(["bench", "pflow", "--medium", "--no-ablation", "--dense-fraction", "0.4"])
    assert args.medium and not args.quick and args.no_ablation and args.dense_fraction == 0.4
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pflow", "--medium", "--quick"])
