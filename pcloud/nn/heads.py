"""Blocks shared by the point-cloud models: masked MLPs and pooling, the batch unpacking base class, the output
heads (joint particle-ID + energy regression with the energy skip connection, auxiliary regression,
per-point segmentation) and the multi-task loss.

Padded-batch convention (``pcloud.data.batch``): ``x (B, N, F)`` float32, ``pos (B, N, 3)`` float32 (mm),
``mask (B, N)`` bool (True = real point), optional per-event ``g (B, G)`` (e.g. total ECAL / HCAL energies in
GeV, estimated eta / phi). Padded entries are never read by any layer here: per-point MLPs run only on the real
rows ``x[mask]`` (so batch-norm statistics are taken over real points only and padding costs nothing), and
pooling fills padding with ``-inf`` (max) or weight 0 (mean).

Energy skip connection (CLIC/LCD "Triforce" paper, arXiv:1912.06794, Sec. 5.1 and App. G): the input total
ECAL and HCAL energies are fed both to the first dense layer and to the last layer, with their last-layer
weights initialised to 1, because ``E ~ E_ECAL + E_HCAL`` is already a reasonable regression. Here::

    energy_gev = energy_scale_gev * correction(z) + sum_j w_j * E_j,    w_j = 1, correction = 0 at init,

so an untrained model returns exactly the linear baseline ``E_ECAL + E_HCAL``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["reset_children", "make_mlp_layers", "MaskedMLP", "masked_pool", "pooled_dim", "PointCloudModel",
           "GlobalHead", "SegHead", "MultiTaskLoss"]

POOL_MODES = ("max", "mean", "sum", "max+mean")


def _activation(act: str) -> nn.Module:
    if act == "relu":
        return nn.ReLU()
    if act == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if act == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {act!r}; expected 'relu', 'leaky_relu' or 'gelu'")


def _norm(norm: str | None, dim: int) -> nn.Module | None:
    if norm is None or norm == "none":
        return None
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    if norm == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"unknown norm {norm!r}; expected 'batch', 'layer' or None")


def reset_children(module: nn.Module) -> None:
    """Re-initialise ``module``'s sub-modules: each child's own ``reset_parameters`` if it has one (so custom
    initialisations such as zero-initialised output layers are respected), else recurse into it."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_children(child)


def make_mlp_layers(dims: Sequence[int], norm: str | None = "batch", act: str = "relu", dropout: float = 0.0,
                    last_act: bool = True) -> list[nn.Module]:
    """Linear -> norm -> activation (-> dropout) blocks for ``dims[0] -> dims[1] -> ...`` on ``(M, C)`` rows.

    With ``last_act=False`` the last block is a bare Linear (an output layer).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=not (norm == "batch" and (last_act or not last))))
        if last and not last_act:
            break
        n = _norm(norm, b)
        if n is not None:
            layers.append(n)
        layers.append(_activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return layers


class MaskedMLP(nn.Module):
    """Shared per-point MLP applied to the real points only: ``(..., C_in) -> (..., C_out)``, zeros at padding."""

    def __init__(self, dims: Sequence[int], norm: str | None = "batch", act: str = "relu", dropout: float = 0.0,
                 last_act: bool = True):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"MaskedMLP: need at least input and output sizes, found dims={list(dims)}")
        self.out_channels = int(dims[-1])
        self.net = nn.Sequential(*make_mlp_layers(dims, norm, act, dropout, last_act))

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.net(x[mask])
        out = h.new_zeros(mask.shape + (h.shape[-1],))
        out[mask] = h
        return out


def pooled_dim(channels: int, mode: str) -> int:
    """Width of :func:`masked_pool`'s output for ``channels`` input channels."""
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling {mode!r}; expected one of {POOL_MODES}")
    return 2 * channels if mode == "max+mean" else channels


