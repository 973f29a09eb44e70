"""The batch unpacking base class and the output heads of the point-cloud models: joint particle-ID + energy
regression with the energy skip connection, auxiliary regression and per-point segmentation. Losses are in
:mod:`pcloud.nn.losses`, building blocks in :mod:`pcloud.nn.layers`.

Padded-batch convention (``pcloud.data.batch``): ``x (B, N, F)`` float32, ``pos (B, N, 3)`` float32 (mm),
``mask (B, N)`` bool (True = real point), optional per-event ``g (B, G)`` (e.g. total ECAL / HCAL energies in
GeV, estimated eta / phi).

Energy skip connection (CLIC/LCD "Triforce" paper, arXiv:1912.06794, Sec. 5.1 and App. G): the input total
ECAL and HCAL energies are fed both to the first dense layer and to the last layer, with their last-layer
weights initialised to 1, because ``E ~ E_ECAL + E_HCAL`` is already a reasonable regression. Here::

    energy_gev = energy_scale_gev * correction(z) + sum_j w_j * E_j,    w_j = 1, correction = 0 at init,

so an untrained model returns exactly the linear baseline ``E_ECAL + E_HCAL``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .layers import MaskedMLP, make_mlp_layers, masked_pool, reset_children

__all__ = ["PointCloudModel", "GlobalHead", "SegHead"]


class PointCloudModel(nn.Module):
    """Base class: batch validation / unpacking and ``n_params``. Subclasses set ``in_channels``, ``n_global``
    and ``uses_pos`` in ``__init__``."""

    in_channels: int
    n_global: int = 0
    uses_pos: bool = False

    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """Validate a padded batch dict and return ``(x, pos, mask, g)`` with padded rows zeroed."""
        name = type(self).__name__
        if not isinstance(batch, Mapping):
            raise TypeError(f"{name}.forward expects a batch dict with keys 'x', 'mask', ...; found "
                            f"{type(batch).__name__}")
        if "x" not in batch:
            raise KeyError(f"{name}: batch has no 'x' (B, N, F) point features; keys found: {sorted(batch)}")
        x = batch["x"]
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{name}: batch['x'] must be (B, N, {self.in_channels}), found {tuple(x.shape)}")
        B, N, _ = x.shape
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=x.device)
        elif mask.shape != (B, N) or mask.dtype != torch.bool:
            raise ValueError(f"{name}: batch['mask'] must be bool (B, N) = {(B, N)}, found "
                             f"{mask.dtype} {tuple(mask.shape)}")
        m = mask.unsqueeze(-1)
        x = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
        pos = batch.get("pos")
        if self.uses_pos:
            if pos is None:
                raise KeyError(f"{name}: this configuration needs batch['pos'] (B, N, 3); keys found: {sorted(batch)}")
            if pos.shape != (B, N, 3):
                raise ValueError(f"{name}: batch['pos'] must be (B, N, 3) = {(B, N, 3)}, found {tuple(pos.shape)}")
            pos = torch.where(m, pos, torch.zeros((), dtype=pos.dtype, device=pos.device))
        g = batch.get("g")
        if self.n_global > 0:
            if g is None:
                raise KeyError(f"{name}: configured with n_global={self.n_global} but batch has no 'g' (B, G); "
                               f"keys found: {sorted(batch)}")
            if g.shape != (B, self.n_global):
                raise ValueError(f"{name}: batch['g'] must be (B, G) = {(B, self.n_global)}, found {tuple(g.shape)}")
        else:
            g = None
        return x, pos, mask, g

    @staticmethod
    def is_ragged(batch: Mapping[str, Tensor]) -> bool:
        """True for a ragged batch (:mod:`pcloud.nn.ragged`: flat ``x (P, F)`` plus the event index ``batch``)."""
        return isinstance(batch, Mapping) and batch.get("batch") is not None

    def unpack_ragged(self, batch: Mapping[str, Tensor]):
        """Validate a ragged batch (:mod:`pcloud.nn.ragged`) and return ``(x, pos, layout, g)``."""
        from .ragged import ragged_layout

        name = type(self).__name__
        x, b = batch["x"], batch["batch"]
        if x.dim() != 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{name}: ragged batch['x'] must be (P, {self.in_channels}), found {tuple(x.shape)}")
        if b.shape != (x.shape[0],) or b.is_floating_point():
            raise ValueError(f"{name}: ragged batch['batch'] must be an integer (P,) = ({x.shape[0]},) event index, "
                             f"found {b.dtype} {tuple(b.shape)}")
        g = batch.get("g") if self.n_global > 0 else None
        n_events = batch.get("n_events")
        if n_events is None and g is not None:
            n_events = g.shape[0]
        layout = ragged_layout(b, None if n_events is None else int(n_events))
        pos = batch.get("pos")
        if self.uses_pos:
            if pos is None:
                raise KeyError(f"{name}: this configuration needs batch['pos'] (P, 3); keys found: {sorted(batch)}")
            if pos.shape != (x.shape[0], 3):
                raise ValueError(f"{name}: ragged batch['pos'] must be (P, 3) = ({x.shape[0]}, 3), found "
                                 f"{tuple(pos.shape)}")
        if self.n_global > 0:
            if g is None:
                raise KeyError(f"{name}: configured with n_global={self.n_global} but batch has no 'g' (B, G)")
            if g.shape != (layout.n_events, self.n_global):
                raise ValueError(f"{name}: batch['g'] must be (B, G) = {(layout.n_events, self.n_global)}, found "
                                 f"{tuple(g.shape)}")
        return x, pos, layout, g

    def padded_outputs(self, local: Tensor, mask: Tensor, g: Tensor | None) -> dict[str, Tensor]:
        """:meth:`ragged_outputs` on padded points: ``local (B, N, C)`` with ``mask (B, N)``."""
        emb = self.embed(local, mask)
        pooled = masked_pool(emb, mask, self.pooling)
        out: dict[str, Tensor] = {"global": pooled}
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg(torch.cat([local, emb], dim=-1), pooled, mask))
        return out

    def ragged_outputs(self, local: Tensor, layout, g: Tensor | None) -> dict[str, Tensor]:
        """The shared tail of the EdgeConv-style models on ragged rows (``self.embed``, ``self.pooling``,
        ``self.head``, ``self.seg``): embed the concatenated per-point features ``local (P, C)``, pool per event,
        event heads, and the segmentation head on ``[local, embedding]`` with the pooled vector."""
        from .ragged import segment_pool

        emb = self.embed(local, None)
        pooled = segment_pool(emb, layout.batch, layout.n_events, self.pooling)
        out: dict[str, Tensor] = {"global": pooled}
        out.update(self.head(pooled, g))
        if self.seg is not None:
            out.update(self.seg.forward_ragged(torch.cat([local, emb], dim=-1), pooled, layout.batch))
        return out


class GlobalHead(nn.Module):
    """Event-level heads on pooled features: ID logits, auxiliary regression and skip-connected energy.

    ``z = [trunk([pooled, g / g_scale]), g / g_scale]`` (the global features enter the first and the last
    layer, as in arXiv:1912.06794 Sec. 5.1). Outputs (keys present only when configured):

    * ``"logits"`` (B, n_classes);
    * ``"regression"`` (B, n_targets) - e.g. incidence angles ``theta_rad, phi_rad`` and entry point
      ``x0_mm, y0_mm`` (CaloGAN-geometry paper, seed 004 Sec. 4), in the units of the (scaled) targets;
    * ``"energy"`` (B,) GeV = ``energy_scale_gev * correction(z) + sum_j w_j g[:, energy_columns[j]]`` with
      ``w = 1`` and ``correction = 0`` at initialisation (the energy skip connection).
    """

    def __init__(self, in_dim: int, n_classes: int = 0, n_targets: int = 0, n_global: int = 0,
                 g_scale: Sequence[float] | float | None = None, energy_columns: Sequence[int] = (),
                 energy_scale_gev: float = 100.0, hidden: Sequence[int] = (256, 128), norm: str | None = "batch",
                 act: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.n_classes, self.n_targets, self.n_global = int(n_classes), int(n_targets), int(n_global)
        self.energy_columns = tuple(int(c) for c in energy_columns)
        for c in self.energy_columns:
            if not 0 <= c < self.n_global:
                raise ValueError(f"GlobalHead: energy column {c} outside the {self.n_global} global features 'g'")
        if energy_scale_gev <= 0:
            raise ValueError(f"GlobalHead: energy_scale_gev must be > 0, found {energy_scale_gev}")
        self.energy_scale_gev = float(energy_scale_gev)
        scale = torch.ones(self.n_global) if g_scale is None else torch.as_tensor(g_scale, dtype=torch.float32)
        scale = scale.expand(self.n_global).clone() if scale.dim() == 0 else scale
        if scale.shape != (self.n_global,) or bool((scale <= 0).any()):
            raise ValueError(f"GlobalHead: g_scale must be one positive number or {self.n_global} of them, "
                             f"found {g_scale!r}")
        self.register_buffer("g_scale", scale.float())
        dims = [in_dim + self.n_global, *hidden]
        self.trunk = nn.Sequential(*make_mlp_layers(dims, norm, act, dropout)) if hidden else nn.Identity()
        z_dim = dims[-1] + self.n_global
        self.cls = nn.Linear(z_dim, self.n_classes) if self.n_classes > 0 else None
        self.reg = nn.Linear(z_dim, self.n_targets) if self.n_targets > 0 else None
        if self.energy_columns:
            self.energy_correction = nn.Linear(z_dim, 1)
            self.energy_weight = nn.Parameter(torch.ones(len(self.energy_columns)))
        else:
            self.energy_correction = None
            self.register_parameter("energy_weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)
        if self.energy_correction is not None:
            nn.init.zeros_(self.energy_correction.weight)
            nn.init.zeros_(self.energy_correction.bias)
            with torch.no_grad():
                self.energy_weight.fill_(1.0)

    def forward(self, pooled: Tensor, g: Tensor | None = None) -> dict[str, Tensor]:
        if self.n_global > 0:
            gs = g / self.g_scale
            z = torch.cat([self.trunk(torch.cat([pooled, gs.to(pooled.dtype)], -1)), gs.to(pooled.dtype)], -1)
        else:
            z = self.trunk(pooled)
        out: dict[str, Tensor] = {}
        if self.cls is not None:
            out["logits"] = self.cls(z)
        if self.reg is not None:
            out["regression"] = self.reg(z)
        if self.energy_correction is not None:
            e_in = g[:, list(self.energy_columns)].float()
            corr = self.energy_correction(z).squeeze(-1).float()
            out["energy"] = corr * self.energy_scale_gev + (e_in * self.energy_weight.float()).sum(-1)
        return out


class SegHead(nn.Module):
    """Per-point segmentation head (PointNet, arXiv:1612.00593 Fig. 2): each point's local features are
    concatenated with the event's global feature vector and passed through a shared MLP.

    Outputs ``"seg_logits"`` (B, N, n_seg_classes), zero on padding; with ``soft=True`` also
    ``"seg_fractions"`` = softmax over classes (e.g. the energy fraction of each cell per truth particle),
    zero on padding.
    """

    def __init__(self, local_dim: int, global_dim: int, n_seg_classes: int, hidden: Sequence[int] = (256, 128),
                 norm: str | None = "batch", act: str = "relu", dropout: float = 0.0, soft: bool = False):
        super().__init__()
        if n_seg_classes < 1:
            raise ValueError(f"SegHead: n_seg_classes must be >= 1, found {n_seg_classes}")
        self.soft = bool(soft)
        self.mlp = MaskedMLP([local_dim + global_dim, *hidden, n_seg_classes], norm, act, dropout, last_act=False)

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, local: Tensor, global_feat: Tensor, mask: Tensor) -> dict[str, Tensor]:
        gl = global_feat.to(local.dtype).unsqueeze(1).expand(-1, local.shape[1], -1)
        logits = self.mlp(torch.cat([local, gl], dim=-1), mask)
        out = {"seg_logits": logits}
        if self.soft:
            out["seg_fractions"] = torch.softmax(logits.float(), -1) * mask.unsqueeze(-1)
        return out

    def forward_ragged(self, local: Tensor, global_feat: Tensor, batch: Tensor) -> dict[str, Tensor]:
        """Ragged form (:mod:`pcloud.nn.ragged`): ``local (P, C)``, ``global_feat (B, D)``, ``batch (P,)``."""
        logits = self.mlp(torch.cat([local, global_feat.to(local.dtype)[batch]], dim=-1), None)
        out = {"seg_logits": logits}
        if self.soft:
            out["seg_fractions"] = torch.softmax(logits.float(), -1)
        return out
