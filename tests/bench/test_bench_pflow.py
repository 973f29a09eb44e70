"""``pcloud bench pflow`` in a tiny configuration, event subsetting and the CLI registration."""
import json

import numpy as np
import pytest

from pcloud.bench.pflow import PFLOW_MODES, PflowConfig, run_pflow
from pcloud.cli.main import build_parser

METHODS = ("pointnet_iterative", "pointnet_common", "dgcnn_iterative", "dgcnn_common", "event_pointnet",
           "oracle_iterative", "oracle_kinematic", "oracle_kinematic_cell", "rule_based", "dr_nearest", "random",
           "trivial")
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
    # error budget: lost energy by kind adds up to 1 - E-acc; the layer table covers the ATLAS-like layers
    for m in METHODS:
        r = on_disk["methods"][m]
        assert sum(r["energy_lost"].values()) == pytest.approx(1 - r["energy_weighted_accuracy"], abs=1e-9), m
        assert set(r["by_layer"]) <= {"EMB1", "EMB2", "EMB3", "TileBar0", "TileBar1", "TileBar2"}
        assert sum(b["n_cells"] for b in r["by_significance"].values()) == r["n_cells"]
    assert "## Error budget" in report and "By measured cell significance" in report
    assert "By calorimeter layer" in report and "| oracle_iterative | lost_wrong_track |" in report
    # the kinematic oracles: knowing the true kinematics is far from knowing the true deposits, and is no learned
    # method (never the goal's best method)
    assert "| oracle_kinematic_cell | f1 |" in report and on_disk["timings"]["kinematic_replicas_s"] > 0
    assert not res["goal"]["best_method"].startswith("oracle")
    for k in ("oracle_kinematic", "oracle_kinematic_cell"):
        assert ew["random"] + 0.2 < ew[k] < ew["oracle_iterative"] and ew[k] > ew["trivial"] + 0.2, k
        assert res["methods"][k]["f1"] > res["methods"]["random"]["f1"], k
    for p in on_disk["plots"]:
        assert (out / p).stat().st_size > 1000
    assert json.loads((out / "splits.json").read_text())["seed"] == 1


def test_modes_resolve():
    q = PflowConfig(quick=True).resolved()
    assert (q.n_events, q.epochs, q.ablation, q.max_points, q.seeds) == (600, 2, False, 128, 1)
    assert q.models == ["pointnet", "dgcnn"] and q.cells == "topo" and q.threshold == "val"
    m = PflowConfig(medium=True).resolved()
    assert m.mode == "medium" and (m.n_events, m.epochs, m.ablation, m.seeds) == (3000, 8, False, 3)
    assert m.seed_list == [1, 2, 3] and set(m.models) == {"pointnet", "dgcnn", "transformer", "gravnet"}
    assert m.fit_kwargs()["optimizer"] == "adamw" and m.fit_kwargs()["schedule"] == "cosine"
    lg = PflowConfig(large=True, seed=5).resolved()
    assert lg.mode == "large" and lg.seed_list == [5, 6, 7] and lg.models == ["pointnet"]
    legacy = PflowConfig(medium=True, recipe="legacy").resolved()
    assert (legacy.cells, legacy.loss, legacy.threshold, legacy.optimizer, legacy.schedule) == \
        ("all", "energy_weighted", None, "adam", "constant")
    assert PflowConfig(medium=True, threshold=0.4, loss="ce").resolved().segmenter_kwargs()["threshold"] == 0.4
    assert m.minutes("pointnet") == PFLOW_MODES["medium"]["model_minutes"]["pointnet"] and m.widths == "light"
    f = PflowConfig(n_events=50).resolved()
    assert f.mode == "full" and f.n_events == 50 and f.epochs == 15 and f.minutes("pointnet") is None
    assert PflowConfig(medium=True, n_events=100, ablation=False).resolved().ablation is False
    with pytest.raises(ValueError, match="quick and medium"):
        PflowConfig(quick=True, medium=True).resolved()
    with pytest.raises(ValueError, match="seeds"):
        PflowConfig(seeds=0).resolved()
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
    args = parser.parse_args(["bench", "pflow", "--large", "--seeds", "2", "--recipe", "legacy", "--models",
                              "transformer,gravnet"])
    assert args.large and args.seeds == 2 and args.recipe == "legacy" and args.models == "transformer,gravnet"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pflow", "--medium", "--quick"])


