"""Common skeleton of the dense models: checked inputs -> transform -> encoder -> event head.

Every dense model is :class:`DenseModel` + an ``encode`` method. ``forward(images, global_features=None)``:

1. checks ``images`` (``{section: (B, n_layers, n_u, n_v)}`` GeV, any array-like) against the geometry and moves
   them to the model's device/dtype (:func:`~pcloud.nn.dense.preprocess.check_images`);
2. sums the raw GeV per section, ``section_gev`` (B, n_sections);
3. applies the :class:`~pcloud.nn.dense.preprocess.ImageTransform` chosen in the constructor and calls the
   subclass ``encode`` -> (B, F) features (returned as ``"global"``, as the point models do);
4. runs the shared event head of the point models, :class:`pcloud.nn.heads.GlobalHead`, with per-event
   features ``g = [section_gev, global_features]``: ``g / g_scale`` enters the first and the last dense layer
   (seed 001 §5.1 appends the total ECAL/HCAL energies and the angles to the dense layers), and the section
   energies are the energy skip columns: ``energy = energy_scale_gev·c(z) + Σ_j w_j E_j`` with ``w = 1``,
   ``c ≡ 0`` at initialisation (seed 001 §5.1, App. G), so an untrained model returns the summed deposit.

Outputs: ``"logits"`` (B, n_classes), ``"energy"`` (B,) GeV if ``regress_energy``, ``"regression"``
(B, n_targets) if ``n_targets`` (angles, entry point...), ``"global"`` (B, F) encoder features.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..heads import GlobalHead
from .preprocess import ImageTransform, check_global, check_images, section_energies_gev, section_specs


class DenseModel(nn.Module):
    """Base of the voxel models (see module docstring). Subclasses build their encoder, then call ``_finish``.

    Common keyword arguments
    ------------------------
    n_classes: classes of the ``"logits"`` output (0 = no ID head).
    regress_energy: add the ``"energy"`` output (B,) in GeV.
    energy_skip: with ``regress_energy``, use the skip connection ``Σ_j w_j E_section_j`` (w = 1 at init);
        with ``False`` the section weights are frozen at 0 and the energy is ``energy_scale_gev·c(z)`` alone.
        (Calling ``head.reset_parameters()`` restores w = 1; rebuild the model instead.)
    energy_scale_gev: scale of the learned energy correction (GeV), as in :class:`~pcloud.nn.heads.GlobalHead`.
    section_energy_scale_gev: divisor of the section energies when they enter the dense layers (GeV).
    n_targets: size of the optional ``"regression"`` output; 0 for none.
    n_global: number of extra per-event features expected in ``forward`` (0 for none);
        global_scale: their divisor(s) (default 1).
    transform, scale_gev: the :class:`ImageTransform` (``"log1p"``, ``"fraction"``, ``"linear"``, ``"none"``) and
        its energy scale in GeV.
    hidden, norm, act, dropout: the head's dense layers (see :func:`pcloud.nn.heads.make_mlp_layers`).
    """

    def __init__(self, geometry, *, n_classes: int = 2, regress_energy: bool = True, energy_skip: bool = True,
                 energy_scale_gev: float = 100.0, section_energy_scale_gev: float = 100.0, n_targets: int = 0,
                 n_global: int = 0, global_scale: Sequence[float] | float | None = None, transform: str = "log1p",
                 scale_gev: float = 0.1, hidden: Sequence[int] = (128, 64), norm: str | None = None,
                 act: str = "relu", dropout: float = 0.1):
        super().__init__()
        who = type(self).__name__
        self.specs = section_specs(geometry)
        self.section_names = [n for n, _ in self.specs]
        self.geometry_name = getattr(geometry, "name", "?")
        self.transform = ImageTransform(transform, scale_gev)
        if int(n_global) < 0 or int(n_targets) < 0 or int(n_classes) < 0:
            raise ValueError(f"{who}: n_global, n_targets and n_classes must be >= 0, "
                             f"got {n_global}, {n_targets}, {n_classes}")
        if not section_energy_scale_gev > 0:
            raise ValueError(f"{who}: section_energy_scale_gev must be > 0 GeV, got {section_energy_scale_gev}")
        self.n_global = int(n_global)
        n_sec = len(self.specs)
        if global_scale is None:
            gs = [1.0] * self.n_global
        elif isinstance(global_scale, (int, float)):
            gs = [float(global_scale)] * self.n_global
        else:
            gs = [float(v) for v in global_scale]
        if len(gs) != self.n_global:
            raise ValueError(f"{who}: global_scale needs {self.n_global} values (n_global), got {len(gs)}")
        self._head_args = dict(n_classes=int(n_classes), n_targets=int(n_targets), n_global=n_sec + self.n_global,
                               g_scale=[float(section_energy_scale_gev)] * n_sec + gs,
                               energy_columns=tuple(range(n_sec)) if regress_energy else (),
                               energy_scale_gev=energy_scale_gev, hidden=tuple(hidden), norm=norm, act=act,
                               dropout=float(dropout))
        self.energy_skip = bool(energy_skip)
        # a parameter-free buffer gives the device/dtype even before subclasses add parameters
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _finish(self, n_encoded: int):
        """Build the event head on ``n_encoded`` encoder features (call at the end of the subclass ``__init__``)."""
        self.n_encoded = int(n_encoded)
        self.head = GlobalHead(self.n_encoded, **self._head_args)
        if self.head.energy_correction is not None and not self.energy_skip:
            with torch.no_grad():
                self.head.energy_weight.zero_()
            self.head.energy_weight.requires_grad_(False)

    # -- to implement -------------------------------------------------------------------------------------------
    def encode(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Transformed images -> (B, F) features."""
        raise NotImplementedError

    def prepare(self, images: dict[str, torch.Tensor], section_gev: torch.Tensor) -> dict[str, torch.Tensor]:
        """Transform the checked GeV images (overridden by models that resample before transforming)."""
        return self.transform(images, section_gev.sum(1))

    # -- shared -------------------------------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, images, global_features=None) -> dict[str, torch.Tensor]:
        """``images`` {section: (B, L, U, V)} GeV and optional ``global_features`` (B, n_global).

        A batch dict ``{"images": {...}, "g": (B, n_global), ...}`` (the one-argument call of
        :class:`pcloud.train.trainer.Trainer`) is also accepted; its ``"g"`` is used only when ``n_global > 0``.
        """
        who = type(self).__name__
        if hasattr(images, "keys") and "images" in images and "images" not in self.section_names:
            batch, images = images, images["images"]
            if global_features is None and self.n_global > 0:
                global_features = batch.get("g")
        imgs = check_images(images, self.specs, self._anchor, who)
        batch = imgs[self.section_names[0]].shape[0]
        extra = check_global(global_features, self.n_global, batch, self._anchor, who)
        section_gev = section_energies_gev(imgs, self.section_names)
        feats = self.encode(self.prepare(imgs, section_gev))
        g = section_gev if extra is None else torch.cat([section_gev, extra], dim=1)
        out = {"global": feats}
        out.update(self.head(feats, g))
        return out


def encoded_size(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Flattened output size of ``module`` for one input of ``shape`` (dry run, no gradient, eval mode)."""
    was = module.training
    module.eval()
    with torch.no_grad():
        n = module(torch.zeros(1, *shape)).flatten(1).shape[1]
    module.train(was)
    return int(n)
