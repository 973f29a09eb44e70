"""Classical baselines: linear calibration (seed 001 eq. 2), gradient-boosted trees and the shower-shape FCN."""
import numpy as np
import pytest
import torch

from pcloud.baselines import (PAPER_WIDTHS, EnergyTreeRegression, FCNClassifier, GBTClassifier, GBTRegressor,
                              LinearEnergyRegression, ShowerShapeFCN, count_parameters, linear_inputs)
from pcloud.geometry import get_geometry
from pcloud.metrics import auc
from pcloud.core.showers import ShowerImages


def separable(n=1500, d=6, shift=2.5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, d))
    X[:, 0] += shift * y
    X[:, 1] -= shift * y
    X[:, 2] = X[:, 2] * (1 + y)                           # a width difference only trees/NNs can use
    return X, y


def test_linear_recovers_coefficients_exactly():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 100, (200, 2))
    y = 1.07 * X[:, 0] + 1.35 * X[:, 1] + 0.4
    m = LinearEnergyRegression().fit(X, y)
    np.testing.assert_allclose(m.coef_, [1.07, 1.35], rtol=1e-12)
    assert m.intercept_ == pytest.approx(0.4, abs=1e-10)
    assert m.n_params == 3 and np.all(m.coef_err_ < 1e-10)
    np.testing.assert_allclose(m.predict(X), y, rtol=1e-12)
    with pytest.raises(ValueError, match="3 features"):
        m.predict(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="fit"):
        LinearEnergyRegression().predict(X)


def test_linear_inputs_group_sections():
    g = get_geometry("clic")
    im = g.empty_images(3)
    im["ECAL"][:, 0, 0, 0] = [1.0, 2.0, 3.0]
    im["HCAL"][:, 5, 1, 1] = [4.0, 0.0, 1.0]
    X, names = linear_inputs(ShowerImages(g, im))
    assert names == ["E_ECAL", "E_HCAL"] and X.tolist() == [[1, 4], [2, 0], [3, 1]]
    y = 1.0 * X[:, 0] + 1.2 * X[:, 1] + 0.5
    m = LinearEnergyRegression().fit(X, y)
    np.testing.assert_allclose([*m.coef_, m.intercept_], [1.0, 1.2, 0.5], atol=1e-10)
    gc = get_geometry("calogan")
    imc = gc.empty_images(2)
    imc["layer_0"][:, 0, 0, 0] = 1.0
    imc["layer_2"][:, 0, 0, 0] = 2.0
    Xc, nc = linear_inputs(ShowerImages(gc, imc))
    assert nc == ["E_tot"] and Xc[:, 0].tolist() == [3.0, 3.0]
    with pytest.raises(KeyError, match="nope"):
        linear_inputs(ShowerImages(gc, imc), {"E_x": ["nope"]})


def test_gbt_classifier_separates_and_is_seeded():
    X, y = separable()
    Xt, yt = separable(seed=1)
    m = GBTClassifier(backend="sklearn", max_iter=100, seed=3).fit(X, y)
    p = m.predict_proba(Xt)
    assert p.shape == (len(yt), 2) and auc(yt, p[:, 1]) > 0.95
    assert m.n_params > 0 and m.n_trees >= 1
    again = GBTClassifier(backend="sklearn", max_iter=100, seed=3).fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(p, again)
    # string labels and an explicit validation set
    lab = np.array(["e+", "gamma"])
    mv = GBTClassifier(backend="sklearn", max_iter=100).fit(X, lab[y], Xt, lab[yt])
    assert set(mv.predict(Xt[:20])) <= {"e+", "gamma"} and list(mv.classes_) == ["e+", "gamma"]


def test_gbt_regressors():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 100, (2000, 3))
    y = 1.1 * X[:, 0] + 0.05 * X[:, 1] ** 1.5
    m = GBTRegressor(backend="sklearn", max_iter=200).fit(X[:1500], y[:1500])
    rel = np.abs(m.predict(X[1500:]) / y[1500:] - 1)
    assert np.median(rel) < 0.05
    e = EnergyTreeRegression(backend="sklearn").fit(X[:1500], y[:1500], X[1500:], y[1500:])
    assert e.model_.max_depth == 3 and e.model_.learning_rate == 0.3
    assert np.median(np.abs(e.predict(X[1500:]) / y[1500:] - 1)) < 0.05
    with pytest.raises(ValueError, match="backend"):
        GBTRegressor(backend="lightgbm").fit(X, y)


def test_fcn_reproduces_paper_parameter_counts():
    assert count_parameters(ShowerShapeFCN(20, 1, PAPER_WIDTHS)) == 4_873_985      # seed 004 §3.1.1
    assert count_parameters(ShowerShapeFCN(504, 1, PAPER_WIDTHS)) == 5_121_793     # seed 004 §3.1.2


def test_fcn_classifies_separable_data():
    X, y = separable()
    Xt, yt = separable(seed=1)
    rng_state = torch.get_rng_state()
    m = FCNClassifier(epochs=15, seed=0).fit(X, y, Xt, yt)
    assert torch.equal(rng_state, torch.get_rng_state())          # global RNG untouched
    assert auc(yt, m.predict_proba(Xt)[:, 1]) > 0.95
    assert m.n_params == count_parameters(ShowerShapeFCN(6, 1, (64, 64, 32)))
    m2 = FCNClassifier(epochs=15, seed=0).fit(X, y, Xt, yt)
    np.testing.assert_array_equal(m.predict_proba(Xt), m2.predict_proba(Xt))


def test_fcn_overfits_tiny_batch_and_multiclass():
    rng = np.random.default_rng(5)
    X = rng.normal(0, 1, (32, 20))
    y = rng.integers(0, 3, 32)                                    # random labels: only memorisation works
    m = FCNClassifier(widths=(128, 128), dropout=0.0, lr=3e-3, batch_size=32, epochs=300, seed=1).fit(X, y)
    assert m.history_["train_loss"][-1] < 0.05
    assert np.all(m.predict(X) == y)
    p = m.predict_proba(X)
    assert p.shape == (32, 3) and np.allclose(p.sum(1), 1)


def test_shower_shapes_feed_the_classifiers():
    """End to end: hand-made CaloGAN showers (shallow vs deep) -> 20 shower shapes -> GBT and FCN, AUC > 0.95."""
    from pcloud.features import shower_shapes

    g = get_geometry("calogan")
    rng = np.random.default_rng(4)
    n = 600
    y = rng.integers(0, 2, n)
    e = rng.uniform(10, 100, n)
    f2 = np.where(y == 1, rng.uniform(0.3, 0.6, n), rng.uniform(0.0, 0.25, n))
    im = g.empty_images(n)
    ev = np.arange(n)
    im["layer_0"][ev, 0, 1, rng.integers(40, 56, n)] = 0.2 * e
    im["layer_1"][ev, 0, rng.integers(4, 8, n), rng.integers(4, 8, n)] = (0.8 - f2) * e
    im["layer_2"][ev, 0, rng.integers(4, 8, n), rng.integers(2, 4, n)] = f2 * e
    X, names = shower_shapes(ShowerImages(g, im, truth={"pdg": np.where(y == 1, 211, -11)}))
    assert X.shape == (n, 20)
    tr, te = slice(0, 400), slice(400, None)
    gbt = GBTClassifier(backend="sklearn", max_iter=50).fit(X[tr], y[tr])
    assert auc(y[te], gbt.predict_proba(X[te])[:, 1]) > 0.95
    fcn = FCNClassifier(epochs=10, seed=2).fit(X[tr], y[tr])
    assert auc(y[te], fcn.predict_proba(X[te])[:, 1]) > 0.95