def test_seed_summary_and_goal_by_hand():
    from pcloud.bench.pflow.run import _goal, seed_summary

    def run(f1, ewa, share, dense_it):
        return {"f1": f1, "energy_weighted_accuracy": ewa, "charged_fraction_pred": share,
                "charged_fraction_true": 0.30, "n_tracks": 10,
                "dense": {"tracks": {"f1": dense_it, "energy_weighted_accuracy": dense_it, "n_tracks": 4},
                          "events": {"f1": 0.5}}}

    s = seed_summary([run(0.75, 0.90, 0.31, 0.6), run(0.85, 0.94, 0.29, 0.8), run(0.95, 0.95, 0.30, 0.7)])
    assert s["n_seeds"] == 3 and s["f1"] == pytest.approx(0.85) and s["n_tracks"] == 10
    assert s["spread"]["f1"]["std"] == pytest.approx(0.1) and s["spread"]["f1"]["values"] == [0.75, 0.85, 0.95]
    assert s["dense"]["tracks"]["f1"] == pytest.approx(0.7) and s["spread"]["dense.tracks.f1"]["max"] == 0.8
    assert "spread" not in seed_summary([run(0.7, 0.9, 0.3, 0.6)])
    g = _goal({"pointnet_iterative": s, "pointnet_common": seed_summary([run(0.6, 0.85, 0.2, 0.65)]),
               "rule_based": run(0.99, 0.99, 0.3, 0.99)})  # baselines never count as the best learned method
    assert g["best_method"] == "pointnet_iterative" and g["f1_ok"] and g["energy_weighted_accuracy_ok"]
    assert g["charged_share_ok"] and g["met"]
    assert g["iterative_vs_common_dense"]["pointnet"]["iterative_better"] is True


def _tiny(tmp_path, name, **kw):
    cfg = dict(out=str(tmp_path / name), quick=True, n_events=40, epochs=1, max_points=48, device="cpu",
               models=["pointnet"], event_model=False, plots=False, write_mltree=False, dense_fraction=0.5)
    cfg.update(kw)
    return run_pflow(PflowConfig(**cfg), log=lambda s: None)


@pytest.mark.slow
def test_run_pflow_seeds_mean_and_spread(tmp_path):
    """Two training seeds: every learned method reports the seeds' mean and spread, the training record keeps each
    seed's run, the ensemble of the seeds is a method of its own; baselines are trained once (no spread)."""
    _tiny(tmp_path, "s2", seeds=2)
    res = json.loads((tmp_path / "s2" / "results.json").read_text())
    assert res["config"]["seeds"] == 2 and res["config"]["recipe"] == "new"
    tr = res["training"]["pointnet"]
    assert [t["seed"] for t in tr["seeds"]] == [1, 2] and tr["seed"] == 1
    assert all(t["cells"] == "topo" and t["loss"] == "ce" and isinstance(t["threshold"], float) for t in tr["seeds"])
    for name in ("pointnet_iterative", "pointnet_common"):
        r = res["methods"][name]
        assert r["n_seeds"] == 2
        sp = r["spread"]["f1"]
        assert len(sp["values"]) == 2 and sp["min"] <= sp["mean"] <= sp["max"]
        assert r["f1"] == pytest.approx(np.mean(sp["values"]), abs=1e-12)
        assert sp["std"] == pytest.approx(np.std(sp["values"], ddof=1), abs=1e-12)
        assert r["energy_weighted_accuracy"] == pytest.approx(np.mean(r["spread"]["energy_weighted_accuracy"]
                                                                     ["values"]), abs=1e-12)
    assert res["training"]["pointnet_ensemble"]["members_seeds"] == [1, 2]
    assert {"pointnet_ensemble_iterative", "pointnet_ensemble_common"} <= set(res["methods"])
    assert res["methods"]["pointnet_ensemble_iterative"]["n_seeds"] == 1
    assert res["methods"]["dr_nearest"]["n_seeds"] == 1 and "spread" not in res["methods"]["dr_nearest"]
    assert res["all_conserve"] is True
    report = (tmp_path / "s2" / "report.md").read_text()
    assert "±" in report and "pointnet_ensemble" in report and "## Goal (issue 11)" in report


