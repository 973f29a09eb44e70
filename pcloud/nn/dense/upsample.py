"""Upsample-and-stack CNN (seed 000, ATLAS electron images talk, S. Thais, USLUA 2018).

The talk's design: up-sample every layer image to a common granularity, stack them into a 3D volume, apply a
shared convolution, down-sample, flatten and feed a dense network. Here:

* the common grid spans the union of the sections' transverse extents with the finest cell pitch found in any
  section along each axis (capped at ``max_cells`` cells per axis, in which case it is coarser);
* each layer is resampled with the energy-conserving overlap matrix
  :math:`R_{ij} = |{\\rm dst}_i \\cap {\\rm src}_j| / |{\\rm src}_j|` along u and along v,
  :math:`E' = R_u\\,E\\,R_v^T`. Every source cell's energy is shared among the target cells it overlaps in
  proportion to the overlapped length, so the sum of every layer is conserved whenever the target grid covers the
  source (it does: it spans the union). When the target pitch divides the source pitch this is cell replication
  with the energy divided by the replication factor (e.g. CaloGAN layer 0, 3×96 cells of 160×5 mm -> 12×96
  cells of 40×5 mm: each cell becomes 4 cells of E/4);
* all layers of all sections become the channels of one (B, n_layers_total, U, V) stack, in GeV; the
  :class:`ImageTransform` is applied to the stack (after resampling, so resampling acts on energies);
* the shared convolution is ``Conv2d(3×3, same) - ReLU - MaxPool 2×2`` repeated for ``channels``.

All sections must use the same grid kind (all ``xy`` mm, or all ``etaphi``...): their u/v coordinates must be
comparable.

Parameter counts with the defaults (channels (32, 32), max_cells 96, hidden (128, 64), 2 classes, energy skip):
calogan 314,031 (grid 12×96); clic 1,091,179 (grid 65×65, 85 channels); cms 280,423.
Cost: on CLIC the first convolution runs over 85 channels × 65 × 65 cells (about 0.1 GFLOP per event, the
slowest dense model on CPU, see ``scripts/bench_dense.py``); ``max_cells`` trades granularity for speed.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import DenseModel, encoded_size


def rebin_matrix(src_edges, dst_edges) -> np.ndarray:
    """Energy-sharing matrix ``(n_dst, n_src)``: fraction of source cell j's length inside target cell i.

    Columns sum to 1 for every source cell fully inside the target range (energy conservation).
    """
    s = np.asarray(src_edges, dtype=np.float64)
    d = np.asarray(dst_edges, dtype=np.float64)
    lo = np.maximum(d[:-1, None], s[None, :-1])
    hi = np.minimum(d[1:, None], s[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(s)[None, :]


def common_edges(edge_list, max_cells: int) -> np.ndarray:
    """Uniform edges spanning the union of ``edge_list`` with the finest pitch found (at most ``max_cells``)."""
    lo = min(float(e[0]) for e in edge_list)
    hi = max(float(e[-1]) for e in edge_list)
    pitch = min(float(np.min(np.diff(e))) for e in edge_list)
    n = int(np.ceil((hi - lo) / pitch - 1e-6))
    n = max(1, min(n, int(max_cells)))
    return np.linspace(lo, hi, n + 1)


class UpsampleStackCNN(DenseModel):
    """Resample all layers to one grid, stack them as channels, shared CNN, dense top.

    channels: output channels of the shared conv + pool blocks (default (32, 32)).
    max_cells: cap on the common grid size per axis (default 96).
    """

    def __init__(self, geometry, *, channels=(32, 32), max_cells: int = 96, hidden=(128, 64),
                 dropout: float = 0.1, **kwargs):
        super().__init__(geometry, hidden=hidden, dropout=dropout, **kwargs)
        kinds = {s.kind for s in geometry.sections}
        if len(kinds) != 1:
            raise ValueError(f"UpsampleStackCNN: all sections must share one grid kind to be stacked, geometry "
                             f"{self.geometry_name!r} has {sorted(kinds)}")
        if not channels or min(int(c) for c in channels) < 1 or int(max_cells) < 1:
            raise ValueError(f"UpsampleStackCNN: channels must be positive ints and max_cells >= 1, "
                             f"got channels={channels}, max_cells={max_cells}")
        self.u_edges = common_edges([s.u_edges for s in geometry.sections], max_cells)
        self.v_edges = common_edges([s.v_edges for s in geometry.sections], max_cells)
        for s in geometry.sections:  # float64 (exact sharing fractions), cast to the input dtype on use
            self.register_buffer(f"ru_{s.name}", torch.as_tensor(rebin_matrix(s.u_edges, self.u_edges),
                                                                  dtype=torch.float64), persistent=False)
            self.register_buffer(f"rv_{s.name}", torch.as_tensor(rebin_matrix(s.v_edges, self.v_edges),
                                                                  dtype=torch.float64), persistent=False)
        self.n_channels = sum(shape[0] for _, shape in self.specs)
        self.grid_shape = (self.u_edges.size - 1, self.v_edges.size - 1)
        layers, c, hw = [], self.n_channels, self.grid_shape
        for ch in channels:
            pool = tuple(min(2, d) for d in hw)
            layers += [nn.Conv2d(c, int(ch), 3, padding=1), nn.ReLU(), nn.MaxPool2d(pool)]
            c, hw = int(ch), tuple(d // p for d, p in zip(hw, pool))
        layers.append(nn.Flatten())
        self.cnn = nn.Sequential(*layers)
        self._finish(encoded_size(self.cnn, (self.n_channels, *self.grid_shape)))

    def stack_from_checked(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """Checked GeV images -> (B, n_layers_total, U, V) GeV stack (layers in geometry order)."""
        out = []
        for n in self.section_names:
            x = images[n]
            ru, rv = getattr(self, f"ru_{n}").to(x.dtype), getattr(self, f"rv_{n}").to(x.dtype)
            out.append(torch.einsum("ui,blij,vj->bluv", ru, x, rv))
        return torch.cat(out, dim=1)

    def stack(self, images) -> torch.Tensor:
        """Public helper: any ``{section: (B, L, n_u, n_v)}`` GeV images -> the resampled GeV stack."""
        from .preprocess import check_images
        return self.stack_from_checked(check_images(images, self.specs, self._anchor, type(self).__name__))

    def prepare(self, images, section_gev):
        return {"stack": self.transform({"stack": self.stack_from_checked(images)}, section_gev.sum(1))["stack"]}

    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.cnn(x["stack"])
