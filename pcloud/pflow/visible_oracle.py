"""The visible-truth oracle: a per-track segmenter that is *told* the true focal fraction of every cell it can see.

Cell F1 counts every cell once, and in the benchmark's events 72 % of the topo-clustered cells with E > 0 lie below
2 sigma of noise (618 test events of a 3000-event sample), where the measured energy says little about the cell's own
true deposit (the deposits that decide its truth label are mostly invisible). How much of the F1 gap could any
method close there? This segmenter answers it empirically: it is a
:class:`~pcloud.pflow.learned.FocalTrackSegmenter` (same model, recipe and inference) whose points carry two extra
features,

* ``truth_fraction_visible``: the true focal-track fraction of the cell's clipped truth deposits
  (:func:`pcloud.core.schema.target_fractions`) where the cell is *visible*, i.e. its current energy exceeds
  ``visible_sigma`` times its noise sigma; 0 elsewhere and for track points;
* ``visible``: 1 for such cells, else 0.

So it knows exactly which particle made every visible cell and must still label the faint cells from that pattern.
Where its F1 on the faint cells equals that of the plain model, knowing the visible cells perfectly does not help
the faint ones: their labels are limited by the noise, not by how well the model reads the showers; and the F1 of
this oracle is what a method would reach that labels every visible cell perfectly and the faint ones as well as
the learned model. It is an oracle (it reads the truth): a reference row for studies, never a method.

``python scripts/pflow_study.py curve --visible-sigma 2 ...`` trains it beside the plain model on the same events.
"""
from __future__ import annotations

import awkward as ak
import numpy as np

from ..core.schema import PointType, target_fractions
from ..data.point_features import Feature, _col, register_feature
from .learned import DEFAULT_FEATURES, FocalTrackSegmenter

__all__ = ["VisibleTruthSegmenter", "VISIBLE_TRUTH_FEATURES", "add_visible_truth"]

#: the point features the oracle adds to the segmenter's own
VISIBLE_TRUTH_FEATURES = ["truth_fraction_visible", "visible"]


for _name, _desc in (("truth_fraction_visible", "TRUE focal fraction of a visible cell (oracle studies only)"),
                     ("visible", "1 for a cell above the oracle's significance cut (oracle studies only)")):
    register_feature(Feature(_name, 1, _col(_name), (_name,), _desc))


def add_visible_truth(clouds, visible_sigma: float) -> ak.Array:
    """``clouds`` (per-track, with truth lists and ``focal_truth_index``) with the per-point fields ``visible`` and
    ``truth_fraction_visible`` of the module docstring (cells with ``energy > visible_sigma * noise_sigma``)."""
    if not (np.isfinite(visible_sigma) and visible_sigma >= 0):
        raise ValueError(f"add_visible_truth: visible_sigma must be a number >= 0, found {visible_sigma!r}")
    for f in ("truth_index", "truth_energy", "noise_sigma", "energy", "type"):
        if f not in ak.fields(clouds.points):
            raise ValueError(f"add_visible_truth: the clouds have no per-point {f!r} (per-track clouds with truth, "
                             "pcloud.pflow.clouds.track_clouds, are needed)")
    if "focal_truth_index" not in ak.fields(clouds):
        raise ValueError("add_visible_truth: the clouds have no 'focal_truth_index' (per-track clouds are needed)")
    p = clouds.points
    vis = (p["type"] == int(PointType.CELL)) & (p.energy > float(visible_sigma) * p.noise_sigma)
    frac = target_fractions(p, clouds.focal_truth_index)
    clouds = ak.with_field(clouds, ak.values_astype(ak.where(vis, frac, 0.0), np.float32),
                           ["points", "truth_fraction_visible"])
    return ak.with_field(clouds, ak.values_astype(vis, np.float32), ["points", "visible"])


class VisibleTruthSegmenter(FocalTrackSegmenter):
    """:class:`~pcloud.pflow.learned.FocalTrackSegmenter` plus the true focal fraction of every visible cell as a
    point feature (module docstring). ``visible_sigma``: the significance cut of a visible cell (default 2); other
    arguments as the base class (``features`` default: the base class's plus :data:`VISIBLE_TRUTH_FEATURES`)."""

    default_features = list(DEFAULT_FEATURES) + VISIBLE_TRUTH_FEATURES

    def __init__(self, *args, visible_sigma: float = 2.0, **kw):
        if not (np.isfinite(visible_sigma) and visible_sigma >= 0):
            raise ValueError(f"VisibleTruthSegmenter: visible_sigma must be a number >= 0, found {visible_sigma!r}")
        self.visible_sigma = float(visible_sigma)
        if kw.get("residual_clouds"):
            raise ValueError("VisibleTruthSegmenter: residual_clouds is not offered for the oracle (its clouds carry "
                             "the truth fields that make_clouds adds)")
        super().__init__(*args, **kw)
        missing = [f for f in VISIBLE_TRUTH_FEATURES if f not in self.features]
        if missing:
            raise ValueError(f"VisibleTruthSegmenter: features must include {missing} (the oracle's inputs)")

    def _config(self) -> dict:
        return {**super()._config(), "visible_sigma": self.visible_sigma}

    def tensors(self, clouds, with_targets: bool = True):
        # every path (training, threshold choice, inference) goes through here: add the oracle fields from the
        # clouds' own truth lists and current energies
        return super().tensors(add_visible_truth(clouds, self.visible_sigma), with_targets)

    def make_clouds(self, events, geometry):
        return add_visible_truth(super().make_clouds(events, geometry), self.visible_sigma)