@pytest.mark.slow
def test_run_pflow_legacy_recipe(tmp_path):
    """--recipe legacy: every cell of the cone, the energy-weighted loss, Adam at a constant rate, threshold 0.5."""
    res = _tiny(tmp_path, "legacy", recipe="legacy")
    tr = res["training"]["pointnet"]
    assert (tr["cells"], tr["loss"], tr["threshold"]) == ("all", "energy_weighted", None)
    assert all(h["lr"] == pytest.approx(1e-3) for h in tr["history"])  # constant rate
    assert "spread" not in res["methods"]["pointnet_iterative"] and "pointnet_ensemble" not in res["training"]
    new = _tiny(tmp_path, "new")
    lrs = [h["lr"] for h in new["training"]["pointnet"]["history"]]
    assert new["training"]["pointnet"]["cells"] == "topo" and lrs[-1] < 1e-3  # cosine decay


def test_recipe_resolution():
    """Explicit fields win over the recipe; "recipe" thresholds resolve; unknown recipes and models are refused."""
    c = PflowConfig(quick=True, cells="all", optimizer="adam", weight_decay=0.0).resolved()
    assert (c.cells, c.optimizer, c.weight_decay, c.schedule, c.loss) == ("all", "adam", 0.0, "cosine", "ce")
    assert PflowConfig(quick=True, threshold=None).resolved().threshold is None  # explicit 0.5
    assert PflowConfig(quick=True, recipe="legacy", threshold="val").resolved().threshold == "val"
    assert PflowConfig(quick=True, recipe="legacy", loss="mixed").resolved().loss == "mixed"
    q = PflowConfig(quick=True, models=["gravnet"]).resolved()
    assert q.widths == "light" and q.arch("gravnet") == {}
    from pcloud.pflow.learned import WIDTHS

    assert WIDTHS["light"]["gravnet"]["k"] == 12 and WIDTHS["light"]["dgcnn"]["k"] == 8
    with pytest.raises(ValueError, match="recipe"):
        PflowConfig(recipe="newest").resolved()
    with pytest.raises(ValueError, match="unknown models"):
        PflowConfig(models=["pointnet++"]).resolved()
    with pytest.raises(ValueError, match="quick and large"):
        PflowConfig(quick=True, large=True).resolved()


def test_learning_curve_figure_has_one_panel_per_model(tmp_path):
    """Two trained models: two panels side by side, no empty third one."""
    import matplotlib.image as mpimg

    from pcloud.plots.pflow import plot_learning_curves

    h = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.1 / (e + 1)} for e in range(4)]
    training = {m: {"model": "pointnet", "loss": "ce", "seeds": [{"seed": 1, "history": h, "best_epoch": 3}]}
                for m in ("pointnet", "event_pointnet")}
    path = plot_learning_curves(training, tmp_path / "lc.png")
    height, width = mpimg.imread(path).shape[:2]
    assert width == round(5.2 * 2 * 90) and height == round(3.6 * 90)
    one = plot_learning_curves({"pointnet": training["pointnet"]}, tmp_path / "lc1.png")
    assert mpimg.imread(one).shape[1] == round(5.2 * 90)


@pytest.fixture
def cli_cfg(monkeypatch):
    """``cli_cfg(*argv)``: the resolved PflowConfig that ``pcloud bench pflow ARGV`` runs (run_pflow stubbed)."""
    import pcloud.bench.pflow as bp

    seen = {}
    monkeypatch.setattr(bp, "run_pflow", lambda cfg: seen.update(cfg=cfg) or {"all_conserve": True})

    def cfg_of(*argv):
        args = build_parser().parse_args(["bench", "pflow", *argv])
        assert args.func(args) == 0
        return seen["cfg"].resolved()

    return cfg_of


