"""End-to-end checks of ``pcloud bench singles`` on tiny configurations."""
import json

import numpy as np
import pytest
from scipy import stats

from pcloud.bench.singles import SinglesConfig, run_singles
from pcloud.bench.singles.tasks import TASKS, build_dataset, em_scale


def test_gamma_pi0_selection_and_matched_spectra():
    d = build_dataset(TASKS["gamma_vs_pi0"], 150, seed=3, mode="visible", log=lambda m: None)
    lab = d.truth["label"]
    assert np.bincount(lab).tolist() == [150, 150]
    # pi0 passed the seed-001 opening-angle cut; photons carry no opening angle
    from pcloud.sim.showers import simulate_showers
    raw = simulate_showers("clic", "pi0", 300, energy_gev=(10, 510), seed=5)
    assert (raw.truth["opening_angle_rad"] >= 0.01).any()  # the cut is not empty ...
    sel = TASKS["gamma_vs_pi0"].selection(raw)
    assert np.all(raw.truth["opening_angle_rad"][sel] < 0.01)  # ... and it is applied
    # photons are generated with the selected pi0 spectrum, so energy alone does not separate the classes
    e = d.truth["energy_gev"]
    assert stats.ks_2samp(e[lab == 0], e[lab == 1]).pvalue > 0.01
    assert len(np.unique(d.truth["event_number"])) == d.n_events


def test_chunked_selection_builds_the_same_kind_of_sample():
    """Selection applied chunk by chunk (bounded memory): every kept event passes, classes are full, the matched
    spectrum still holds; without a selection the chunk size does not change the sample at all."""
    # the CLIC e/pi selection (HCAL/ECAL < 0.1) reads the images, so it can be re-checked on the final sample
    # (the pi0 opening angle cannot: concatenating with photons drops that truth key)
    task = TASKS["e_vs_pi_clic"]
    d = build_dataset(task, 40, seed=4, mode="visible", log=lambda m: None, chunk=1000)
    assert np.bincount(d.truth["label"]).tolist() == [40, 40]
    assert task.selection(d).all()
    lab, e = d.truth["label"], d.truth["energy_gev"]
    assert stats.ks_2samp(e[lab == 0], e[lab == 1]).pvalue > 0.01
    # matched-spectrum class split over chunks: each chunk takes its own slice of the drawn energies (40 draws from
    # 40 reference energies give ~25 distinct values; reusing the first slice of 16 would give at most 16)
    g = build_dataset(TASKS["gamma_vs_pi0"], 40, seed=4, mode="visible", log=lambda m: None, chunk=16)
    assert len(np.unique(g.truth["energy_gev"][g.truth["label"] == 0])) > 16
    a = build_dataset(TASKS["e_vs_gamma"], 80, seed=2, log=lambda m: None, chunk=16)
    b = build_dataset(TASKS["e_vs_gamma"], 80, seed=2, log=lambda m: None)
    for k in a.images:
        np.testing.assert_array_equal(a.images[k], b.images[k])
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        build_dataset(TASKS["e_vs_gamma"], 10, seed=2, log=lambda m: None, chunk=0)


def test_em_scale_calibrates_electrons():
    from pcloud.sim.showers import simulate_showers
    s = em_scale(simulate_showers("clic", "e-", 200, energy_gev=(20, 100), mode="visible", seed=2))
    resp = s.total_energy() / s.truth["energy_gev"]
    assert 0.93 < np.median(resp) < 1.03  # contained EM showers at the EM scale (small leakage)


