"""Output heads of the dense models: class logits, energy (with the seed 001 skip connection) and extra targets.

The energy skip connection follows Belayneh et al., "Calorimetry with deep learning" (seed 001, §5.1 and App. G):
the raw total ECAL and HCAL energies are appended to the last layer so that the network only has to learn a
correction to a linear calibration. Here it is written explicitly as

.. math::  \\hat E = c(h) + \\sum_j w_j E_j

with :math:`E_j` the raw summed energy (GeV) of section :math:`j`, :math:`w_j` learnable and initialised to 1 and
:math:`c(h)` a linear correction of the features, initialised to exactly 0 — so an untrained model returns the
plain sum of the deposited energy (the linear baseline ``E = a·E_ECAL + b·E_HCAL + c`` with ``a = b = 1, c = 0``).
"""
from __future__ import annotations

import torch
from torch import nn


class EnergySkip(nn.Module):
    """Energy regression head (GeV). With ``skip=True``: ``E = c(h) + Σ_j w_j E_j``, ``w = 1``, ``c ≡ 0`` at init.

    With ``skip=False`` the head is a plain linear layer predicting the energy in GeV from the features.
    """

    def __init__(self, in_features: int, n_sections: int, skip: bool = True):
        super().__init__()
        self.skip = bool(skip)
        self.n_sections = int(n_sections)
        self.correction = nn.Linear(in_features, 1)
        if self.skip:
            self.section_weights = nn.Parameter(torch.ones(self.n_sections))
        self.reset_parameters()

    def reset_parameters(self):
        self.correction.reset_parameters()
        if self.skip:
            nn.init.zeros_(self.correction.weight)
            nn.init.zeros_(self.correction.bias)
            nn.init.ones_(self.section_weights)

    def forward(self, h: torch.Tensor, section_gev: torch.Tensor) -> torch.Tensor:
        """``h`` (B, F) features, ``section_gev`` (B, n_sections) raw section sums -> energy (B,) in GeV."""
        e = self.correction(h).squeeze(-1)
        if self.skip:
            e = e + section_gev @ self.section_weights
        return e


class OutputHeads(nn.Module):
    """``{"logits": (B, n_classes), "energy": (B,) GeV if regress_energy, "targets": (B, n_targets) if n_targets}``."""

    def __init__(self, in_features: int, n_sections: int, n_classes: int = 2, regress_energy: bool = True,
                 energy_skip: bool = True, n_targets: int = 0):
        super().__init__()
        if int(n_classes) < 1:
            raise ValueError(f"OutputHeads: n_classes must be >= 1, got {n_classes}")
        if int(n_targets) < 0:
            raise ValueError(f"OutputHeads: n_targets must be >= 0, got {n_targets}")
        self.classifier = nn.Linear(in_features, int(n_classes))
        self.energy = EnergySkip(in_features, n_sections, energy_skip) if regress_energy else None
        self.targets = nn.Linear(in_features, int(n_targets)) if n_targets else None

    def forward(self, h: torch.Tensor, section_gev: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"logits": self.classifier(h)}
        if self.energy is not None:
            out["energy"] = self.energy(h, section_gev)
        if self.targets is not None:
            out["targets"] = self.targets(h)
        return out
