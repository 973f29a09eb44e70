"""Multi-stream convolutional network, one stream per calorimeter section (seed 004 §3.1.4).

de Oliveira, Nachman, Paganini (seed 004) process each CaloGAN layer in its own stream (the CaloGAN/LAGAN design
with its locally-connected layers replaced by convolutions), concatenate the stream features and classify with
a fully-connected top. Here a stream is a stack of ``Conv2d(3×3, same padding) - BatchNorm2d - LeakyReLU(0.2)``
blocks over (u, v) with the section's layers as input channels (one layer per stream for CaloGAN/CMS; for the
CLIC ECAL/HCAL the 25/60 layers are the channels of one stream each), then an adaptive average pooling that caps
each map at ``pool_to`` cells per axis (smaller maps are kept as they are), then flatten.

Parameter counts with the defaults (channels (32, 16), pool_to 16, hidden (128, 64), 2 classes, energy skip):
calogan 564,767; clic 814,923; cms 538,039.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import DenseModel, encoded_size


def conv_stream_2d(in_channels: int, channels, out_hw: tuple[int, int]) -> nn.Sequential:
    """Conv-BN-LeakyReLU blocks then ``AdaptiveAvgPool2d(out_hw)`` and flatten."""
    layers, c = [], int(in_channels)
    for ch in channels:
        layers += [nn.Conv2d(c, int(ch), 3, padding=1), nn.BatchNorm2d(int(ch)), nn.LeakyReLU(0.2)]
        c = int(ch)
    layers += [nn.AdaptiveAvgPool2d(out_hw), nn.Flatten()]
    return nn.Sequential(*layers)


class MultiStreamCNN(DenseModel):
    """One 2D convolutional stream per section, features concatenated, fully-connected top.

    channels: output channels of the stream's conv blocks (default (32, 16)).
    pool_to: maximum map size per axis after the stream (default 16).
    """

    def __init__(self, geometry, *, channels=(32, 16), pool_to: int = 16, hidden=(128, 64), dropout: float = 0.1,
                 **kwargs):
        super().__init__(geometry, hidden=hidden, dropout=dropout, **kwargs)
        if not channels or min(int(c) for c in channels) < 1 or int(pool_to) < 1:
            raise ValueError(f"MultiStreamCNN: channels must be positive ints and pool_to >= 1, "
                             f"got channels={channels}, pool_to={pool_to}")
        self.streams = nn.ModuleDict()
        n_enc = 0
        for name, (nl, nu, nv) in self.specs:
            s = conv_stream_2d(nl, channels, (min(nu, int(pool_to)), min(nv, int(pool_to))))
            self.streams[name] = s
            n_enc += encoded_size(s, (nl, nu, nv))
        self._finish(n_enc)

    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.streams[n](x[n]) for n in self.section_names], dim=1)
