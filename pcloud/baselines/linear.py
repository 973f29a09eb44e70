"""Linear energy calibration E = a * E_ECAL + b * E_HCAL + c (seed 001, App. D, eq. 2).

For geometries with a single calorimeter (CaloGAN, CMS) the fit is E = a * E_tot + c. The fit is ordinary least
squares (numpy ``lstsq``); parameter errors come from the residual variance times (A^T A)^-1.
"""
from __future__ import annotations

import numpy as np

from ..core.showers import ShowerImages
from ._common import check_fitted, check_xy

#: Section-name prefixes counted as hadronic calorimeter by :func:`linear_inputs`.
HADRONIC_PREFIXES = ("HCAL", "Tile", "HEC", "HB", "HE")


def linear_inputs(showers: ShowerImages, groups: dict[str, list[str]] | None = None) -> tuple[np.ndarray, list[str]]:
    """Energy sums (GeV) per calorimeter group, the inputs of :class:`LinearEnergyRegression`.

    ``groups`` maps a column name to section names. Default: sections whose names start with one of
    :data:`HADRONIC_PREFIXES` form ``E_HCAL``, the others ``E_ECAL``; with no hadronic section the single column is
    ``E_tot`` (so CLIC gives [E_ECAL, E_HCAL], ATLAS [E_ECAL (EMB1-3), E_HCAL (Tile)], CaloGAN/CMS [E_tot]).
    """
    g = showers.geometry
    if groups is None:
        had = [s.name for s in g.sections if s.name.startswith(HADRONIC_PREFIXES)]
        em = [s.name for s in g.sections if s.name not in had]
        groups = {"E_ECAL": em, "E_HCAL": had} if had and em else {"E_tot": g.section_names}
    sums = showers.section_energy()
    cols = []
    for name, secs in groups.items():
        missing = set(secs) - set(sums)
        if missing or not secs:
            raise KeyError(f"linear_inputs: group {name!r} names sections {sorted(missing) or secs} not in geometry "
                           f"{g.name!r} (sections {g.section_names})")
        cols.append(sum(np.asarray(sums[s], dtype=np.float64) for s in secs))
    return np.stack(cols, axis=1), list(groups)


class LinearEnergyRegression:
    """Least-squares E_true = sum_j a_j X_j + c on energy sums (GeV); ``coef_`` = (a, b, ...), ``intercept_`` = c.

    ``seed`` is accepted for interface uniformity (the fit is deterministic). ``X_val``/``y_val`` are unused.
    """

    def __init__(self, fit_intercept: bool = True, seed: int = 0):
        self.fit_intercept = fit_intercept
        self.seed = seed
        self.coef_ = None
        self.intercept_ = 0.0

    def _design(self, X):
        return np.hstack([X, np.ones((X.shape[0], 1))]) if self.fit_intercept else X

    def fit(self, X_train, y_train, X_val=None, y_val=None) -> "LinearEnergyRegression":
        X, y = check_xy(X_train, y_train, "LinearEnergyRegression.fit")
        y = y.astype(np.float64)
        A = self._design(X)
        if A.shape[0] < A.shape[1]:
            raise ValueError(f"LinearEnergyRegression.fit: {A.shape[0]} events for {A.shape[1]} parameters")
        p, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ p
        dof = max(A.shape[0] - A.shape[1], 1)
        cov = np.linalg.pinv(A.T @ A) * (resid @ resid) / dof
        self.coef_ = p[:X.shape[1]]
        self.intercept_ = float(p[-1]) if self.fit_intercept else 0.0
        err = np.sqrt(np.clip(np.diag(cov), 0, None))
        self.coef_err_ = err[:X.shape[1]]
        self.intercept_err_ = float(err[-1]) if self.fit_intercept else 0.0
        self.n_features_ = X.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_fitted(self, "coef_")
        X = check_xy(X, None, "LinearEnergyRegression.predict", self.n_features_)
        return X @ self.coef_ + self.intercept_

    @property
    def n_params(self) -> int:
        check_fitted(self, "coef_")
        return int(self.coef_.size + int(self.fit_intercept))
