"""Multi-stream DenseNet, one stream per section (seed 004 §3.1.5).

Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017 (arXiv:1608.06993):
inside a dense block the l-th layer receives the concatenation of the feature maps of all previous layers,
:math:`x_l = H_l([x_0, x_1, \\ldots, x_{l-1}])`, and adds ``growth`` new maps. We use the DenseNet-BC composite
function :math:`H_l` = BN - ReLU - Conv1×1 (``bottleneck``·growth maps) - BN - ReLU - Conv3×3 (growth maps), and
transition layers BN - ReLU - Conv1×1 (``compression``·channels) - AvgPool 2×2 between blocks (the pool is
clipped to 1 along axes already of size 1). Each stream ends with BN - ReLU and global average *and* max pooling.
Seed 004 runs one such stream per CaloGAN layer and reports the best e/γ and e/π separation with only 351,057
parameters; here each section is one stream with its layers as input channels.

Parameter counts with the defaults (growth 12, block_layers (3, 3), hidden (64,), 2 classes, energy skip):
calogan 162,751; clic 126,515; cms 54,423.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import DenseModel, encoded_size


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1-BN-ReLU-Conv3×3; returns ``cat([x, new], 1)`` (``growth`` new channels)."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4):
        super().__init__()
        mid = bottleneck * growth
        self.fn = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, mid, 1, bias=False),
                                nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.fn(x)], dim=1)


class Transition(nn.Module):
    """BN-ReLU-Conv1×1 to ``out_channels`` then average pooling (2 per axis, 1 along size-1 axes)."""

    def __init__(self, in_channels: int, out_channels: int, hw: tuple[int, int]):
        super().__init__()
        pool = tuple(min(2, d) for d in hw)
        self.fn = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(),
                                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(pool))
        self.out_hw = tuple(d // p for d, p in zip(hw, pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class DenseNetStream(nn.Module):
    """Stem Conv3×3 (2·growth maps) - [dense block - transition]* - dense block - BN-ReLU - global avg ⊕ max pool."""

    def __init__(self, in_channels: int, hw: tuple[int, int], growth: int = 12, block_layers=(3, 3),
                 bottleneck: int = 4, compression: float = 0.5):
        super().__init__()
        c = 2 * growth
        mods = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        for i, n in enumerate(block_layers):
            for _ in range(int(n)):
                mods.append(DenseLayer(c, growth, bottleneck))
                c += growth
            if i < len(block_layers) - 1:
                out = max(1, int(c * compression))
                t = Transition(c, out, hw)
                mods.append(t)
                hw, c = t.out_hw, out
        mods += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*mods)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)


class DenseNetStreams(DenseModel):
    """One DenseNet-BC stream per section, pooled features concatenated, small fully-connected top."""

    def __init__(self, geometry, *, growth: int = 12, block_layers=(3, 3), bottleneck: int = 4,
                 compression: float = 0.5, hidden=(64,), dropout: float = 0.1, **kwargs):
        super().__init__(geometry, hidden=hidden, dropout=dropout, **kwargs)
        if int(growth) < 1 or not block_layers or min(int(n) for n in block_layers) < 1 or not 0 < compression <= 1:
            raise ValueError(f"DenseNetStreams: need growth >= 1, non-empty positive block_layers and "
                             f"0 < compression <= 1, got {growth}, {block_layers}, {compression}")
        self.streams = nn.ModuleDict()
        n_enc = 0
        for name, (nl, nu, nv) in self.specs:
            s = DenseNetStream(nl, (nu, nv), int(growth), tuple(block_layers), int(bottleneck), float(compression))
            self.streams[name] = s
            n_enc += encoded_size(s, (nl, nu, nv))
        self._finish(n_enc)

    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.streams[n](x[n]) for n in self.section_names], dim=1)
