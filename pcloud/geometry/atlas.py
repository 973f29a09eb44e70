"""ATLAS-like barrel in (eta, phi): LAr/Pb EM barrel (EMB1-3) and Fe/scintillator Tile calorimeter (3 layers).

Granularities (ATLAS detector paper, JINST 3 (2008) S08003, tables 5.3/5.4; seeds 000/002):
EMB1 deta x dphi = 0.025/8 x 2pi/64, EMB2 0.025 x 2pi/256, EMB3 0.05 x 2pi/256, Tile 0.1 x 2pi/64 (last layer 0.2),
covering |eta| < 1.4 and the full azimuth. Radii (mm): EMB 1500-1927 split as ~4.3 / 16 / 2 X0 at eta = 0;
Tile 2280-3719 split as 1.5 / 4.1 / 1.8 lambda_I. The cryostat between them is dead material. Cell centres and track
points sit at the layer mid radii (1541, 1735.5, 1908, 2426, 2970.5, 3544 mm), within 1% of the radii JetPointNet
uses for ATLAS (1532.18, 1723.89, 1923.02, 2450, 2995 mm) except TileBar2 (3544 vs 3630 mm); see
:mod:`pcloud.io.mltree.layout`.
Per-cell electronic noise (GeV) is of the order shown in ATLAS, Eur. Phys. J. C 77 (2017) 490, Fig. 3
(no pile-up): EMB1 0.015, EMB2 0.030, EMB3 0.020, Tile 0.040/0.040/0.050.
"""
from __future__ import annotations

import numpy as np

from .base import Geometry, Section
from .materials import IRON, LAR, LEAD, POLYSTYRENE, Stack

ETA_MAX = 1.4
PB_LAR_ACCORDION = Stack(active=LAR, active_mm=4.2, absorber=LEAD, absorber_mm=1.5)
TILE = Stack(active=POLYSTYRENE, active_mm=3.0, absorber=IRON, absorber_mm=14.0)

#: name, r_front, r_back (mm), deta, n_phi, noise (GeV), stack
LAYERS = (
    ("EMB1", 1500.0, 1582.0, 0.025 / 8, 64, 0.015, PB_LAR_ACCORDION),
    ("EMB2", 1582.0, 1889.0, 0.025, 256, 0.030, PB_LAR_ACCORDION),
    ("EMB3", 1889.0, 1927.0, 0.05, 256, 0.020, PB_LAR_ACCORDION),
    ("TileBar0", 2280.0, 2572.0, 0.1, 64, 0.040, TILE),
    ("TileBar1", 2572.0, 3369.0, 0.1, 64, 0.040, TILE),
    ("TileBar2", 3369.0, 3719.0, 0.2, 64, 0.050, TILE),
)

#: ATLAS CaloSampling numbers of these layers (used by MLTree ``cell_geo_sampling``).
SAMPLING = {"EMB1": 1, "EMB2": 2, "EMB3": 3, "TileBar0": 12, "TileBar1": 13, "TileBar2": 14}


def atlas_geometry(eta_max: float = ETA_MAX) -> Geometry:
    sections = []
    for name, r0, r1, deta, nphi, noise, stack in LAYERS:
        neta = int(round(2 * eta_max / deta))
        sections.append(Section(
            name=name, kind="etaphi", layer_edges_mm=[r0, r1],
            u_edges=np.linspace(-neta * deta / 2, neta * deta / 2, neta + 1),
            v_edges=np.linspace(-np.pi, np.pi, nphi + 1), stack=stack, noise_sigma_gev=noise,
            v_periodic=True, layer_names=[name]))
    return Geometry(
        name="atlas", sections=sections,
        description="ATLAS-like barrel |eta|<1.4: EMB1-3 (Pb/LAr) + Tile 3 layers (Fe/scint), per-cell noise",
        info={"eta_max": eta_max, "solenoid_field_t": 2.0, "sampling": SAMPLING, "file_format": "native"})