def test_run_singles_tiny(tmp_path):
    cfg = SinglesConfig(out=str(tmp_path), quick=True, tasks=["e_vs_gamma", "e_gamma_pi"],
                        models=["pointnet", "dense_fcn"], n_per_class=60, epochs=1, occupancy_study=False)
    res = run_singles(cfg)
    data = json.loads((tmp_path / "results.json").read_text())
    t = data["tasks"]["e_vs_gamma"]["models"]
    assert set(t) == {"pointnet", "dense_fcn", "ss_fcn", "ss_gbt"}
    for m in t.values():
        assert 0.0 <= m["auc"] <= 1.0
        assert set(m["rejection"]) == {"0.6", "0.7", "0.8", "0.9", "0.99"}
    assert t["pointnet"]["n_params"] > 0 and t["pointnet"]["events_per_s"] > 0 and t["pointnet"]["peak_memory_mb"] > 0
    assert "relative_rejection_pct" in t["pointnet"]
    three = data["tasks"]["e_gamma_pi"]["models"]["pointnet"]
    assert set(three["auc_one_vs_rest"]) == {"e-", "gamma", "pi-"}
    assert data["device"].startswith("cpu")
    report = (tmp_path / "report.md").read_text()
    assert "## e_vs_gamma" in report and "pointnet" in report and "Sparse vs dense" in report
    assert (tmp_path / "splits_e_vs_gamma.json").exists()
    assert all((tmp_path / p.split("/")[-1]).exists() for p in res["plots"])
    # paired comparison of the best point and dense models, consistent with their own rejections
    pr = data["tasks"]["e_vs_gamma"]["paired_point_vs_dense"]
    assert (pr["point"], pr["dense"]) == ("pointnet", "dense_fcn")
    for w, d in pr["difference"].items():
        ra, rb = t["pointnet"]["rejection"][w], t["dense_fcn"]["rejection"][w]
        if d is not None and ra is not None and rb is not None:
            assert d == pytest.approx(ra - rb, rel=1e-9, abs=1e-9)
    assert "best point − best dense" in report
    assert "paired_point_vs_dense" not in data["tasks"]["e_gamma_pi"]  # three classes: no rejection
    # saved test scores reproduce the AUCs
    from pcloud.metrics import auc
    npz = np.load(tmp_path / "scores_e_vs_gamma.npz")
    assert set(npz.files) >= {"label", "energy_gev", "event_number", "score_pointnet", "score_ss_fcn"}
    assert auc(npz["label"] == 0, npz["score_pointnet"]) == pytest.approx(t["pointnet"]["auc"], abs=1e-12)


def test_unknown_task_or_model():
    with pytest.raises(ValueError, match="unknown task"):
        SinglesConfig(tasks=["e_vs_mu"]).resolved()
    with pytest.raises(ValueError, match="unknown model"):
        SinglesConfig(models=["resnet"]).resolved()


def test_config_file_and_overrides(tmp_path):
    from pathlib import Path

    import pcloud
    from pcloud.bench.singles import config_from_dict
    from pcloud.train.config import load_config

    shipped = Path(pcloud.__file__).parent / "configs" / "singles.yaml"
    cfg = config_from_dict(load_config(shipped, ["train.epochs=3", "singles.tasks=[e_vs_pi]", "singles.quick=true",
                                                 "split.seed=9"], defaults=False))
    assert cfg.epochs == 3 and cfg.tasks == ["e_vs_pi"] and cfg.quick is True and cfg.split_seed == 9
    r = cfg.resolved()
    assert r.n_per_class == 700 and r.max_points == 96 and r.small_models is True  # quick defaults where null
    with pytest.raises(ValueError, match="unknown key singles.n_events"):
        config_from_dict({"singles": {"n_events": 5}})


def test_resume_continues_from_checkpoints(tmp_path):
    import json

    base = dict(out=str(tmp_path), quick=True, tasks=["e_vs_pi"], models=["pointnet"], n_per_class=60,
                occupancy_study=False)
    run_singles(SinglesConfig(epochs=1, **base))
    run_singles(SinglesConfig(epochs=2, resume=True, **base))
    import torch
    st = torch.load(tmp_path / "runs" / "e_vs_pi" / "pointnet" / "last.pt", weights_only=False)
    assert [h["epoch"] for h in st["history"]] == [0, 1]  # epoch 0 from the first run, epoch 1 resumed
    assert json.loads((tmp_path / "results.json").read_text())["tasks"]["e_vs_pi"]["models"]["pointnet"]["epochs"] == 2