def masked_pool(x: Tensor, mask: Tensor, mode: str = "max") -> Tensor:
    """Symmetric pooling over the real points of each event: ``(B, N, C) -> (B, C)`` (``2C`` for "max+mean").

    Padding never contributes: it is filled with ``-inf`` for max and weighted 0 for mean / sum. An event with
    no real point pools to zeros.
    """
    pooled_dim(x.shape[-1], mode)
    m = mask.unsqueeze(-1)
    parts = []
    if mode in ("max", "max+mean"):
        mx = x.masked_fill(~m, float("-inf")).amax(dim=1)
        parts.append(torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx)))
    if mode in ("mean", "sum", "max+mean"):
        s = x.masked_fill(~m, 0.0).sum(dim=1)
        if mode != "sum":
            s = s / mask.sum(1, keepdim=True).clamp_min(1).to(s.dtype)
        parts.append(s)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


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


def _reg_loss(pred: Tensor, true: Tensor, kind: str) -> Tensor:
    if kind == "mse":
        return F.mse_loss(pred, true)
    if kind == "mae":
        return F.l1_loss(pred, true)
    if kind == "huber":
        return F.smooth_l1_loss(pred, true)
    raise ValueError(f"unknown regression loss {kind!r}; expected 'mse', 'mae' or 'huber'")


