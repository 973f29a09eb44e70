"""Fully-connected network on the unrolled pixel intensities (seed 004 §3.1.2).

de Oliveira, Nachman, Paganini, "Electromagnetic showers beyond shower shapes" (seed 004): every cell of every
section is one input; the paper's hidden blocks are Linear - LeakyReLU - Dropout - BatchNorm1d (here the shared
:func:`pcloud.nn.heads.make_mlp_layers` order Linear - BatchNorm1d - LeakyReLU(0.2) - Dropout). The paper uses widths
(512, 1024, 2048, 1024, 128) (5.1 M parameters on the 504 CaloGAN pixels); the default here, (128, 128, 64), is a
CPU-sized version. The seed 001 DNN is the same idea with ReLU - Dropout blocks and the section energies appended
(always done here: the section energies enter the head as per-event features).

Parameter counts with the defaults (2 classes, energy regression with skip, no targets/globals; head hidden (128, 128, 64)):
calogan (504 pixels) 90,319; clic (22,885 voxels) 2,954,955; cms (1,024 pixels) 156,615.
"""
from __future__ import annotations

import math

import torch

from .base import DenseModel


class PixelFCN(DenseModel):
    """FCN on the concatenated flattened sections; see :class:`DenseModel` for the common keyword arguments."""

    def __init__(self, geometry, *, hidden=(128, 128, 64), norm="batch", act="leaky_relu", dropout: float = 0.2,
                 **kwargs):
        super().__init__(geometry, hidden=hidden, norm=norm, act=act, dropout=dropout, **kwargs)
        self.n_pixels = sum(math.prod(shape) for _, shape in self.specs)
        self._finish(self.n_pixels)

    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([x[n].flatten(1) for n in self.section_names], dim=1)
