"""PointNet for padded calorimeter point clouds (Qi et al., "PointNet: Deep Learning on Point Sets for 3D
Classification and Segmentation", CVPR 2017, arXiv:1612.00593).

A shared per-point MLP ``f`` followed by a symmetric (permutation-invariant) pooling over the real points,
``g(X) = POOL_i f(x_i)``, then event-level heads (:class:`~pcloud.nn.heads.GlobalHead`: ID logits, auxiliary
regression, skip-connected energy) and optionally a segmentation head that concatenates each point's local
features with the global vector (paper Fig. 2). An optional T-net (paper Sec. 4.2) predicts a 3x3 alignment
matrix applied to the coordinates ``pos`` before they join the features; it is initialised to the identity.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .heads import GlobalHead, PointCloudModel, SegHead
from .layers import MaskedMLP, masked_pool, pooled_dim, reset_children
from .ragged import segment_pool

__all__ = ["TNet", "PointNet"]


class TNet(nn.Module):
    """Input alignment network: ``(B, N, d)`` points -> ``(B, d, d)`` matrix, identity at initialisation.

    Shared MLP -> masked max pool -> MLP -> ``d*d`` outputs added to the identity (the last layer is
    zero-initialised, so the initial transform is exactly the identity).
    """

    def __init__(self, dim: int = 3, channels: Sequence[int] = (64, 128), fc: Sequence[int] = (64,),
                 norm: str | None = "batch"):
        super().__init__()
        self.dim = int(dim)
        self.point_mlp = MaskedMLP([self.dim, *channels], norm)
        layers: list[nn.Module] = []
        for a, b in zip([channels[-1], *fc][:-1], fc):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.fc = nn.Sequential(*layers)
        self.out = nn.Linear(([channels[-1], *fc])[-1], self.dim * self.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pts: Tensor, mask: Tensor, layout=None) -> Tensor:
        """``pts (B, N, d)`` + ``mask``, or ragged ``pts (P, d)`` with ``mask=None`` and the
        :class:`~pcloud.nn.ragged.RaggedLayout`."""
        if layout is not None:
            h = segment_pool(self.point_mlp(pts, None), layout.batch, layout.n_events, "max")
        else:
            h = masked_pool(self.point_mlp(pts, mask), mask, "max")
        delta = self.out(self.fc(h)).view(-1, self.dim, self.dim)
        return delta + torch.eye(self.dim, dtype=delta.dtype, device=delta.device)


class PointNet(PointCloudModel):
    """PointNet with classification / regression / energy-skip / segmentation heads.

    Parameters
    ----------
    in_channels : number of per-point features ``F`` in ``batch["x"]``.
    n_classes : ID classes (output ``"logits"``); 0 = no ID head.
    n_targets : event-level regression targets (output ``"regression"``), e.g. theta, phi, x0, y0.
    n_seg_classes : per-point classes (outputs ``"seg_logits"``, plus ``"seg_fractions"`` if ``seg_soft``).
    n_global : width ``G`` of the per-event features ``batch["g"]`` (fed to the global head).
    energy_columns : columns of ``g`` holding energies in GeV (e.g. total ECAL and HCAL) for the energy
        skip connection (output ``"energy"`` in GeV); empty = no energy output.
    g_scale : divisor(s) applied to ``g`` before it enters the dense layers (not for the skip sum).
    use_pos : concatenate ``batch["pos"]`` (3 coordinates, divided by ``pos_scale_mm``) to ``x``.
    input_transform : apply a T-net 3x3 alignment to ``pos`` (requires ``use_pos``); output ``"transform"``.
    channels : widths of the shared per-point MLP.
    pooling : "max", "mean", "sum" or "max+mean".
    head_hidden, seg_hidden : hidden widths of the event head trunk and of the segmentation MLP.
    norm, act, dropout : as in :func:`pcloud.nn.heads.make_mlp_layers` (dropout only in the heads).

    ``forward(batch) -> dict``: the configured head outputs plus ``"global"`` (B, D) pooled features.
    """

    def __init__(self, in_channels: int, n_classes: int = 0, n_targets: int = 0, n_seg_classes: int = 0,
                 n_global: int = 0, energy_columns: Sequence[int] = (), g_scale: Sequence[float] | float | None = None,
                 energy_scale_gev: float = 100.0, use_pos: bool = False, pos_scale_mm: float = 1.0,
                 input_transform: bool = False, channels: Sequence[int] = (64, 128, 256), pooling: str = "max",
                 head_hidden: Sequence[int] = (256, 128), seg_hidden: Sequence[int] = (256, 128),
                 seg_soft: bool = False,
                 norm: str | None = "batch", act: str = "relu", dropout: float = 0.0):
        super().__init__()
        if in_channels < 1 and not use_pos:
            raise ValueError(f"PointNet: in_channels must be >= 1 (or use_pos=True), found {in_channels}")
        if input_transform and not use_pos:
            raise ValueError("PointNet: input_transform=True aligns batch['pos'] and needs use_pos=True")
        if not channels:
            raise ValueError("PointNet: channels must list at least one shared-MLP width")
        if pos_scale_mm <= 0:
            raise ValueError(f"PointNet: pos_scale_mm must be > 0, found {pos_scale_mm}")
        self.in_channels, self.n_global, self.uses_pos = int(in_channels), int(n_global), bool(use_pos)
        self.pos_scale_mm, self.pooling = float(pos_scale_mm), pooling
        self.tnet = TNet(3, norm=norm) if input_transform else None
        d_in = self.in_channels + (3 if use_pos else 0)
        widths = [d_in, *channels]
        self.layers = nn.ModuleList(MaskedMLP([a, b], norm, act) for a, b in zip(widths[:-1], widths[1:]))
        d_pool = pooled_dim(channels[-1], pooling)
        self.head = GlobalHead(d_pool, n_classes, n_targets, n_global, g_scale, energy_columns, energy_scale_gev,
                               head_hidden, norm, act, dropout)
        self.seg = (SegHead(sum(channels), d_pool, n_seg_classes, seg_hidden, norm, act, dropout, seg_soft)
                    if n_seg_classes > 0 else None)

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, batch) -> dict[str, Tensor]:
        if self.is_ragged(batch):
            return self._forward_ragged(batch)
        x, pos, mask, g = self.unpack(batch)
        out: dict[str, Tensor] = {}
        if self.uses_pos:
            p = pos / self.pos_scale_mm
            if self.tnet is not None:
                t = self.tnet(p, mask)
                out["transform"] = t
                p = torch.bmm(p, t.to(p.dtype))
            x = torch.cat([x, p.to(x.dtype)], dim=-1)
        h, local = x, []
        for layer in self.layers:
            h = layer(h, mask)
            local.append(h)
        pooled = masked_pool(h, mask, self.pooling)
        out["global"] = pooled
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg(torch.cat(local, dim=-1), pooled, mask))
        return out

    def _forward_ragged(self, batch) -> dict[str, Tensor]:
        """The ragged path (:mod:`pcloud.nn.ragged`): the same layers on ``(P, C)`` rows, segment pooling."""
        x, pos, lay, g = self.unpack_ragged(batch)
        out: dict[str, Tensor] = {}
        if self.uses_pos:
            p = pos / self.pos_scale_mm
            if self.tnet is not None:
                t = self.tnet(p, None, lay)
                out["transform"] = t
                p = torch.bmm(p.unsqueeze(1), t.to(p.dtype)[lay.batch]).squeeze(1)
            x = torch.cat([x, p.to(x.dtype)], dim=-1)
        h, local = self._shared_layers_ragged(x, batch)
        pooled = segment_pool(h, lay.batch, lay.n_events, self.pooling)
        out["global"] = pooled
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg.forward_ragged(torch.cat(local, dim=-1), pooled, lay.batch))
        return out

    def _shared_layers_ragged(self, x: Tensor, batch) -> tuple[Tensor, list[Tensor]]:
        """The shared per-point MLP on ragged rows: the last layer's output and every layer's (the segmentation
        head's local features)."""
        h, local = x, []
        for layer in self.layers:
            h = layer(h, None)
            local.append(h)
        return h, local