def test_cli_loss_options_reach_the_config(cli_cfg):
    """--loss / --energy-share of bench pflow reach PflowConfig; the CLI's loss list is the losses module's."""
    from pcloud.cli.bench import PFLOW_LOSSES
    from pcloud.nn.losses import SEG_LOSSES

    assert tuple(PFLOW_LOSSES) == tuple(SEG_LOSSES)
    cfg = cli_cfg("--quick", "--loss", "mixed", "--energy-share", "0.3")
    assert cfg.loss == "mixed" and cfg.energy_share == 0.3
    assert cfg.segmenter_kwargs()["energy_share"] == 0.3
    assert cli_cfg("--quick").loss == "ce"  # the recipe's
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "pflow", "--loss", "l2"])
    with pytest.raises(ValueError, match="energy_share must be in"):  # refused before any event is generated
        PflowConfig(quick=True, loss="mixed", energy_share=1.5).resolved()


def test_cli_widths_and_minutes_reach_the_config(cli_cfg):
    """--widths full drops the CPU modes' light architectures and gives the segmenters the model classes' widths;
    --minutes sets one budget for every model or replaces the mode's budget of the named models only."""
    from pcloud.bench.pflow.config import PFLOW_MODES
    from pcloud.cli.bench import parse_minutes

    cfg_of = cli_cfg

    c = cfg_of("--medium")
    assert c.widths == "light" and c.minutes("pointnet") == 3.0 and cfg_of("--large").widths == "small"
    from pcloud.bench.pflow.run import _Run

    assert _Run._segmenter(type("R", (), {"cfg": c})(), "dgcnn", 1).model_cfg["k"] == 8  # the light DGCNN
    c = cfg_of("--medium", "--widths", "full", "--minutes", "pointnet=4.5,gravnet=0.5")
    assert c.widths == "full" and c.arch("dgcnn") == {} and c.segmenter_kwargs()["widths"] == "full"
    assert _Run._segmenter(type("R", (), {"cfg": c})(), "dgcnn", 1).model_cfg["k"] == 16
    assert (c.minutes("pointnet"), c.minutes("gravnet"), c.minutes("dgcnn")) == (4.5, 0.5, 2.0)  # dgcnn: the mode's
    assert c.patience == 3 and cfg_of("--quick", "--patience", "8").patience == 8
    assert cfg_of("--large").patience == 6 and cfg_of("--large", "--patience", "2").patience == 2
    with pytest.raises(ValueError, match="patience must be"):
        PflowConfig(quick=True, patience=0).resolved()
    c = cfg_of("--large", "--minutes", "2.5")
    assert c.minutes("pointnet") == c.minutes("transformer") == c.minutes("event_pointnet") == 2.5
    assert cfg_of("--large").minutes("pointnet") == PFLOW_MODES["large"]["model_minutes"]["pointnet"]
    assert parse_minutes(None) == (None, None) and parse_minutes("dgcnn=1, pointnet=2") == (
        None, {"dgcnn": 1.0, "pointnet": 2.0})
    for bad, match in (("pointnet=x", "NAME=MIN pairs"), ("3,4", "NAME=MIN pairs"), ("pointnet=1=2", "NAME=MIN")):
        with pytest.raises(ValueError, match=match):
            parse_minutes(bad)
    with pytest.raises(ValueError, match="budgets for unknown models"):
        PflowConfig(quick=True, model_minutes={"pointnett": 1.0}).resolved()
    with pytest.raises(ValueError, match="must be > 0 minutes"):
        PflowConfig(quick=True, max_minutes=0.0).resolved()
    with pytest.raises(ValueError, match="widths must be"):
        PflowConfig(quick=True, widths="huge").resolved()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "pflow", "--widths", "huge"])


