"""Bias/resolution in bins and the sigma/E = a/sqrt(E) (+) b (+) c/E fit on synthetic Gaussian data."""
import numpy as np
import pytest

from pcloud.metrics import (accuracy_in_bins, binned_response, fit_resolution, gaussian_core_fit, resolution_function,
                            robust_width)


def test_robust_width_and_core_fit_on_gaussians():
    rng = np.random.default_rng(0)
    r = rng.normal(0.02, 0.1, 200_000)
    assert robust_width(r) == pytest.approx(0.1, rel=0.01)
    # core of width 0.1 plus 10% of a wide tail: the Gaussian core fit ignores the tail, the RMS does not
    mix = np.r_[rng.normal(0, 0.1, 45_000), rng.normal(0, 0.6, 5_000)]
    f = gaussian_core_fit(mix)
    assert f["fit_ok"] and f["sigma"] == pytest.approx(0.1, rel=0.05)
    assert abs(f["sigma"] - 0.1) < 4 * f["sigma_err"] + 0.003
    assert mix.std() > 0.2


def test_binned_response_hand_case():
    e_true = np.array([1.0, 1.0, 1.0, 10.0, 10.0, 10.0, 10.0])
    e_pred = np.array([1.1, 0.9, 1.0, 12.0, 10.0, 11.0, 9.0])
    out = binned_response(e_true, e_pred, [0.5, 5, 50], center="mean", width="rms", min_events=3)
    np.testing.assert_array_equal(out["n"], [3, 4])
    np.testing.assert_allclose(out["bias"], [0.0, 0.05], atol=1e-12)
    np.testing.assert_allclose(out["resolution"], [np.std([0.1, -0.1, 0], ddof=1), np.std([0.2, 0, .1, -.1], ddof=1)])
    np.testing.assert_allclose(out["e_true_mean"], [1, 10])
    med = binned_response(e_true, e_pred, [0.5, 5, 50], min_events=3)
    np.testing.assert_allclose(med["bias"], [0.0, 0.05], atol=1e-12)  # median of (0.2, 0, 0.1, -0.1) = 0.05
    few = binned_response(e_true, e_pred, [0.5, 5, 50], min_events=4)
    assert np.isnan(few["bias"][0]) and np.isfinite(few["bias"][1])
    # bins of another variable (eta)
    eta = np.array([-1, 1, -1, 1, -1, 1, -1.0])
    by_eta = binned_response(e_true, e_pred, [-2, 0, 2], x=eta, center="mean", min_events=1)
    np.testing.assert_array_equal(by_eta["n"], [4, 3])
    with pytest.raises(ValueError, match="e_true must be > 0"):
        binned_response([0.0], [1.0], [0, 1])


@pytest.mark.parametrize("width", ["rms", "robust", "gauss"])
def test_resolution_fit_recovers_known_terms(width):
    a0, b0, c0 = 0.10, 0.01, 0.20
    rng = np.random.default_rng(7)
    energies = np.geomspace(0.5, 500, 14)
    n = 4000
    e_true = np.repeat(energies, n)
    e_pred = e_true * (1 + rng.normal(0, resolution_function(e_true, a0, b0, c0)))
    edges = np.sqrt(energies[1:] * energies[:-1])
    edges = np.r_[0.1, edges, 1000]
    br = binned_response(e_true, e_pred, edges, width=width)
    fit = fit_resolution(br["e_true_mean"], br["resolution"], br["resolution_err"])
    for k, v in zip("abc", (a0, b0, c0)):
        assert abs(fit[k] - v) < 3.5 * fit[f"{k}_err"], (k, fit[k], fit[f"{k}_err"])
        assert fit[f"{k}_err"] < 0.2 * v
    assert fit["ndf"] == 11 and fit["chi2"] / fit["ndf"] < 3


def test_resolution_fit_fixed_term_and_bounds():
    e = np.geomspace(1, 100, 8)
    y = resolution_function(e, 0.12, 0.02, 0.0)
    f = fit_resolution(e, y, fix={"c": 0.0})
    assert f["c"] == 0 and f["c_err"] == 0 and f["free"] == ["a", "b"]
    assert f["a"] == pytest.approx(0.12, rel=1e-5) and f["b"] == pytest.approx(0.02, rel=1e-4)
    free = fit_resolution(e, y)
    assert min(free["a"], free["b"], free["c"]) >= 0
    with pytest.raises(ValueError, match="fix may only"):
        fit_resolution(e, y, fix={"d": 1})


def test_accuracy_in_bins_hand_case():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0, 1, 0, 0, 0])
    x = np.array([1, 2, 3, 11, 12.0])
    out = accuracy_in_bins(y, p, x, [0, 10, 20, 30])
    np.testing.assert_allclose(out["accuracy"][:2], [2 / 3, 1 / 2])
    np.testing.assert_array_equal(out["n"], [3, 2, 0])
    assert out["accuracy_err"][0] == pytest.approx(np.sqrt(2 / 3 * 1 / 3 / 3))
    assert np.isnan(out["accuracy"][2])
