"""Per-point model features: named functions of the point columns of the schema (:mod:`pcloud.core.schema`).

A model asks for features by name (``["x", "y", "z", "layer", "log_energy"]``); :func:`feature_matrix` turns the flat
point columns of a batch into an ``(n_points, F)`` float32 matrix. Every feature pcloud knows is defined here, the
particle-flow ones (``deta``, ``dphi``, ``delta_r_ref``, ``dr_nearest_track``, ``log_track_pt``; columns that
:func:`pcloud.pflow.clouds.track_clouds` and ``event_clouds`` add) included, so the registry does not depend on
which modules were imported. Users add their own with :func:`register_feature`.

Not to be confused with :mod:`pcloud.features`, the per-event shower-shape variables of the classical baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Feature:
    """A named per-point model feature: ``fn(cols)`` maps flat numpy point columns to a ``(n, width)`` array."""

    name: str
    width: int
    fn: Callable[[dict], np.ndarray]
    needs: tuple[str, ...]
    description: str
    #: False for features that must not be standardised (one-hot codes).
    standardise: bool = True


def _col(name):
    return lambda c: c[name].astype(np.float32)[:, None]


def _log_col(name, floor_gev):
    """``ln(max(x, floor) / GeV)`` of column ``name``: finite for values <= 0 (the documented floors: 1 MeV for
    energies, so noise and track points with E <= 0 stay finite; 0.1 GeV for pT, below every track's pT)."""
    return lambda c: np.log(np.maximum(c[name].astype(np.float64), floor_gev)).astype(np.float32)[:, None]


def _type_onehot(c):
    t = c["type"].astype(np.int64)
    out = np.zeros((t.size, 3), dtype=np.float32)
    ok = (t >= 0) & (t < 3)
    out[np.nonzero(ok)[0], t[ok]] = 1.0
    return out


POINT_FEATURES: dict[str, Feature] = {}


def register_feature(feature: Feature) -> Feature:
    """Add a feature to :data:`POINT_FEATURES` (models select features by name)."""
    POINT_FEATURES[feature.name] = feature
    return feature


for _name, _desc in (("x", "cell/track x (mm)"), ("y", "y (mm)"), ("z", "z (mm)"), ("eta", "pseudorapidity"),
                     ("phi", "azimuth (rad)"), ("layer", "global layer index"), ("energy", "energy (GeV)"),
                     ("noise_sigma", "cell noise sigma (GeV)"), ("delta_r", "Delta R to the focal track"),
                     ("track_pt", "track pT (GeV)"), ("track_chi2_ndf", "track chi2/ndf")):
    register_feature(Feature(_name, 1, _col(_name), (_name,), _desc))
register_feature(Feature("log_energy", 1, _log_col("energy", 1e-3), ("energy",), "ln(max(E, 1 MeV) / GeV)"))
register_feature(Feature("type_onehot", 3, _type_onehot, ("type",),
                         "one-hot of type: cell, focal track, other track (padding: all zero)", standardise=False))


# particle-flow clouds (pcloud.pflow.clouds): positions relative to the focal / nearest track
for _name, _desc in (("deta", "eta - eta of the focal/nearest track at the point's layer"),
                     ("dphi", "phi - phi of the focal/nearest track at the layer (rad)"),
                     ("delta_r_ref", "Delta R to the reference point"),
                     ("dr_nearest_track", "Delta R to the nearest track at the point's layer (event clouds)")):
    register_feature(Feature(_name, 1, _col(_name), (_name,), _desc))
# cells (pT = 0) get the floor ln(0.1) (tracks have pT > 0.5 GeV)
register_feature(Feature("log_track_pt", 1, _log_col("track_pt", 0.1), ("track_pt",),
                         "ln(max(track pT, 0.1 GeV) / GeV)"))
register_feature(Feature("dr_other_track", 1, _col("dr_other_track"), ("dr_other_track",),
                         "Delta R to the nearest other track of a per-track cloud at the point's layer (1: none)"))


register_feature(Feature("log_other_track_pt", 1, _log_col("other_track_pt", 0.1), ("other_track_pt",),
                         "ln(max(pT of that other track, 0.1 GeV) / GeV) (0.1 GeV: none)"))


# cell neighbourhoods of the per-track clouds (pcloud.pflow.clouds.neighbour_energy); sums <= 0 (no neighbour, or
# noise only) get the 1 MeV floor of log_energy
for _name, _desc in (("same", "its own layer"), ("inner", "the overlapping cells of the layer in front"),
                     ("outer", "the overlapping cells of the layer behind")):
    register_feature(Feature(f"log_nbr_energy_{_name}", 1, _log_col(f"nbr_energy_{_name}", 1e-3), (f"nbr_energy_{_name}",),
                             f"ln(max(E, 1 MeV) / GeV) of the summed energy of the cell's neighbours in {_desc}"))


def _local_max(c):
    cell = c["type"].astype(np.int64) == 0
    return (cell & (c["energy"] > 0) & (c["energy"] > c["nbr_max_same"])).astype(np.float32)[:, None]


register_feature(Feature("local_max", 1, _local_max, ("type", "energy", "nbr_max_same"),
                         "1 for a cell with E > 0 above every neighbour of its layer, else 0", standardise=False))

#: the four cell-neighbourhood features, in the order the particle-flow segmenters add them
NEIGHBOUR_FEATURES = ["log_nbr_energy_same", "log_nbr_energy_inner", "log_nbr_energy_outer", "local_max"]
#: the JetPointNet point encoding of the per-track clouds (seed 002 backup, "Data Representation"): the per-track
#: segmenters' features before the cell neighbourhoods were added (the legacy recipe of ``bench pflow``)
JETPOINTNET_FEATURES = ["type_onehot", "delta_r", "deta", "dphi", "layer", "log_energy", "noise_sigma",
                        "log_track_pt", "track_chi2_ndf"]


def feature_names(spec) -> list[str] | None:
    """A list of feature names from a specification: None (None: the caller's default), ``"jetpointnet"``
    (:data:`JETPOINTNET_FEATURES`), a comma-separated string of names, or a list (of names or :class:`Feature`
    objects, kept as given); unknown names raise (:func:`resolve_features`)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = JETPOINTNET_FEATURES if spec.strip() == "jetpointnet" else [f.strip() for f in spec.split(",")
                                                                           if f.strip()]
    names = list(spec)
    resolve_features(names)
    return names


def resolve_features(features) -> list[Feature]:
    """Feature objects for a list of names (clear error for unknown names)."""
    if isinstance(features, str):
        features = [features]
    out = []
    for f in features:
        if isinstance(f, Feature):
            out.append(f)
        elif f in POINT_FEATURES:
            out.append(POINT_FEATURES[f])
        else:
            raise KeyError(f"unknown feature {f!r}; known: {sorted(POINT_FEATURES)}")
    if not out:
        raise ValueError("at least one feature is needed")
    return out


def feature_columns(features) -> list[str]:
    """Names of the columns of the feature matrix (``type_onehot`` expands to three)."""
    names = []
    for f in resolve_features(features):
        names += [f.name] if f.width == 1 else [f"{f.name}[{i}]" for i in range(f.width)]
    return names


def feature_matrix(cols: dict, features) -> np.ndarray:
    """``(n_points, F)`` float32 feature matrix from flat per-point numpy columns."""
    feats = resolve_features(features)
    parts = []
    for f in feats:
        missing = [n for n in f.needs if n not in cols]
        if missing:
            raise KeyError(f"feature {f.name!r} needs point field(s) {missing}; available {sorted(cols)}")
        parts.append(f.fn(cols))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def standardise_mask(features) -> np.ndarray:
    """Per feature column: True where :mod:`pcloud.data.normalise` may standardise it."""
    return np.concatenate([np.full(f.width, f.standardise) for f in resolve_features(features)])