class MultiTaskLoss(nn.Module):
    """Weighted sum of the task losses present in both ``outputs`` and ``targets``.

    ``total = w_id * CE(logits, label) + w_energy * L_E + w_regression * L_reg + w_seg * L_seg + w_tnet * L_T``

    * ID: cross-entropy on ``targets["label"]`` (B,) int64 (optional ``class_weights``);
    * energy (GeV): ``energy_loss`` "mse" / "mae" / "huber" on ``(pred - true) / energy_scale_gev``, or
      "relative_mse" on ``(pred - true) / true``. The Triforce paper used CE + 200 x MSE (Sec. 5).
    * auxiliary regression on ``targets["regression"]`` (B, T): ``regression_loss`` on
      ``(pred - true) / regression_scales`` (seed 004 Sec. 4: MAE on targets scaled by their largest value);
    * segmentation: hard labels ``targets["seg_label"]`` (B, N) int64 (``-1`` = ignore) or soft targets
      ``targets["seg_fraction"]`` (B, N, S), or (B, N) for two classes meaning ``[1 - f, f]`` (e.g. the
      focal track's energy fraction) (cross-entropy against the fractions; rows summing to 0 - cells
      without positive truth - contribute 0), averaged over real points (``targets["mask"]`` or
      ``outputs``' padding), optionally weighted per point by ``targets["seg_weight"]`` (e.g. cell energy);
    * T-net orthogonality ``|I - A A^T|_F^2`` (PointNet) when ``outputs["transform"]`` exists.

    ``forward`` returns ``(total, parts)``; ``parts`` maps task name -> unweighted loss (detached).
    """

    def __init__(self, w_id: float = 1.0, w_energy: float = 1.0, w_regression: float = 1.0, w_seg: float = 1.0,
                 w_tnet: float = 1e-3, energy_loss: str = "mse", energy_scale_gev: float = 100.0,
                 regression_loss: str = "mae", regression_scales: Sequence[float] | None = None,
                 class_weights: Sequence[float] | None = None, seg_class_weights: Sequence[float] | None = None):
        super().__init__()
        if energy_loss not in ("mse", "mae", "huber", "relative_mse"):
            raise ValueError(f"MultiTaskLoss: energy_loss must be 'mse', 'mae', 'huber' or 'relative_mse', "
                             f"found {energy_loss!r}")
        _reg_loss(torch.zeros(1), torch.zeros(1), regression_loss)  # validates the name
        self.w = {"id": w_id, "energy": w_energy, "regression": w_regression, "seg": w_seg, "tnet": w_tnet}
        self.energy_loss, self.regression_loss = energy_loss, regression_loss
        self.energy_scale_gev = float(energy_scale_gev)
        for name, v in (("regression_scales", regression_scales), ("class_weights", class_weights),
                        ("seg_class_weights", seg_class_weights)):
            self.register_buffer(name, None if v is None else torch.as_tensor(v, dtype=torch.float32))

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]
                ) -> tuple[Tensor, dict[str, Tensor]]:
        parts: dict[str, Tensor] = {}
        if "logits" in outputs and "label" in targets and self.w["id"]:
            parts["id"] = F.cross_entropy(outputs["logits"].float(), targets["label"].long(),
                                          weight=self.class_weights)
        if "energy" in outputs and "energy_gev" in targets and self.w["energy"]:
            pred, true = outputs["energy"].float(), targets["energy_gev"].float()
            if pred.shape != true.shape:
                raise ValueError(f"MultiTaskLoss: energy prediction {tuple(pred.shape)} vs targets['energy_gev'] "
                                 f"{tuple(true.shape)}")
            if self.energy_loss == "relative_mse":
                if bool((true <= 0).any()):
                    raise ValueError("MultiTaskLoss: relative_mse needs targets['energy_gev'] > 0")
                parts["energy"] = (((pred - true) / true) ** 2).mean()
            else:
                parts["energy"] = _reg_loss(pred / self.energy_scale_gev, true / self.energy_scale_gev,
                                            self.energy_loss)
        if "regression" in outputs and "regression" in targets and self.w["regression"]:
            pred, true = outputs["regression"].float(), targets["regression"].float()
            if pred.shape != true.shape:
                raise ValueError(f"MultiTaskLoss: regression prediction {tuple(pred.shape)} vs "
                                 f"targets['regression'] {tuple(true.shape)}")
            if self.regression_scales is not None:
                pred, true = pred / self.regression_scales, true / self.regression_scales
            parts["regression"] = _reg_loss(pred, true, self.regression_loss)
        if "seg_logits" in outputs and self.w["seg"] and ("seg_label" in targets or "seg_fraction" in targets):
            parts["seg"] = self._seg_loss(outputs["seg_logits"].float(), targets)
        if "transform" in outputs and self.w["tnet"]:
            a = outputs["transform"].float()
            eye = torch.eye(a.shape[-1], device=a.device)
            parts["tnet"] = ((a @ a.transpose(1, 2) - eye) ** 2).sum((1, 2)).mean()
        if not parts:
            raise ValueError(f"MultiTaskLoss: no task has both an output and a target (outputs: {sorted(outputs)}, "
                             f"targets: {sorted(targets)})")
        total = sum(self.w[k] * v for k, v in parts.items())
        return total, {k: v.detach() for k, v in parts.items()}

    def _seg_loss(self, logits: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        B, N, S = logits.shape
        mask = targets.get("mask")
        mask = torch.ones(B, N, dtype=torch.bool, device=logits.device) if mask is None else mask.bool()
        logp = torch.log_softmax(logits, -1)
        if "seg_label" in targets:
            lab = targets["seg_label"].long()
            ok = mask & (lab >= 0)
            per_point = -logp.gather(-1, lab.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            if self.seg_class_weights is not None:
                per_point = per_point * self.seg_class_weights[lab.clamp_min(0)]
        else:
            frac = targets["seg_fraction"].float()
            if frac.shape == (B, N) and S == 2:  # fraction of the focal particle -> [1 - f, f]
                frac = torch.stack([1.0 - frac, frac], dim=-1) * mask.unsqueeze(-1)
            if frac.shape != (B, N, S):
                raise ValueError(f"MultiTaskLoss: targets['seg_fraction'] must be (B, N, S) = {(B, N, S)}, found "
                                 f"{tuple(frac.shape)}")
            ok = mask
            per_point = -(frac * logp).sum(-1)
        w = ok.float()
        if "seg_weight" in targets:
            w = w * targets["seg_weight"].float()
        return (per_point * w).sum() / w.sum().clamp_min(1e-12)