def test_cli_max_points_and_kinematic_replicas_reach_the_config(cli_cfg):
    """--max-points N truncates the track clouds at N points, 0 keeps every point (the segmenter gets None);
    --kinematic-replicas sets the replicas of the kinematic oracles (0: none); negative values are named; --ragged
    selects the ragged path, --residual-clouds the residual training clouds."""
    from pcloud.bench.pflow.run import _Run

    cfg_of = cli_cfg

    def seg(c):
        return _Run._segmenter(type("R", (), {"cfg": c})(), "pointnet", 1)

    c = cfg_of("--large")  # the large, medium and full modes keep every point; quick cuts at 128
    assert c.max_points == 0 and seg(c).max_points is None and c.kinematic_replicas == 16
    assert seg(cfg_of("--quick")).max_points == 128 and cfg_of("--medium").max_points == 0
    c = cfg_of("--large", "--max-points", "256", "--kinematic-replicas", "4")
    assert c.max_points == 256 and seg(c).max_points == 256 and c.kinematic_replicas == 4
    assert seg(cfg_of("--quick", "--max-points", "0")).max_points is None
    assert seg(cfg_of("--large")).ragged is True and seg(cfg_of("--large", "--no-ragged")).ragged is False
    assert seg(cfg_of("--medium")).ragged is False and seg(cfg_of("--medium", "--ragged")).ragged is True
    assert seg(cfg_of("--large")).residual_clouds is False
    assert seg(cfg_of("--quick", "--residual-clouds")).residual_clouds is True
    with pytest.raises(ValueError, match="max_points must be >= 0"):
        PflowConfig(quick=True, max_points=-1).resolved()
    with pytest.raises(ValueError, match="kinematic_replicas must be >= 0"):
        PflowConfig(quick=True, kinematic_replicas=-2).resolved()


@pytest.mark.parametrize("model", ["pointnet", "dgcnn", "transformer", "gravnet"])
def test_full_widths_build_the_larger_models_and_survive_save_load(model, tmp_path):
    """widths="full" builds each per-track model at the classes' widths (more parameters than "small"), a forward
    pass gives finite per-point logits, and save / load keeps the widths."""
    import torch

    from pcloud.data.normalise import Normaliser
    from pcloud.data.point_features import feature_columns
    from pcloud.pflow.learned import WIDTHS, FocalTrackSegmenter

    small = FocalTrackSegmenter(model=model, device="cpu", widths="small")
    full = FocalTrackSegmenter(model=model, device="cpu", widths="full")
    assert full.model_cfg == WIDTHS["full"][model] and full.n_params > 1.5 * small.n_params
    if model in ("dgcnn", "gravnet"):  # a single entry still overrides
        assert FocalTrackSegmenter(model=model, device="cpu", widths="full", k=4).model_cfg["k"] == 4
    with pytest.raises(ValueError, match="widths must be one of"):
        FocalTrackSegmenter(model=model, widths="huge")
    cols = feature_columns(full.features)
    n = 24
    x = torch.randn(2, n, len(cols))
    batch = {"x": x, "pos": torch.randn(2, n, 3) * 100, "mask": torch.ones(2, n, dtype=torch.bool),
             "energy": x[..., 0].abs(), "cell_mask": torch.ones(2, n, dtype=torch.bool)}
    with torch.no_grad():
        logits = full.model.eval()(batch)["seg_logits"]
    assert logits.shape == (2, n, 2) and torch.isfinite(logits).all()
    full.normaliser = Normaliser(list(full.features), np.zeros(len(cols)), np.ones(len(cols)))
    full.save(tmp_path / "seg.pt")
    back = FocalTrackSegmenter.load(tmp_path / "seg.pt", device="cpu")
    assert back.widths == "full" and back.n_params == full.n_params


def test_cli_features_reach_the_segmenters(cli_cfg):
    """--features: the recipe's default (JetPointNet encoding + cell neighbourhoods), 'jetpointnet' (without them,
    also the legacy recipe's), or a list of names checked before anything runs."""
    from pcloud.bench.pflow.run import _Run
    from pcloud.data.point_features import JETPOINTNET_FEATURES, NEIGHBOUR_FEATURES

    def features(*argv):
        c = cli_cfg(*argv)
        return _Run._segmenter(type("R", (), {"cfg": c})(), "pointnet", 1).features

    assert features("--quick") == JETPOINTNET_FEATURES + NEIGHBOUR_FEATURES
    assert features("--quick", "--features", "jetpointnet") == JETPOINTNET_FEATURES
    assert features("--quick", "--recipe", "legacy") == JETPOINTNET_FEATURES
    assert features("--quick", "--features", "type_onehot, delta_r,local_max") == ["type_onehot", "delta_r",
                                                                                     "local_max"]
    with pytest.raises(ValueError, match="--features: .*unknown feature 'delta_rr'"):
        cli_cfg("--quick", "--features", "type_onehot,delta_rr")
