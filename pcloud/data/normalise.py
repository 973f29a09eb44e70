"""Per-feature standardisation ``(f - mean) / std`` fitted on the training split only.

Statistics are accumulated over the *real points* of the training events (padding never counts), chunk by chunk in
float64 with the pairwise update of Chan, Golub & LeVeque ("Algorithms for computing the sample variance", 1983),
so a Parquet store can be fitted without loading it whole. Energies are best standardised through the
``log_energy`` feature (registry in :mod:`pcloud.data.point_features`). Columns of features marked ``standardise=False``
(one-hot codes) are left as they are (mean 0, std 1). A std below ``min_std`` (constant features) is set to 1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

from ..core.atomic import atomic_output
from ..core.schema import validate_clouds
from .point_features import feature_columns, feature_matrix, resolve_features, standardise_mask


@dataclass
class Normaliser:
    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    n_points: int = 0
    fitted_on: dict = field(default_factory=dict)

    def __post_init__(self):
        self.features = [f if isinstance(f, str) else f.name for f in self.features]
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        width = len(feature_columns(self.features))
        if self.mean.shape != (width,) or self.std.shape != (width,):
            raise ValueError(f"Normaliser: features {self.features} have {width} columns, found mean {self.mean.shape}"
                             f" and std {self.std.shape}")
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.mean)):
            raise ValueError(f"Normaliser: std must be > 0 and mean finite, found mean {self.mean}, std {self.std}")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, source, features, splits=None, split: str = "train", min_std: float = 1e-6) -> "Normaliser":
        """Fit on the points of ``source`` (a cloud array or an iterable of cloud chunks, e.g.
        :meth:`pcloud.io.native.NativeStore.chunks`).

        With ``splits`` (:class:`pcloud.data.splits.Splits`) only events of split ``split`` (default ``"train"``)
        are used; without, every event given is used, so pass training events only.
        """
        feats = resolve_features(features)
        names = [f.name for f in feats]
        if isinstance(source, (str, Path)):
            raise TypeError("Normaliser.fit: give clouds (an array or an iterable of chunks), not a path; open a "
                            "native store with pcloud.io.native.NativeStore(path).chunks()")
        chunks = [source] if isinstance(source, ak.Array) else source
        n, mean, m2, n_events = 0, None, None, 0
        for chunk in chunks:
            validate_clouds(chunk, "Normaliser.fit")
            if splits is not None:
                chunk = splits.select(chunk, split)
            n_events += len(chunk)
            pts = ak.flatten(chunk.points, axis=1)
            cols = {k: ak.to_numpy(pts[k]) for f in feats for k in f.needs}
            typ = ak.to_numpy(pts["type"])
            x = feature_matrix(cols, feats).astype(np.float64)[typ != 3]
            if not len(x):
                continue
            if not np.all(np.isfinite(x)):
                raise ValueError(f"Normaliser.fit: non-finite feature values in columns "
                                 f"{[c for c, b in zip(feature_columns(feats), ~np.isfinite(x).all(0)) if b]}")
            nb, mb = len(x), x.mean(axis=0)
            m2b = ((x - mb) ** 2).sum(axis=0)
            if mean is None:
                n, mean, m2 = nb, mb, m2b
            else:
                delta = mb - mean
                tot = n + nb
                mean = mean + delta * nb / tot
                m2 = m2 + m2b + delta ** 2 * n * nb / tot
                n = tot
        if mean is None:
            raise ValueError(f"Normaliser.fit: no points to fit on (split {split!r} empty?)")
        std = np.sqrt(m2 / n)
        std = np.where(std < min_std, 1.0, std)
        keep = ~standardise_mask(feats)
        mean = np.where(keep, 0.0, mean)
        std = np.where(keep, 1.0, std)
        return cls(names, mean, std, int(n), {"split": split if splits is not None else None,
                                              "splits": None if splits is None else splits.to_dict(),
                                              "n_events": n_events})

    # ------------------------------------------------------------------ applying
    def transform_flat(self, x):
        """Standardise a ``(..., F)`` numpy array or tensor (no mask: every row is a real point)."""
        if x.shape[-1] != self.mean.size:
            raise ValueError(f"Normaliser: expected {self.mean.size} feature columns {feature_columns(self.features)},"
                             f" found {x.shape[-1]}")
        if isinstance(x, np.ndarray):
            return ((x - self.mean) / self.std).astype(x.dtype)
        import torch

        m = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
        s = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        return (x - m) / s

    def apply(self, batch: dict) -> dict:
        """Standardise ``batch["x"]`` of a padded batch; padding positions (``~batch["mask"]``) stay 0."""
        x = self.transform_flat(batch["x"])
        mask = batch["mask"].unsqueeze(-1)
        out = dict(batch)
        out["x"] = x * mask.to(x.dtype)
        return out

    def inverse_flat(self, x):
        return x * (self.std if isinstance(x, np.ndarray) else x.new_tensor(self.std)) + \
            (self.mean if isinstance(x, np.ndarray) else x.new_tensor(self.mean))

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"features": self.features, "columns": feature_columns(self.features), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "n_points": self.n_points, "fitted_on": self.fitted_on}

    def save(self, path) -> None:
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "Normaliser":
        try:
            d = json.loads(Path(path).read_text())
        except ValueError as err:
            raise ValueError(f"{path}: expected a JSON normaliser ({err})") from None
        missing = [k for k in ("features", "mean", "std") if k not in d]
        if missing:
            raise ValueError(f"{path}: normaliser JSON lacks {missing}; found keys {sorted(d)}")
        return cls(d["features"], d["mean"], d["std"], d.get("n_points", 0), d.get("fitted_on", {}))
