"""Losses of the models: the multi-task loss of the point-cloud and dense models (ID, energy, auxiliary
regression, per-point segmentation, T-net orthogonality), the focal loss and the cell-segmentation loss of the
particle-flow segmenters. Soft two-class targets are the focal fraction ``f`` expanded to ``[1 - f, f]``
(:func:`two_class`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiTaskLoss", "CellSegmentationLoss", "focal_loss", "regression_criterion", "two_class", "SEG_LOSSES"]

#: kinds of :class:`CellSegmentationLoss`
SEG_LOSSES = ("energy_weighted", "ce", "focal", "energy_weighted_focal", "mixed")


def two_class(fraction: Tensor) -> Tensor:
    """``(..., 2)`` class fractions ``[1 - f, f]`` from the fraction ``f`` of the positive (focal) class."""
    return torch.stack([1.0 - fraction, fraction], dim=-1)


def regression_criterion(pred: Tensor, true: Tensor, kind: str) -> Tensor:
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
        regression_criterion(torch.zeros(1), torch.zeros(1), regression_loss)  # validates the name
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
                parts["energy"] = regression_criterion(pred / self.energy_scale_gev, true / self.energy_scale_gev,
                                            self.energy_loss)
        if "regression" in outputs and "regression" in targets and self.w["regression"]:
            pred, true = outputs["regression"].float(), targets["regression"].float()
            if pred.shape != true.shape:
                raise ValueError(f"MultiTaskLoss: regression prediction {tuple(pred.shape)} vs "
                                 f"targets['regression'] {tuple(true.shape)}")
            if self.regression_scales is not None:
                pred, true = pred / self.regression_scales, true / self.regression_scales
            parts["regression"] = regression_criterion(pred, true, self.regression_loss)
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
                frac = two_class(frac) * mask.unsqueeze(-1)
            if frac.shape != (B, N, S):
                raise ValueError(f"MultiTaskLoss: targets['seg_fraction'] must be (B, N, S) = {(B, N, S)}, found "
                                 f"{tuple(frac.shape)}")
            ok = mask
            per_point = -(frac * logp).sum(-1)
        w = ok.float()
        if "seg_weight" in targets:
            w = w * targets["seg_weight"].float()
        return (per_point * w).sum() / w.sum().clamp_min(1e-12)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Per-point focal loss (arXiv:1708.02002 eq. 4 with alpha = 1), ``(..., C)`` logits.

    ``target``: int64 labels ``(...)`` (negative entries give 0) or class fractions ``(..., C)``:
    ``-sum_c y_c (1 - p_c)^gamma log p_c``. With ``gamma = 0`` this is the cross-entropy.
    """
    logp = torch.log_softmax(logits.float(), -1)
    mod = (1.0 - logp.exp()).clamp_min(0.0) ** gamma
    if target.dtype in (torch.int64, torch.int32):
        lab = target.long()
        lp = logp.gather(-1, lab.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        m = mod.gather(-1, lab.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return torch.where(lab >= 0, -m * lp, torch.zeros_like(lp))
    return -(target.float() * mod * logp).sum(-1)


class CellSegmentationLoss(nn.Module):
    """Segmentation loss on CELL points only, for the particle-flow segmenters (:mod:`pcloud.pflow.learned`).

    ``kind``: ``"energy_weighted"`` (cross-entropy weighted per cell by ``max(E_cell, 0)`` and normalised per
    batch), ``"ce"`` (unweighted mean over cells), ``"focal"`` (:func:`focal_loss`, averaged over cells),
    ``"energy_weighted_focal"`` or ``"mixed"``: ``energy_share * L_energy_weighted + (1 - energy_share) * L_ce``
    (per-cell weights ``energy_share * E+ / sum E+ + (1 - energy_share) / n_cells`` over the batch), so that the
    energy that matters for particle flow and the cell count that cell-level F1 counts both enter; track points and
    padding never count.

    ``forward(outputs, batch) -> (loss, parts)`` as :class:`pcloud.train.trainer.Trainer` expects; ``batch`` holds
    ``"y"`` ((B, N) int64 labels, -1 = ignore, or (B, N) float focal fractions for 2 classes), ``"cell_mask"`` (B, N)
    bool and ``"energy"`` (B, N) GeV (padding 0).
    """

    def __init__(self, kind: str = "energy_weighted", gamma: float = 2.0, energy_share: float = 0.5):
        super().__init__()
        if kind not in SEG_LOSSES:
            raise ValueError(f"CellSegmentationLoss: loss must be one of {SEG_LOSSES}, found {kind!r}")
        if gamma < 0:
            raise ValueError(f"CellSegmentationLoss: gamma must be >= 0, found {gamma}")
        if not 0.0 <= energy_share <= 1.0:
            raise ValueError(f"CellSegmentationLoss: energy_share must be in [0, 1], found {energy_share}")
        self.kind, self.gamma, self.energy_share = kind, float(gamma), float(energy_share)
        self.mtl = MultiTaskLoss(w_tnet=0.0)

    def weights(self, batch) -> torch.Tensor:
        cell = batch["cell_mask"].bool()
        if self.kind.startswith("energy_weighted"):
            return batch["energy"].float().clamp_min(0.0) * cell
        if self.kind == "mixed":
            e = batch["energy"].float().clamp_min(0.0) * cell
            c = cell.float()
            a = self.energy_share
            return a * e / e.sum().clamp_min(1e-12) + (1.0 - a) * c / c.sum().clamp_min(1.0)
        return cell.float()

    def forward(self, outputs, batch):
        logits = outputs["seg_logits"].float()
        y, cell = batch["y"], batch["cell_mask"].bool()
        w = self.weights(batch)
        if self.kind.endswith("focal"):
            if y.is_floating_point():
                if logits.shape[-1] != 2:
                    raise ValueError("CellSegmentationLoss: fraction targets need 2 output classes")
                y = two_class(y)
            else:
                w = w * (y >= 0)
            per = focal_loss(logits, y, self.gamma)
            loss = (per * w).sum() / w.sum().clamp_min(1e-12)
            return loss, {"seg": loss.detach()}
        key = "seg_fraction" if y.is_floating_point() else "seg_label"
        return self.mtl(outputs, {"mask": cell, key: y, "seg_weight": w})
