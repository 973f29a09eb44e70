"""Gradient-boosted trees on shower shapes / summary features (seed 001 App. C and D; seed 004 baselines).

Backends: scikit-learn ``HistGradientBoostingClassifier``/``Regressor`` (always available) or xgboost (optional
extra ``pcloud[xgboost]``). ``backend="auto"`` takes xgboost when it can be imported, else scikit-learn.

Early stopping: with ``X_val``/``y_val`` the validation loss decides (passed to scikit-learn >= 1.7 ``fit`` or to
xgboost ``eval_set``); without them scikit-learn holds out ``validation_fraction`` of the training set
(older scikit-learn does the same even when ``X_val`` is given). ``n_params`` counts tree nodes (splits + leaves).

:class:`EnergyTreeRegression` carries the seed 001 App. D settings: at most 1000 trees of depth 3, learning rate
0.3, early stopping after 10 rounds without improvement, trained on the summary features of
:func:`pcloud.features.energy_regression_features` (section sums, mean depth, RMS).
"""
from __future__ import annotations

import inspect

import numpy as np

from ._common import check_fitted, check_xy


def _xgboost():
    try:
        import xgboost  # noqa: F401
        return xgboost
    except ImportError:
        return None


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "sklearn", "xgboost"):
        raise ValueError(f"backend must be 'auto', 'sklearn' or 'xgboost', got {backend!r}")
    if backend == "auto":
        return "xgboost" if _xgboost() is not None else "sklearn"
    if backend == "xgboost" and _xgboost() is None:
        raise ImportError("backend='xgboost' needs the xgboost package (pip install 'pcloud[xgboost]')")
    return backend


class _GBTBase:
    _task = ""

    def __init__(self, backend: str = "auto", max_iter: int = 300, learning_rate: float = 0.1,
                 max_depth: int | None = None, max_leaf_nodes: int = 31, early_stopping: bool = True,
                 n_iter_no_change: int = 10, validation_fraction: float = 0.1, seed: int = 0):
        self.backend = backend
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.model_ = None

    # ------------------------------------------------------------------ construction
    def _make(self, backend, n_classes):
        if backend == "sklearn":
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
            cls = HistGradientBoostingClassifier if self._task == "classification" else HistGradientBoostingRegressor
            return cls(max_iter=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth,
                       max_leaf_nodes=self.max_leaf_nodes, early_stopping=self.early_stopping,
                       n_iter_no_change=self.n_iter_no_change, validation_fraction=self.validation_fraction,
                       random_state=self.seed)
        xgb = _xgboost()
        kw = dict(n_estimators=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth or 6,
                  random_state=self.seed, tree_method="hist", n_jobs=1)
        if self.early_stopping:
            kw["early_stopping_rounds"] = self.n_iter_no_change
        return xgb.XGBClassifier(**kw) if self._task == "classification" else xgb.XGBRegressor(**kw)

    def _fit(self, X, y, X_val, y_val):
        self.backend_ = _resolve_backend(self.backend)
        self.n_features_ = X.shape[1]
        has_val = X_val is not None and y_val is not None
        if has_val:
            X_val, y_val = check_xy(X_val, y_val, f"{type(self).__name__}.fit (validation)", self.n_features_)
        model = self._make(self.backend_, None)
        if self.backend_ == "sklearn":
            if has_val and "X_val" in inspect.signature(model.fit).parameters:
                model.fit(X, y, X_val=X_val, y_val=y_val)
            else:
                model.fit(X, y)
        else:
            if self.early_stopping and not has_val:       # xgboost needs an explicit evaluation set
                rng = np.random.default_rng(self.seed)
                idx = rng.permutation(X.shape[0])
                n_val = max(1, int(self.validation_fraction * X.shape[0]))
                X_val, y_val, X, y = X[idx[:n_val]], y[idx[:n_val]], X[idx[n_val:]], y[idx[n_val:]]
                has_val = True
            if has_val:
                model.fit(X, y, eval_set=[(X_val, y_val)], verbose=False)
            else:
                model.fit(X, y)
        self.model_ = model
        return self

    @property
    def n_params(self) -> int:
        """Number of tree nodes (splits + leaves) over all trees."""
        check_fitted(self, "model_")
        if self.backend_ == "sklearn":
            return int(sum(p.nodes.shape[0] for it in self.model_._predictors for p in it))
        return int(sum(len(t.strip().splitlines()) for t in self.model_.get_booster().get_dump()))

    @property
    def n_trees(self) -> int:
        check_fitted(self, "model_")
        if self.backend_ == "sklearn":
            return int(self.model_.n_iter_ * len(self.model_._predictors[0]))
        return len(self.model_.get_booster().get_dump())


class GBTClassifier(_GBTBase):
    """Gradient-boosted tree classifier; ``predict_proba`` columns follow ``classes_`` (sorted labels)."""

    _task = "classification"

    def fit(self, X_train, y_train, X_val=None, y_val=None) -> "GBTClassifier":
        X, y = check_xy(X_train, y_train, "GBTClassifier.fit")
        self.classes_, yi = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"GBTClassifier.fit: need at least 2 classes, found {self.classes_}")
        yv = None
        if X_val is not None and y_val is not None:
            yv = np.searchsorted(self.classes_, np.asarray(y_val))
            if not np.all(self.classes_[np.clip(yv, 0, self.classes_.size - 1)] == np.asarray(y_val)):
                raise ValueError("GBTClassifier.fit: y_val holds labels absent from y_train")
        return self._fit(X, yi, X_val, yv)

    def predict_proba(self, X) -> np.ndarray:
        check_fitted(self, "model_")
        return self.model_.predict_proba(check_xy(X, None, "GBTClassifier.predict_proba", self.n_features_))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class GBTRegressor(_GBTBase):
    """Gradient-boosted tree regressor (squared error)."""

    _task = "regression"

    def fit(self, X_train, y_train, X_val=None, y_val=None) -> "GBTRegressor":
        X, y = check_xy(X_train, y_train, "GBTRegressor.fit")
        yv = None if y_val is None else np.asarray(y_val, dtype=np.float64)
        return self._fit(X, y.astype(np.float64), X_val, yv)

    def predict(self, X) -> np.ndarray:
        check_fitted(self, "model_")
        return self.model_.predict(check_xy(X, None, "GBTRegressor.predict", self.n_features_))


class EnergyTreeRegression(GBTRegressor):
    """:class:`GBTRegressor` with the seed 001 App. D settings (1000 trees max, depth 3, learning rate 0.3,
    early stopping after 10 rounds); feed it :func:`pcloud.features.energy_regression_features`."""

    def __init__(self, backend: str = "auto", seed: int = 0, **kw):
        params = dict(max_iter=1000, learning_rate=0.3, max_depth=3, max_leaf_nodes=None, early_stopping=True,
                      n_iter_no_change=10)
        params.update(kw)
        super().__init__(backend=backend, seed=seed, **params)
