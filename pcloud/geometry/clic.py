"""CLIC/LCD-like barrel windows: Si/W ECAL and scintillator/steel HCAL (seed 001, section 2).

ECAL: 25 layers of 3.5 mm W + 0.5 mm Si sensors (+4 mm readout gap, pitch 8 mm, ~25 X0) starting at the ECAL
inner radius of 1500 mm; square cells of 5.1 mm; window of 25 x 25 cells (REC dataset) or 51 x 51 (GEN dataset).
HCAL: 60 layers of 20 mm steel + 3 mm polystyrene scintillator (+3.5 mm gap, pitch 26.5 mm, ~7.2 lambda_I) from
r = 1700 mm; 30 mm cells; window of 11 x 11 cells. Absorber thicknesses are CLIC_ILD-like values chosen to
reproduce the stated layer counts and depths; the seed gives cell sizes and layer counts only.

Triforce/LCD HDF5 arrays are ``ECAL`` (N, 25, 25, 25) and ``HCAL`` (N, 11, 11, 60) with axes (x, y, layer); inside
pcloud the sections have shape (n_layers, n_u, n_v), and the reader/writer transposes.
"""
from __future__ import annotations

import numpy as np

from .base import Geometry, Section
from .materials import IRON, POLYSTYRENE, SILICON, TUNGSTEN, Stack

ECAL_R_MM = 1500.0
HCAL_R_MM = 1700.0
SI_W = Stack(active=SILICON, active_mm=0.5, absorber=TUNGSTEN, absorber_mm=3.5, gap_mm=4.0)
SCI_FE = Stack(active=POLYSTYRENE, active_mm=3.0, absorber=IRON, absorber_mm=20.0, gap_mm=3.5)


def clic_geometry(ecal_cells: int = 25, hcal_cells: int = 11, ecal_merge: int = 1) -> Geometry:
    """``ecal_merge`` > 1: ECAL cells of ``ecal_merge x 5.1`` mm, each the union of ``ecal_merge^2`` native cells
    (the grid starts at the native edge and extends past it when ``ecal_cells`` is not a multiple;
    :mod:`pcloud.data.resample`)."""
    if ecal_cells not in (25, 51):
        raise ValueError(f"clic geometry: ecal_cells must be 25 (REC) or 51 (GEN), got {ecal_cells}")
    half_e = 5.1 * ecal_cells / 2
    half_h = 30.0 * hcal_cells / 2
    n_e = -(-ecal_cells // int(ecal_merge))
    edges_e = -half_e + 5.1 * int(ecal_merge) * np.arange(n_e + 1)
    ecal = Section(name="ECAL", kind="xy", layer_edges_mm=ECAL_R_MM + SI_W.pitch_mm * np.arange(26),
                   u_edges=edges_e, v_edges=edges_e.copy(), stack=SI_W)
    hcal = Section(name="HCAL", kind="xy", layer_edges_mm=HCAL_R_MM + SCI_FE.pitch_mm * np.arange(61),
                   u_edges=np.linspace(-half_h, half_h, hcal_cells + 1),
                   v_edges=np.linspace(-half_h, half_h, hcal_cells + 1), stack=SCI_FE)
    return Geometry(
        name="clic", sections=[ecal, hcal],
        description=f"CLIC/LCD-like window: Si/W ECAL {n_e}x{n_e}x25 ({5.1 * ecal_merge:.1f} mm cells) + Sci/Fe HCAL "
                    f"{hcal_cells}x{hcal_cells}x60 (seed 001)",
        info={"ecal_inner_radius_mm": ECAL_R_MM, "hcal_inner_radius_mm": HCAL_R_MM,
              "gun": {"theta_range_rad": [1.047, 2.094]}, "file_format": "triforce-hdf5",
              "energy_units_in_file": "GeV"})
