"""Input checks and the small interface shared by the classical baselines.

Every baseline has ``fit(X_train, y_train, X_val=None, y_val=None) -> self``, ``predict(X)``, classifiers also
``predict_proba(X) -> (N, K)`` (columns in the order of ``classes_``), a ``n_params`` property and a ``seed``.
"""
from __future__ import annotations

import numpy as np


def check_xy(X, y=None, where: str = "fit", n_features: int | None = None):
    """Validate a feature matrix (N, F) (and targets (N,)); returns float64 X and y as given."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be a 2-D (N, F) array, found shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{where}: X has {X.shape[1]} features, the model was fitted on {n_features}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{where}: X holds NaN or inf")
    if y is None:
        return X
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"{where}: y must have shape ({X.shape[0]},) to match X, found {y.shape}")
    return X, y


def check_fitted(model, attr: str):
    if getattr(model, attr, None) is None:
        raise RuntimeError(f"{type(model).__name__}: call fit() before using the model")
