"""One-look summaries of cloud arrays and shower images (``pcloud info``), streamed chunk by chunk.

The functions take arrays or iterables of chunks; opening files is :mod:`pcloud.pipeline.describe`'s job.
"""
from __future__ import annotations

from typing import Iterable

import awkward as ak
import numpy as np

from ..core.schema import PointType, validate_clouds
from ..core.showers import ShowerImages


def _chunks(x, kind):
    if isinstance(x, kind):
        return [x]
    return x


class _Counts:
    """Running event / point counts: total, min and max points per event."""

    def __init__(self):
        self.n_events, self.n_points, self.pmin, self.pmax = 0, 0, None, None

    def add(self, counts: np.ndarray) -> None:
        if not counts.size:
            return
        self.n_events += counts.size
        self.n_points += int(counts.sum())
        self.pmin = int(counts.min()) if self.pmin is None else min(self.pmin, int(counts.min()))
        self.pmax = int(counts.max()) if self.pmax is None else max(self.pmax, int(counts.max()))

    def as_dict(self) -> dict:
        n = self.n_events
        return {"n_events": n, "n_points": self.n_points,
                "points_per_event": {"mean": self.n_points / n if n else 0.0, "min": self.pmin or 0,
                                     "max": self.pmax or 0}}


def summarise(clouds: ak.Array | Iterable[ak.Array]) -> dict:
    """Events, points per event (mean/min/max), total energy (GeV, float64 sum), and points and energy per point
    type of a cloud array or an iterable of cloud chunks (only ``points.type`` and ``points.energy`` are used)."""
    n_types = len(PointType)
    counts = _Counts()
    e_type = np.zeros(n_types)
    n_type = np.zeros(n_types, dtype=np.int64)
    for chunk in _chunks(clouds, ak.Array):
        if not len(chunk):
            continue
        counts.add(ak.to_numpy(ak.num(chunk.points, axis=1)))
        typ = ak.to_numpy(ak.flatten(chunk.points["type"], axis=1)).astype(np.int64)
        e = ak.to_numpy(ak.flatten(chunk.points.energy, axis=1)).astype(np.float64)
        typ = np.clip(typ, 0, n_types - 1)
        e_type += np.bincount(typ, weights=e, minlength=n_types)
        n_type += np.bincount(typ, minlength=n_types)
    return {**counts.as_dict(), "total_energy_gev": float(e_type.sum()),
            "energy_by_type_gev": {t.name: float(e_type[t]) for t in PointType},
            "points_by_type": {t.name: int(n_type[t]) for t in PointType}}


def summarise_clouds(clouds: ak.Array) -> dict:
    """:func:`summarise` of an in-memory cloud array plus the geometry and threshold it carries."""
    clouds = validate_clouds(clouds, "summarise_clouds")
    params = ak.parameters(clouds)
    return {**summarise(clouds), "geometry": params.get("pcloud_geometry"),
            "threshold_gev": params.get("pcloud_threshold_gev")}


def summarise_images(showers: ShowerImages | Iterable[ShowerImages], threshold_gev: float = 0.0) -> dict:
    """Events, cells above ``threshold_gev`` per event (the points a conversion would make), their total energy
    (GeV) and the true incident energy range, of shower images or an iterable of chunks."""
    counts = _Counts()
    tot, geometry, e_true = 0.0, None, []
    for chunk in _chunks(showers, ShowerImages):
        geometry = chunk.geometry.name
        flat = chunk.flat()
        above = flat > threshold_gev
        counts.add(above.sum(axis=1))
        tot += float(np.sum(flat, where=above, dtype=np.float64))
        if "energy_gev" in chunk.truth:
            e_true.append(np.asarray(chunk.truth["energy_gev"], dtype=np.float64))
    info = {"geometry": geometry, **counts.as_dict(), "threshold_gev": threshold_gev, "total_energy_gev": tot}
    if e_true:
        e = np.concatenate(e_true)
        info["true_energy_gev"] = {"mean": float(e.mean()), "min": float(e.min()), "max": float(e.max())}
    return info
