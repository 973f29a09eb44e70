"""3D CNN of the CLIC end-to-end reconstruction study (seed 001 §5.1, "CNN").

Belayneh et al., "Calorimetry with deep learning: particle simulation and reconstruction for collider physics"
(seed 001): one convolutional layer per calorimeter section, each followed by ReLU and a 2×2×2 max pooling; the
pooled maps are flattened, concatenated with the total section energies (and angles -> ``n_global``) and passed
to dense layers with ReLU and dropout. Sections with several layers use ``Conv3d`` over (layer, u, v); single-layer
sections use ``Conv2d`` over (u, v) with 2×2 pooling. Convolutions are unpadded ("valid", the Keras default);
kernels and pool sizes are clipped to the section's extent so that any geometry builds.

The paper's HCAL layer has 3 filters of 2×2×6 (x, y, z); in this (layer, u, v) order that is
``CNN3D(geom, filters={"HCAL": 3}, kernel={"HCAL": (6, 2, 2)})``. ECAL filters/kernel were tuned there; the
default here is 8 filters of 3×3×3 for every section.

Parameter counts with the defaults (2 classes, energy regression with skip, hidden (128, 64)):
calogan 93,183; clic 1,847,371; cms 239,191.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import DenseModel, encoded_size


def _per_section(value, name, default):
    if isinstance(value, dict):
        return value.get(name, default)
    return default if value is None else value


class CNN3D(DenseModel):
    """One conv + ReLU + max-pool per section, then dense layers.

    filters: int or ``{section: int}`` (default 8). kernel: int, tuple or ``{section: int | tuple}`` (default 3);
    a tuple is (layer, u, v) for multi-layer sections and (u, v) for single-layer ones.
    """

    def __init__(self, geometry, *, filters=8, kernel=3, hidden=(128, 64), dropout: float = 0.1, **kwargs):
        super().__init__(geometry, hidden=hidden, dropout=dropout, **kwargs)
        self.streams = nn.ModuleDict()
        self._is3d = {}
        n_enc = 0
        for name, (nl, nu, nv) in self.specs:
            f = int(_per_section(filters, name, 8))
            k = _per_section(kernel, name, 3)
            is3d = nl > 1
            dims = (nl, nu, nv) if is3d else (nu, nv)
            k = (k,) * len(dims) if isinstance(k, int) else tuple(int(v) for v in k)
            if len(k) != len(dims) or f < 1 or min(k) < 1:
                raise ValueError(f"CNN3D: section {name!r} with shape {(nl, nu, nv)} needs {len(dims)} positive "
                                 f"kernel sizes and >= 1 filters, got kernel={k}, filters={f}")
            k = tuple(min(a, d) for a, d in zip(k, dims))
            pool = tuple(min(2, d - a + 1) for a, d in zip(k, dims))
            conv, mp = (nn.Conv3d, nn.MaxPool3d) if is3d else (nn.Conv2d, nn.MaxPool2d)
            stream = nn.Sequential(conv(1, f, k), nn.ReLU(), mp(pool), nn.Flatten())
            self.streams[name] = stream
            self._is3d[name] = is3d
            n_enc += encoded_size(stream, (1, *dims))
        self._finish(n_enc)

    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        out = []
        for name in self.section_names:
            t = x[name]
            t = t.unsqueeze(1) if self._is3d[name] else t  # (B,1,L,U,V) or (B,1,U,V) (single layer as channel)
            out.append(self.streams[name](t))
        return torch.cat(out, dim=1)
