"""Common skeleton of the dense models: checked inputs -> transform -> encoder -> fully-connected top -> heads.

Every dense model is ``DenseModel`` + an ``encode`` method. ``forward(images, global_features=None)``:

1. checks ``images`` (``{section: (B, n_layers, n_u, n_v)}`` GeV, any array-like) against the geometry and moves
   them to the model's device/dtype;
2. sums the raw GeV per section (``section_gev``, (B, n_sections)) for the energy skip connection;
3. applies the :class:`ImageTransform` chosen in the constructor and calls the subclass ``encode`` -> (B, F);
4. appends optional global features (B, n_global) and, if ``append_section_energies``, the section energies as
   ``sign(E)·ln(1 + |E| / 1 GeV)`` (seed 001 appends the total ECAL/HCAL energies to the dense layers);
5. runs the fully-connected top and the :class:`OutputHeads`.
"""
from __future__ import annotations

import torch
from torch import nn

from .outputs import OutputHeads
from .preprocess import ImageTransform, check_global, check_images, section_energies_gev, section_specs

ENERGY_FEATURE_SCALE_GEV = 1.0


def mlp_blocks(in_features: int, widths, dropout: float, style: str = "relu") -> tuple[nn.Sequential, int]:
    """Fully-connected blocks; returns ``(module, out_features)``.

    ``style="relu"``: Linear - ReLU - Dropout (seed 001 dense layers).
    ``style="leaky_bn"``: Linear - LeakyReLU(0.2) - Dropout - BatchNorm1d (seed 004 §3.1.1/3.1.2 blocks).
    """
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers, n = [], int(in_features)
    for w in widths:
        w = int(w)
        if w < 1:
            raise ValueError(f"hidden widths must be positive integers, got {list(widths)}")
        layers.append(nn.Linear(n, w))
        if style == "relu":
            layers += [nn.ReLU(), nn.Dropout(dropout)]
        elif style == "leaky_bn":
            layers += [nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.BatchNorm1d(w)]
        else:
            raise ValueError(f"unknown block style {style!r}; expected 'relu' or 'leaky_bn'")
        n = w
    return nn.Sequential(*layers), n


class DenseModel(nn.Module):
    """Base of the voxel models (see module docstring). Subclasses build their encoder, then call ``_finish``.

    Common keyword arguments
    ------------------------
    n_classes: number of classes of the ``"logits"`` output (>= 1).
    regress_energy: add the ``"energy"`` output (B,) in GeV.
    energy_skip: use the seed 001 skip connection ``E = c(h) + Σ_j w_j E_section_j`` (w = 1, c = 0 at init).
    n_targets: size of the optional ``"targets"`` regression output (angles, position...); 0 for none.
    n_global: number of per-event global features expected in ``forward`` (0 for none).
    transform, scale_gev: the :class:`ImageTransform` applied to the images (``"log1p"``, ``"fraction"``,
        ``"linear"``, ``"none"``) and its energy scale in GeV.
    append_section_energies: append ``sign(E)·ln(1+|E|/1 GeV)`` of each section's energy to the features.
    hidden: widths of the fully-connected top; dropout: its dropout probability.
    """

    def __init__(self, geometry, *, n_classes: int = 2, regress_energy: bool = True, energy_skip: bool = True,
                 n_targets: int = 0, n_global: int = 0, transform: str = "log1p", scale_gev: float = 0.1,
                 append_section_energies: bool = True, hidden=(128, 64), dropout: float = 0.1):
        super().__init__()
        self.specs = section_specs(geometry)
        self.section_names = [n for n, _ in self.specs]
        self.geometry_name = getattr(geometry, "name", "?")
        self.transform = ImageTransform(transform, scale_gev)
        if int(n_global) < 0:
            raise ValueError(f"{type(self).__name__}: n_global must be >= 0, got {n_global}")
        self.n_global = int(n_global)
        self.append_section_energies = bool(append_section_energies)
        self._head_kw = dict(n_classes=n_classes, regress_energy=regress_energy, energy_skip=energy_skip,
                             n_targets=n_targets)
        self._hidden = tuple(hidden)
        self._dropout = float(dropout)
        # a parameter-free buffer gives the device/dtype even before subclasses add parameters
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _finish(self, n_encoded: int, style: str = "relu"):
        """Build the fully-connected top on ``n_encoded`` encoder features plus extras, then the heads."""
        n_in = int(n_encoded) + self.n_global + (len(self.specs) if self.append_section_energies else 0)
        self.top, n_out = mlp_blocks(n_in, self._hidden, self._dropout, style)
        self.heads = OutputHeads(n_out, len(self.specs), **self._head_kw)
        self.n_features = n_out

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
        who = type(self).__name__
        imgs = check_images(images, self.specs, self._anchor, who)
        batch = imgs[self.section_names[0]].shape[0]
        g = check_global(global_features, self.n_global, batch, self._anchor, who)
        section_gev = section_energies_gev(imgs, self.section_names)
        feats = [self.encode(self.prepare(imgs, section_gev))]
        if g is not None:
            feats.append(g)
        if self.append_section_energies:
            feats.append(torch.sign(section_gev) * torch.log1p(section_gev.abs() / ENERGY_FEATURE_SCALE_GEV))
        h = self.top(torch.cat(feats, dim=1))
        return self.heads(h, section_gev)


def encoded_size(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Flattened output size of ``module`` for one input of ``shape`` (dry run, no gradient, eval mode)."""
    was = module.training
    module.eval()
    with torch.no_grad():
        n = module(torch.zeros(1, *shape)).flatten(1).shape[1]
    module.train(was)
    return int(n)
