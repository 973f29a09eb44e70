"""High-level features of showers: the shower-shape variables of seed 004 Table 2 and the seed 001 summaries."""
from .shower_shapes import (FEATURE_SETS, calogan20_names, energy_regression_features, feature_names, feature_unit,
                            section_sums, shower_shapes)

__all__ = ["FEATURE_SETS", "calogan20_names", "energy_regression_features", "feature_names", "feature_unit",
           "section_sums", "shower_shapes"]
