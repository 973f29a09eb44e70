"""ROC / AUC / rejection checked by hand and against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from pcloud.metrics import classification as mc
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


def _correlated_scores(rng, n, shift_b=0.0):
    """Signal/background with a shared per-event latent score; model b adds its own noise (and an optional shift
    that worsens it)."""
    y = rng.random(n) < 0.5
    latent = rng.normal(np.where(y, 1.0, 0.0), 1.0)
    a = latent + rng.normal(0, 0.3, n)
    b = latent + rng.normal(0, 0.3, n) - shift_b * y
    return y.astype(int), a, b


def test_paired_difference_of_identical_models_is_zero():
    rng = np.random.default_rng(1)
    y, a, _ = _correlated_scores(rng, 2000)
    r = mc.paired_rejection_difference(y, a, a, (0.5, 0.8), n_boot=50)
    np.testing.assert_array_equal(r["difference"], 0.0)
    np.testing.assert_array_equal(r["bootstrap_std"], 0.0)
    np.testing.assert_array_equal(r["fraction_a_better"], 0.0)


def test_paired_bootstrap_std_matches_monte_carlo_spread():
    """The bootstrap std from one sample estimates the spread of the difference over independent samples."""
    n, eff = 3000, (0.8,)
    rng = np.random.default_rng(7)
    mc_diffs = []
    for _ in range(150):   # independent data sets: the true sampling spread of R_a - R_b
        y, a, b = _correlated_scores(rng, n, shift_b=0.15)
        ra = mc.background_rejection(y, a, eff)["rejection"][0]
        rb = mc.background_rejection(y, b, eff)["rejection"][0]
        mc_diffs.append(ra - rb)
    true_std = np.std(mc_diffs, ddof=1)
    y, a, b = _correlated_scores(np.random.default_rng(99), n, shift_b=0.15)
    r = mc.paired_rejection_difference(y, a, b, eff, n_boot=300, seed=3)
    assert r["bootstrap_std"][0] == pytest.approx(true_std, rel=0.3)
    assert np.mean(mc_diffs) > 0 and r["difference"][0] > 0 and r["fraction_a_better"][0] > 0.9


def test_paired_difference_bad_input():
    with pytest.raises(ValueError, match="n_boot"):
        mc.paired_rejection_difference([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.8], n_boot=1)
    with pytest.raises(ValueError, match="same length"):
        mc.paired_rejection_difference([0, 1], [0.1, 0.9], [0.1, 0.9, 0.3])
