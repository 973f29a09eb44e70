"""Classical baselines: shower-shape FCN (seed 004), gradient-boosted trees and linear calibration (seed 001).

All share ``fit(X_train, y_train, X_val=None, y_val=None)``, ``predict`` (and ``predict_proba`` for classifiers),
``n_params`` and a ``seed``. Particle-flow baselines live in :mod:`pcloud.pflow`.
"""
from .linear import LinearEnergyRegression, linear_inputs
from .shower_shape_models import PAPER_WIDTHS, FCNClassifier, ShowerShapeFCN, count_parameters
from .trees import EnergyTreeRegression, GBTClassifier, GBTRegressor

__all__ = ["LinearEnergyRegression", "linear_inputs", "PAPER_WIDTHS", "FCNClassifier", "ShowerShapeFCN",
           "count_parameters", "EnergyTreeRegression", "GBTClassifier", "GBTRegressor"]
