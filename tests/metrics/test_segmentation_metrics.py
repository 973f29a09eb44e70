"""Cell-level segmentation metrics by hand and against scikit-learn, with the trivial and smart-random baselines."""
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from pcloud.metrics import (attributed_energy, format_report, hard_scores, report_with_baselines,
                            smart_random_baseline, smart_random_predictions, soft_scores, track_energy_response,
                            trivial_baseline)


def test_binary_hard_scores_by_hand():
    yt = np.array([1, 1, 0, 0, 0, 1])
    yp = np.array([1, 0, 0, 1, 0, 1])
    e = np.array([5.0, 1.0, 1.0, 2.0, 1.0, -3.0])           # the negative cell carries no weight
    s = hard_scores(yt, yp, e)
    # TP=2, FP=1, FN=1 -> F1 = 4/6, IoU = 2/4
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["f1_positive"] == pytest.approx(4 / 6) and s["iou_positive"] == pytest.approx(0.5)
    # correct cells: 5 (yes), 1 (no), 1 (yes), 2 (no), 1 (yes), -3 -> 0 ; total positive energy 10
    assert s["energy_accuracy"] == pytest.approx((5 + 1 + 1) / 10)


def test_multiclass_hard_scores_match_sklearn():
    rng = np.random.default_rng(0)
    yt = rng.integers(0, 4, 5000)
    yp = np.where(rng.random(5000) < 0.6, yt, rng.integers(0, 4, 5000))
    s = hard_scores(yt, yp)
    np.testing.assert_allclose(s["f1"], f1_score(yt, yp, average=None))
    np.testing.assert_allclose(s["iou"], jaccard_score(yt, yp, average=None))
    np.testing.assert_allclose(s["precision"], precision_score(yt, yp, average=None))
    np.testing.assert_allclose(s["recall"], recall_score(yt, yp, average=None))
    assert s["f1_macro"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert "f1_positive" not in s


def test_absent_class_is_nan_not_zero():
    s = hard_scores([0, 0, 1], [0, 0, 1], n_classes=3)
    assert np.isnan(s["f1"][2]) and s["f1_macro"] == 1.0


def test_soft_scores_by_hand():
    t = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])     # last cell: noise, no truth -> excluded
    p = np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0]])
    e = np.array([2.0, 2.0, 10.0])
    s = soft_scores(t, p, e)
    # overlap: cell0 min-sum 0.8, cell1 1.0 -> (2*0.8 + 2*1.0)/4
    assert s["overlap"] == pytest.approx(0.9)
    assert s["l1"] == pytest.approx((2 * 0.4 + 0) / 4)
    # IoU class 0: (2*0.8 + 2*0.5)/(2*1 + 2*0.5); class 1: (0 + 1)/(2*0.2 + 1)
    np.testing.assert_allclose(s["iou"], [2.6 / 3.0, 1.0 / 1.4])
    assert s["n_unlabelled"] == 1
    # binary focal-track fractions give the same as the explicit two columns
    s1 = soft_scores(t[:2, 1], p[:2, 1], e[:2])
    assert s1["overlap"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="fractions in \\[0, 1\\]"):
        soft_scores([1.5], [0.5], [1.0])


def test_attributed_energy_and_track_response():
    e = np.array([1.0, 2.0, 3.0, 4.0])
    grp = np.array([0, 0, 1, 1])
    t = np.array([1.0, 0.5, 1.0, 0.0])
    p = np.array([1.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(attributed_energy(e, t, grp), [2.0, 3.0])
    np.testing.assert_allclose(attributed_energy(e, p, grp), [3.0, 3.5])
    r = track_energy_response(e, t, p, grp)
    np.testing.assert_allclose(r["e_pred"] / r["e_true"], [1.5, 3.5 / 3])
    assert r["response_median"] == pytest.approx((1.5 + 3.5 / 3) / 2)
    assert r["mae_gev"] == pytest.approx((1.0 + 0.5) / 2)
    # (M, K) per-track fractions in events: event 0 has tracks k=0,1
    f2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(attributed_energy(e, f2, grp), [[1.0, 2.0], [5.5, 1.5]])


def test_trivial_and_smart_random_baselines():
    # 82% majority class: the trivial model already has accuracy 0.82
    yt = np.r_[np.zeros(820, int), np.ones(180, int)]
    triv = trivial_baseline(yt)
    assert triv["predicted"] == 0 and triv["accuracy"] == pytest.approx(0.82)
    assert triv["f1_positive"] == 0.0 and triv["iou"][0] == pytest.approx(0.82)
    sr = smart_random_baseline(yt)
    p = np.array([0.82, 0.18])
    assert sr["accuracy"] == pytest.approx((p ** 2).sum())
    np.testing.assert_allclose(sr["f1"], p)
    np.testing.assert_allclose(sr["iou"], p / (2 - p))
    # analytic expectation against sampled random predictions
    big = np.r_[np.zeros(164_000, int), np.ones(36_000, int)]
    energy = np.where(big == 1, 3.0, 1.0)
    srb = smart_random_baseline(big, energy)
    sampled = hard_scores(big, smart_random_predictions(big.size, p, seed=1), energy)
    for k in ("accuracy", "energy_accuracy", "f1_macro", "iou_macro"):
        assert sampled[k] == pytest.approx(srb[k], abs=0.005), k
    assert srb["energy_accuracy"] == pytest.approx((164_000 * 0.82 + 3 * 36_000 * 0.18) / (164_000 + 3 * 36_000))


def test_baseline_prior_from_training_labels_and_report():
    y_train = np.r_[np.zeros(30, int), np.ones(70, int)]
    y_test = np.r_[np.zeros(60, int), np.ones(40, int)]
    assert trivial_baseline(y_test, prior=y_train)["predicted"] == 1
    sr = smart_random_baseline(y_test, prior=np.array([0.3, 0.7]))
    assert sr["accuracy"] == pytest.approx(0.6 * 0.3 + 0.4 * 0.7)
    with pytest.raises(ValueError, match="frequencies"):
        smart_random_baseline(y_test, prior=np.array([0.3, 0.3, 0.4]))
    rep = report_with_baselines(y_test, y_test, np.ones(100))
    assert rep["model"]["accuracy"] == 1 and rep["trivial"]["accuracy"] == pytest.approx(0.6)
    txt = format_report(rep)
    assert "smart_random" in txt and "0.6000" in txt


def test_label_errors():
    with pytest.raises(ValueError, match="negative labels"):
        hard_scores([0, -1], [0, 0])
    with pytest.raises(ValueError, match="differ in length"):
        hard_scores([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="energy must have shape"):
        hard_scores([0, 1], [0, 1], energy=[1.0])
