"""scripts/pflow_study.py on a few events: ``curve`` with a file tag and saved models, ``errors`` of one model and of an
ensemble, ``losses``. The errors of a saved model reproduce the numbers its curve record measured (same events,
same inference), and an ensemble of one model twice is that model (same mean fraction, same threshold choice)."""
import json

import awkward as ak
import numpy as np
import pytest
import torch

from helpers.scripts import load_script
from pcloud.core.attribution import truth_attribution
from pcloud.geometry import get_geometry
from pcloud.metrics import particle_flow as pm
from pcloud.pflow.inference import common_inference, iterative_inference, track_order
from pcloud.pflow.learned import FocalTrackSegmenter, SegmenterEnsemble
from pcloud.pflow.residual_clouds import residual_track_clouds, share_taken_before_turn
from pcloud.pflow.topocluster import topo_cluster_events

SEG = {"cells": "topo", "loss": "ce", "threshold": "val", "max_points": None, "ragged": True, "widths": "light"}
FIT = {"epochs": 1, "batch_size": 32, "lr": 1e-3, "patience": 2, "optimizer": "adamw", "schedule": "cosine",
       "warmup": 0.05, "weight_decay": 1e-4}


@pytest.mark.slow
def test_curve_errors_ensemble_and_losses(tmp_path, capsys):
    mod = load_script("pflow_study")
    out = str(tmp_path)
    mod.main(["events", "--events", "40", "--seed", "3", "--out", out])
    for loss, device in (("ce", "cpu"), ("mixed", "auto")):
        mod.main(["curve", "--out", out, "--sizes", "1000", "--seeds", "1", "--threads", "1", "--tag", f"_{loss}",
                  "--device", device, "--save-models", "--segmenter", json.dumps({**SEG, "loss": loss}),
                  "--fit", json.dumps(FIT)])
    recs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("curve_*_s1_*.json")}
    n = recs and next(iter(recs.values()))["train_events"]
    assert set(recs) == {f"curve_{n}_s1_ce", f"curve_{n}_s1_mixed"}
    # the record names the device the model ran on ("auto" resolved)
    assert recs[f"curve_{n}_s1_ce"]["device"] == "cpu"
    assert recs[f"curve_{n}_s1_mixed"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert all(r["n_params"] > 0 and r["tag"] in ("_ce", "_mixed") for r in recs.values())
    assert json.loads(recs[f"curve_{n}_s1_mixed"]["segmenter"])["loss"] == "mixed"
    model = tmp_path / f"model_{n}_s1_ce.pt"
    assert model.exists() and (tmp_path / f"model_{n}_s1_mixed.pt").exists()
    # a second curve run with the same tag skips the finished record instead of overwriting it
    mod.main(["curve", "--out", out, "--sizes", "1000", "--seeds", "1", "--tag", "_ce", "--segmenter",
              json.dumps(SEG), "--fit", json.dumps(FIT)])
    assert "exists: skipped" in capsys.readouterr().out

    mod.main(["errors", "--out", out, "--threads", "1", "--model-file", str(model), "--tag", "_one"])
    one = json.loads((tmp_path / "errors_one.json").read_text())
    rec = recs[f"curve_{n}_s1_ce"]["results"]
    for inf in ("iterative", "common"):
        assert one[inf]["metrics"]["f1"] == pytest.approx(rec[inf]["f1"], abs=1e-12)
        assert one[inf]["metrics"]["energy_weighted_accuracy"] == pytest.approx(
            rec[inf]["energy_weighted_accuracy"], abs=1e-12)
        lost = sum(c["energy_share"] for c in one[inf]["categories"].values())
        assert lost == pytest.approx(1 - one[inf]["energy_weighted_accuracy"], abs=1e-9)
    assert one["threshold"] == pytest.approx(recs[f"curve_{n}_s1_ce"]["threshold"])
    # the energy the earlier tracks had taken at each later track's turn: a share of its true energy, over the
    # tracks after their event's first (true share above 0.5 GeV), split at DeltaR 0.1
    tb = one["iterative"]["taken_before_turn"]
    parts = mod._load(out)
    test = parts["test"]
    g = get_geometry("atlas")
    seg = FocalTrackSegmenter.load(model, device="cpu")
    took = iterative_inference(test, g, seg, cleanup_sigma=None)
    true, taken = share_taken_before_turn(test, took)
    rows, rank = track_order(test)
    later = rows[(rank >= 1) & (true[rows] > 0.5)]
    assert tb["dense"]["n_tracks"] + tb["isolated"]["n_tracks"] == later.size > 0
    iso = pm.track_isolation_dr(test)[later]
    for k, sel in (("dense", iso < 0.1), ("isolated", iso >= 0.1)):
        assert tb[k]["n_tracks"] == sel.sum()
        if sel.any():
            assert tb[k]["fraction"] == pytest.approx(taken[later][sel].sum() / true[later][sel].sum())
            assert 0 <= tb[k]["fraction"] <= 1
    # one DAgger round: the untouched clouds plus the residual clouds of the saved model's own subtractions
    mod.main(["curve", "--out", out, "--sizes", "1000", "--seeds", "1", "--threads", "1", "--tag", "_dagger",
              "--residual-from", str(model), "--segmenter", json.dumps(SEG), "--fit", json.dumps(FIT)])
    dag = json.loads((tmp_path / f"curve_{n}_s1_dagger.json").read_text())
    train = parts["train"]
    kw = seg._cloud_kwargs(train, g)
    extra = residual_track_clouds(train, g, subtracted=iterative_inference(train, g, seg, cleanup_sigma=None), **kw)
    assert dag["residual_from"] == str(model)
    assert dag["train_clouds"] == recs[f"curve_{n}_s1_ce"]["train_clouds"] + len(extra) > \
        recs[f"curve_{n}_s1_ce"]["train_clouds"]
    # the clouds it trains on are the untouched ones plus those of the model's own subtractions, which differ from
    # the teacher-forced ones (the count alone could not tell them apart)
    fresh = FocalTrackSegmenter(model="pointnet", seed=1, device="cpu", **SEG)
    mod._train_on_residuals_of(fresh, str(model), train, g, "cpu")
    got = fresh.make_train_clouds(train, g)
    n0 = len(got) - len(extra)

    def flat(c, field):
        return ak.to_numpy(ak.flatten(c.points[field])).astype(float)

    assert np.array_equal(flat(got[n0:], "energy"), flat(extra, "energy"))
    assert np.array_equal(flat(got[:n0], "energy"), flat(fresh.make_clouds(train, g), "energy"))
    forced = residual_track_clouds(train, g, **kw)
    assert len(forced) == len(extra) and not (
        ak.num(forced.points, axis=1).tolist() == ak.num(extra.points, axis=1).tolist()
        and np.allclose(flat(forced, "energy"), flat(extra, "energy")))
    with pytest.raises(ValueError, match="training events only"):
        fresh.make_train_clouds(parts["val"], g)
    with pytest.raises(SystemExit, match="--residual-from replaces"):
        mod.main(["curve", "--out", out, "--sizes", "1000", "--seeds", "1", "--tag", "_both", "--residual-from",
                  str(model), "--segmenter", json.dumps({**SEG, "residual_clouds": True}), "--fit", json.dumps(FIT)])

    mod.main(["errors", "--out", out, "--threads", "1", "--model-file", f"{model},{model}", "--tag", "_twice"])
    twice = json.loads((tmp_path / "errors_twice.json").read_text())
    assert "ensemble of 2: threshold" in capsys.readouterr().out
    assert twice["model_file"] == [str(model)] * 2 and twice["threshold"] == pytest.approx(one["threshold"])
    for inf in ("iterative", "common", "iterative_truth_subtracted"):
        for k, v in one[inf]["metrics"].items():
            assert twice[inf]["metrics"][k] == pytest.approx(v, abs=1e-6), (inf, k)

    # the ensemble of two different models: the script's threshold and common-inference metrics are those of a
    # SegmenterEnsemble built here from the same files
    mixed = tmp_path / f"model_{n}_s1_mixed.pt"
    mod.main(["errors", "--out", out, "--threads", "1", "--model-file", f"{model},{mixed}", "--tag", "_pair"])
    pair = json.loads((tmp_path / "errors_pair.json").read_text())
    ens = SegmenterEnsemble([FocalTrackSegmenter.load(f, device="cpu") for f in (model, mixed)])
    thr = ens.choose_threshold(parts["val"], g, ens.threshold_metric)
    assert pair["model_file"] == [str(model), str(mixed)] and pair["threshold"] == pytest.approx(thr)
    r = pm.evaluate_attribution(test, common_inference(test, g, ens), truth_attribution(test),
                                cell_mask=topo_cluster_events(g, test).cell_cluster >= 0)
    for k in ("f1", "energy_weighted_accuracy", "track_energy_resolution"):
        assert pair["common"]["metrics"][k] == pytest.approx(r[k], abs=1e-9), k

    mod.main(["losses", "--out", out])
    assert (tmp_path / "losses.png").stat().st_size > 10_000
    mod.main(["plot", "--out", out, "--tag", "_ce"])  # one tagged series of the curve
    assert json.loads((tmp_path / "curve_table.json").read_text())[0]["seeds"] == 1
    with pytest.raises(SystemExit, match="no curve_.*of tag ''"):
        mod.main(["plot", "--out", out])
    with pytest.raises(SystemExit, match="--model-file names no saved segmenter"):
        mod.main(["errors", "--out", out])


class _Half:
    """Every cell point: half of its current energy belongs to the focal track; no cell selection."""

    def cloud_cell_mask(self, events, geometry):
        return None

    def predict_fraction(self, clouds):
        from pcloud.pflow.clouds import cell_counts
        return np.full(int(cell_counts(clouds).sum()), 0.5)


def test_iterative_truth_subtracted_hand_event():
    """The hand event (tests/helpers/events.py): track 0 (pT 10) truly owns 3.0 of c0's 4.0 GeV and all of c4's
    0.9 GeV, none of c1; track 1 (pT 5) comes second. With fractions of 0.5, track 0 takes half of each cell of its
    cone; then its *true* share is subtracted, not the half it took, so track 1 takes half of what the truth leaves:
    0.5 of c0, 2.05 of c1 (untouched by track 0's truth), nothing of c4 (emptied)."""
    from helpers.events import make_hand_event
    mod = load_script("pflow_study")
    g = get_geometry("atlas")
    ev, row = make_hand_event(g)
    e = ev.cells["energy_gev"]
    a = mod.iterative_truth_subtracted(ev, g, _Half(), truth_attribution(ev))
    got = {(int(c), int(t)): x for c, t, x in zip(a.cell_row, a.track_row, a.energy_gev)}
    for k in ("c0", "c1", "c2", "c4"):
        assert got[(row[k], 0)] == pytest.approx(0.5 * e[row[k]])
    assert got[(row["c0"], 1)] == pytest.approx(0.5 * (4.0 - 3.0))
    assert got[(row["c1"], 1)] == pytest.approx(0.5 * 4.1)
    assert got.get((row["c4"], 1), 0.0) == 0.0
    # the model's own subtraction instead: track 1 gets half of the half left in c0
    own = iterative_inference(ev, g, _Half(), cleanup_sigma=None)
    g_own = {(int(c), int(t)): x for c, t, x in zip(own.cell_row, own.track_row, own.energy_gev)}
    assert g_own[(row["c0"], 1)] == pytest.approx(0.25 * 4.0)
