"""Input handling shared by the dense (voxel) models: validation, section energies and the intensity transform.

The models take ``images = {section: (B, n_layers, n_u, n_v)}`` in GeV, exactly the arrays of
:class:`pcloud.core.showers.ShowerImages` (numpy arrays or tensors; converted with :func:`torch.as_tensor`).
Raw cell energies span five decades (MeV noise to hundreds of GeV in the core cell), so each model compresses
them with an :class:`ImageTransform` chosen in its constructor. The *raw* GeV section sums are kept aside for the
energy skip connection (seed 001 §5.1) and as per-event features of the head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

TRANSFORMS = ("log1p", "fraction", "linear", "none")


class ImageTransform(nn.Module):
    r"""Element-wise intensity transform of calorimeter images (no learnable parameters).

    ``mode`` (``E`` in GeV, ``s`` = ``scale_gev``):

    * ``"log1p"`` (default): :math:`\operatorname{sign}(E)\,\ln(1 + |E|/s)`, a symmetric log that is linear
      (``E/s``) for ``|E| << s`` and logarithmic above; noise-negative cells stay finite.
    * ``"fraction"``: :math:`E / E_\mathrm{tot}` with :math:`E_\mathrm{tot}` the event's total energy over *all*
      sections (the per-event normalisation of the CaloGAN-style studies, seed 004); events with
      :math:`|E_\mathrm{tot}| < 10^{-12}` GeV are left at zero. The energy scale is lost from the images; the models
      still receive the raw section energies as per-event features.
    * ``"linear"``: :math:`E / s`.
    * ``"none"``: identity (GeV).
    """

    def __init__(self, mode: str = "log1p", scale_gev: float = 0.1):
        super().__init__()
        if mode not in TRANSFORMS:
            raise ValueError(f"ImageTransform: mode must be one of {TRANSFORMS}, got {mode!r}")
        if not (isinstance(scale_gev, (int, float)) and math.isfinite(scale_gev) and scale_gev > 0):
            raise ValueError(f"ImageTransform: scale_gev must be a finite positive number (GeV), got {scale_gev!r}")
        self.mode = mode
        self.scale_gev = float(scale_gev)

    def forward(self, images: dict[str, torch.Tensor], total_gev: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Transform every section; ``total_gev`` (B,) is the per-event total, needed for ``"fraction"``."""
        if self.mode == "none":
            return dict(images)
        if self.mode == "linear":
            return {k: v / self.scale_gev for k, v in images.items()}
        if self.mode == "log1p":
            return {k: torch.sign(v) * torch.log1p(v.abs() / self.scale_gev) for k, v in images.items()}
        if total_gev is None:
            total_gev = sum(v.flatten(1).sum(1) for v in images.values())
        ok = total_gev.abs() > 1e-12
        inv = torch.where(ok, 1.0 / torch.where(ok, total_gev, torch.ones_like(total_gev)), torch.zeros_like(total_gev))
        return {k: v * inv.view(-1, *([1] * (v.dim() - 1))) for k, v in images.items()}

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, scale_gev={self.scale_gev}"


def section_specs(geometry) -> list[tuple[str, tuple[int, int, int]]]:
    """``[(section name, (n_layers, n_u, n_v)), ...]`` in geometry order; raises on an empty geometry."""
    specs = [(s.name, tuple(int(d) for d in s.shape)) for s in geometry.sections]
    if not specs:
        raise ValueError(f"geometry {getattr(geometry, 'name', '?')!r} has no sections")
    return specs


def check_images(images, specs, like: torch.Tensor, who: str) -> dict[str, torch.Tensor]:
    """Validate ``images`` against ``specs`` and return float tensors on ``like``'s device and dtype.

    Raises ``TypeError`` if ``images`` is not a mapping, ``KeyError`` naming a missing section and ``ValueError``
    naming a section whose shape is not ``(B, n_layers, n_u, n_v)`` or whose batch size differs from the others.
    """
    if not hasattr(images, "keys"):
        raise TypeError(f"{who}: images must be a dict {{section: (B, n_layers, n_u, n_v) GeV}}, "
                        f"found {type(images).__name__}")
    out, batch = {}, None
    for name, shape in specs:
        if name not in images:
            raise KeyError(f"{who}: images has no section {name!r}; expected sections {[n for n, _ in specs]}, "
                           f"found {sorted(images)}")
        t = torch.as_tensor(images[name]).to(device=like.device, dtype=like.dtype)
        if t.dim() != 4 or tuple(t.shape[1:]) != shape:
            raise ValueError(f"{who}: images[{name!r}] must have shape (B, {shape[0]}, {shape[1]}, {shape[2]}) "
                             f"(B, n_layers, n_u, n_v), found {tuple(t.shape)}")
        batch = t.shape[0] if batch is None else batch
        if t.shape[0] != batch:
            raise ValueError(f"{who}: images[{name!r}] has batch size {t.shape[0]}, other sections have {batch}")
        out[name] = t
    return out


def check_global(global_features, n_global: int, batch: int, like: torch.Tensor, who: str) -> torch.Tensor | None:
    """Validate optional per-event global features ``(B, n_global)``."""
    if n_global == 0:
        if global_features is not None:
            raise ValueError(f"{who}: got global_features but the model was built with n_global=0")
        return None
    if global_features is None:
        raise ValueError(f"{who}: model built with n_global={n_global} needs global_features of shape "
                         f"({batch}, {n_global}), found None")
    g = torch.as_tensor(global_features).to(device=like.device, dtype=like.dtype)
    if g.dim() != 2 or tuple(g.shape) != (batch, n_global):
        raise ValueError(f"{who}: global_features must have shape ({batch}, {n_global}), found {tuple(g.shape)}")
    return g


def section_energies_gev(images: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """Raw per-section energy sums ``(B, n_sections)`` in GeV, in ``names`` order."""
    return torch.stack([images[n].flatten(1).sum(1) for n in names], dim=1)