@pytest.mark.parametrize("v, err, text", [(7.0, 1.7, "7.0 ± 1.7"), (3.114, 0.2099, "3.11 ± 0.21"),
                                          (105.0, 103.0, "105 ± 103"), (1.07, 0.028, "1.070 ± 0.028"),
                                          (1234.0, 560.0, "1234 ± 560")])
def test_report_value_with_error(v, err, text):
    from pcloud.bench.singles.report import value_pm
    assert value_pm(v, err) == text


def test_report_rejection_lower_limit_has_no_exponent():
    from pcloud.bench.singles.report import _rej_cell
    assert _rej_cell(float("inf"), None, 1004.3) == "> 1004"
    assert _rej_cell(float("inf"), None, 35.0) == "> 35"
    assert _rej_cell(None, None, None) == "n/a"


def test_granularity_tasks_share_the_showers_and_conserve_energy():
    from pcloud.bench.singles.granularity import GRANULARITIES, granularity_tasks

    tasks = granularity_tasks(20, seed=3, log=lambda s: None)
    assert [t.name for t in tasks] == [f"granularity_{n}" for n, _, _ in GRANULARITIES]
    native = tasks[0].showers
    for t, (_, m, _) in zip(tasks, GRANULARITIES):
        s = t.showers
        assert s.images["ECAL"].shape[2] == -(-native.images["ECAL"].shape[2] // m)  # coarser cells
        np.testing.assert_array_equal(s.truth["event_number"], native.truth["event_number"])
        np.testing.assert_allclose(s.total_energy(), native.total_energy(), rtol=1e-5)  # float32 images
        np.testing.assert_array_equal(s.images["HCAL"], native.images["HCAL"])


def test_quick_mode_keeps_its_models_and_full_mode_has_all():
    from pcloud.bench.singles.config import QUICK_MODELS
    from pcloud.bench.singles.models import DENSE_MODEL_NAMES, POINT_MODEL_NAMES

    assert SinglesConfig(quick=True).resolved().models == list(QUICK_MODELS)
    assert "transformer" not in QUICK_MODELS and "gravnet" not in QUICK_MODELS
    assert SinglesConfig().resolved().models == list(POINT_MODEL_NAMES + DENSE_MODEL_NAMES)
    assert {"transformer", "gravnet"} <= set(POINT_MODEL_NAMES)
    assert SinglesConfig(quick=True, models=["gravnet"]).resolved().models == ["gravnet"]


def test_occupancy_padded_and_ragged_rows():
    """The threshold scan measures each point model on the padded batch and on the same events as a ragged batch
    (inference and one training step); the report renders both."""
    import torch

    from pcloud.bench.singles.occupancy import occupancy_study
    from pcloud.bench.singles.report import _occupancy

    cfg = SinglesConfig(quick=True, models=["pointnet"]).resolved()
    occ = occupancy_study(cfg, torch.device("cpu"), log=lambda s: None, granularity=False)
    assert [r["threshold_mev"] for r in occ["threshold_scan"]] == [0.0, 1.0, 10.0, 100.0] and occ["granularity"] == []
    keys = {"events_per_s", "peak_memory_mb", "cost_batch", "step_seconds", "train_peak_memory_mb"}
    for r in occ["threshold_scan"]:
        assert set(r["models"]) == {"pointnet"} and set(r["ragged"]) == {"pointnet"}
        for row in (r["models"]["pointnet"], r["ragged"]["pointnet"]):
            assert set(row) == keys and row["events_per_s"] > 0 and row["step_seconds"] > 0
    pts = [r["points_per_event_mean"] for r in occ["threshold_scan"]]
    assert pts == sorted(pts, reverse=True)  # a higher threshold keeps fewer points
    text = "\n".join(_occupancy(occ))
    assert "### Padded vs ragged batches" in text
    assert sum(line.startswith("| ") and "| pointnet |" in line for line in text.splitlines()) == 4
