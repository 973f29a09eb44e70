"""ROC / AUC / rejection checked by hand and against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from pcloud.metrics import (accuracy, auc, background_rejection, fpr_at_tpr, one_vs_rest_auc, rejection_uncertainty,
                            relative_rejection, relative_rejection_table, roc_curve)


def test_auc_hand_case():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (sig, bkg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert auc(y, s) == pytest.approx(0.75)
    r = roc_curve(y, s)
    np.testing.assert_allclose(r.tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(r.fpr, [0, 0, 0.5, 0.5, 1])
    assert r.thresholds[0] == np.inf and r.thresholds[1] == 0.8


def test_roc_and_auc_match_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)              # many ties
    w = rng.uniform(0.2, 2.0, y.size)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    r = roc_curve(y, s)
    np.testing.assert_allclose(r.fpr, fpr)
    np.testing.assert_allclose(r.tpr, tpr)
    np.testing.assert_allclose(r.thresholds[1:], thr[1:])


def test_rejection_interpolation_by_hand():
    # 4 signal at scores 4,3,2,1 ; 4 background at 3.5, 2.5, 1.5, 0.5
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([4, 3, 2, 1, 3.5, 2.5, 1.5, 0.5])
    r = roc_curve(y, s)
    # tpr: 0, .25(4), .25(3.5), .5(3), .5(2.5), .75(2) ... fpr: 0, 0, .25, .25, .5, .5, .75, .75, 1
    # at eff 0.5 the first point with tpr >= .5 has fpr .25 (exact point) -> rejection 4
    # at eff 0.625: between (tpr .5, fpr .5) and (tpr .75, fpr .5) -> 0.5
    # at eff 0.25: exactly the first point, fpr 0 -> rejection inf
    fpr = fpr_at_tpr(r, [0.5, 0.625, 0.25, 0.375])
    np.testing.assert_allclose(fpr, [0.25, 0.5, 0.0, 0.25])
    out = background_rejection(y, s, [0.5, 0.25])
    assert out["rejection"][0] == pytest.approx(4.0)
    assert out["rejection"][1] == np.inf                  # no background passes
    assert out["rejection_err"][1] == np.inf
    assert out["rejection_lower_limit_95"][1] == pytest.approx(4 / 3)
    assert np.isnan(out["rejection_lower_limit_95"][0])
    # binomial error: R sqrt((R-1)/n) = 4 sqrt(3/4)
    assert out["rejection_err"][0] == pytest.approx(4 * np.sqrt(3 / 4))


def test_rejection_uncertainty_matches_toys():
    rng = np.random.default_rng(3)
    n_b = 4000
    y = np.r_[np.ones(2000, int), np.zeros(n_b, int)]
    sig = np.linspace(0.5, 3.0, 2000)                    # fixed signal: the cut at 90% eff is the same in every toy
    rej = []
    for _ in range(200):
        s = np.r_[sig, rng.normal(0, 1, n_b)]
        rej.append(background_rejection(y, s, [0.9])["rejection"][0])
    rej = np.array(rej)
    pred = rejection_uncertainty(rej.mean(), n_b)
    assert rej.std() == pytest.approx(pred, rel=0.2)
    assert rejection_uncertainty(10.0, 1000) == pytest.approx(10 * np.sqrt(9 / 1000))


def test_relative_rejection_and_table():
    assert relative_rejection(10.75, 10.0) == pytest.approx(0.075)
    np.testing.assert_array_equal(relative_rejection([np.inf, np.inf, 5.0], [np.inf, 2.0, np.inf]), [0, np.inf, -1])
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    s_ref = rng.normal(y * 1.0, 1)
    s_good = rng.normal(y * 2.0, 1)
    tab = relative_rejection_table({"ref": (y, s_ref), "good": (y, s_good)}, "ref")
    assert np.all(tab["ref"] == 0) and np.all(tab["good"] > 0)
    with pytest.raises(KeyError, match="reference"):
        relative_rejection_table({"a": (y, s_ref)}, "b")


def test_multiclass_accuracy_and_ovr_auc_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert accuracy(y, p) == pytest.approx(np.mean(p.argmax(1) == y))
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    o = one_vs_rest_auc(y, p)
    assert o["macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert o["per_class"][1] == pytest.approx(roc_auc_score(y == 1, p[:, 1]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="both signal"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 \\(background\\) and 1"):
        auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        roc_curve([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1], [np.nan, 0.2])
