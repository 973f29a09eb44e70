"""One-look summary of a cloud array or a native store (used by ``pcloud info``)."""
from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from .schema import PointType, validate_clouds


def summarise(path_or_clouds) -> dict:
    """Events, points per event (mean/min/max), total energy (GeV, float64 sum), points and energy per point type,
    geometry and threshold. A path is streamed row group by row group, reading only ``points.type`` and
    ``points.energy``."""
    meta: dict = {}
    if isinstance(path_or_clouds, ak.Array):
        clouds = validate_clouds(path_or_clouds, "summarise")
        chunks = [clouds]
        params = ak.parameters(clouds)
        geometry, threshold = params.get("pcloud_geometry"), params.get("pcloud_threshold_gev")
    elif isinstance(path_or_clouds, (str, Path)):
        from ..io.native import iter_clouds, read_meta

        meta = read_meta(path_or_clouds)
        chunks = iter_clouds(path_or_clouds, columns=["points.type", "points.energy"])
        geometry, threshold = meta["geometry"]["name"], meta.get("threshold_gev")
    else:
        raise TypeError(f"summarise: expected a cloud array or a path, found {type(path_or_clouds).__name__}")
    n_types = len(PointType)
    n_events, n_pts, pmin, pmax = 0, 0, None, None
    e_type = np.zeros(n_types)
    n_type = np.zeros(n_types, dtype=np.int64)
    for chunk in chunks:
        if not len(chunk):
            continue
        counts = ak.to_numpy(ak.num(chunk.points, axis=1))
        n_events += counts.size
        n_pts += int(counts.sum())
        pmin = int(counts.min()) if pmin is None else min(pmin, int(counts.min()))
        pmax = int(counts.max()) if pmax is None else max(pmax, int(counts.max()))
        typ = ak.to_numpy(ak.flatten(chunk.points["type"], axis=1)).astype(np.int64)
        e = ak.to_numpy(ak.flatten(chunk.points.energy, axis=1)).astype(np.float64)
        typ = np.clip(typ, 0, n_types - 1)
        e_type += np.bincount(typ, weights=e, minlength=n_types)
        n_type += np.bincount(typ, minlength=n_types)
    out = {
        "n_events": n_events,
        "n_points": n_pts,
        "points_per_event": {"mean": n_pts / n_events if n_events else 0.0, "min": pmin or 0, "max": pmax or 0},
        "total_energy_gev": float(e_type.sum()),
        "energy_by_type_gev": {t.name: float(e_type[t]) for t in PointType},
        "points_by_type": {t.name: int(n_type[t]) for t in PointType},
        "geometry": geometry,
        "threshold_gev": threshold,
    }
    if meta:
        out["geometry_kwargs"] = meta["geometry"].get("kwargs", {})
        out["schema_version"] = meta.get("schema_version")
        out["seed"] = meta.get("seed")
        out["generator"] = meta.get("generator")
    return out
