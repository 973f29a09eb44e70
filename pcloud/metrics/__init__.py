"""Metrics users trust: classification (ROC, rejection), regression (bias, resolution fit), segmentation."""
from .classification import (ROC, accuracy, auc, background_rejection, fpr_at_tpr, one_vs_rest_auc,
                             paired_rejection_difference, rejection_uncertainty, relative_rejection,
                             relative_rejection_table, roc_curve)
from .regression import (accuracy_in_bins, binned_response, fit_resolution, gaussian_core_fit, resolution_function,
                         robust_width)
from .segmentation import (attributed_energy, format_report, hard_scores, report_with_baselines,
                           smart_random_baseline, smart_random_predictions, soft_scores, track_energy_response,
                           trivial_baseline)

__all__ = ["ROC", "accuracy", "auc", "background_rejection", "fpr_at_tpr", "one_vs_rest_auc",
           "paired_rejection_difference", "rejection_uncertainty", "relative_rejection", "relative_rejection_table",
           "roc_curve",
           "accuracy_in_bins", "binned_response", "fit_resolution", "gaussian_core_fit", "resolution_function",
           "robust_width", "attributed_energy", "format_report", "hard_scores", "report_with_baselines",
           "smart_random_baseline", "smart_random_predictions", "soft_scores", "track_energy_response",
           "trivial_baseline"]
