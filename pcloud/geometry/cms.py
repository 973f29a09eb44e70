"""CMS-like ECAL barrel window: one layer of PbWO4 crystals (seed 003).

Crystals of deta x dphi = 0.0174 x 0.0174 (22 x 22 mm^2 front face at r = 1290 mm), 230 mm = 25.8 X0 long
(CMS ECAL TDR, CERN/LHCC 97-33). The window is 32 x 32 crystals centred at eta = phi = 0. Photostatistics and
intrinsic fluctuations give a stochastic term of ~2.8%/sqrt(E) (CMS test beam, JINST 2 (2007) P04004); the
electronic noise is ~40 MeV per crystal.
"""
from __future__ import annotations

import numpy as np

from .base import Geometry, Section
from .materials import PBWO4, Stack

R_MM = 1290.0
CRYSTAL_MM = 230.0
DETA = 0.0174
CRYSTAL = Stack(active=PBWO4, active_mm=CRYSTAL_MM)
STOCHASTIC_TERM = 0.028
NOISE_GEV = 0.040


def cms_geometry(n_crystals: int = 32) -> Geometry:
    half = n_crystals * DETA / 2
    ecal = Section(name="EB", kind="etaphi", layer_edges_mm=[R_MM, R_MM + CRYSTAL_MM],
                   u_edges=np.linspace(-half, half, n_crystals + 1), v_edges=np.linspace(-half, half, n_crystals + 1),
                   stack=CRYSTAL, noise_sigma_gev=NOISE_GEV, layer_names=["EB"])
    return Geometry(
        name="cms", sections=[ecal],
        description=f"CMS-like PbWO4 crystal window {n_crystals}x{n_crystals}, 25.8 X0 (seed 003)",
        info={"inner_radius_mm": R_MM, "stochastic_term": STOCHASTIC_TERM, "file_format": "native"})
