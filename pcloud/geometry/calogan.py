"""CaloGAN-like three-layer Pb/LAr calorimeter (Paganini, de Oliveira, Nachman; seed 004 Table 1).

A 480 mm cube whose front face sits at z0 = 288 mm from the origin along the local z axis (the radial direction
of a collider, see :mod:`pcloud.geometry.base`), built of 2 mm Pb / 4 mm LAr layers:

======  ========  ===========  ===========  ===========
layer   depth mm  cells x * y  cell x (mm)  cell y (mm)
======  ========  ===========  ===========  ===========
0       90        3 x 96       160          5
1       347       12 x 12      40           40
2       43        12 x 6       40           80
======  ========  ===========  ===========  ===========

Images of layer i have shape (N, nx, ny) in the public HDF5 files and (N, 1, nx, ny) inside pcloud.
"""
from __future__ import annotations

import numpy as np

from .base import Geometry, Section
from .materials import LAR, LEAD, Stack

Z0_MM = 288.0
HALF_WIDTH_MM = 240.0
PB_LAR = Stack(active=LAR, active_mm=4.0, absorber=LEAD, absorber_mm=2.0)

#: (depth mm, nx, ny) per layer, seed 004 Table 1.
LAYERS = ((90.0, 3, 96), (347.0, 12, 12), (43.0, 12, 6))


def calogan_geometry(z0_mm: float = Z0_MM) -> Geometry:
    sections = []
    front = z0_mm
    for i, (depth, nx, ny) in enumerate(LAYERS):
        sections.append(Section(
            name=f"layer_{i}", kind="xy", layer_edges_mm=[front, front + depth],
            u_edges=np.linspace(-HALF_WIDTH_MM, HALF_WIDTH_MM, nx + 1),
            v_edges=np.linspace(-HALF_WIDTH_MM, HALF_WIDTH_MM, ny + 1),
            stack=PB_LAR, layer_names=[f"layer_{i}"]))
        front += depth
    return Geometry(
        name="calogan", sections=sections,
        description="CaloGAN-like 3-layer Pb(2 mm)/LAr(4 mm) cube, 480 mm, front at z0 (seed 004)",
        # default gun = the public CaloGAN data set's beam (origin, normal incidence: hep-lbdl/CaloGAN
        # generation/cfg/run2.mac); "spread" = the seed-004 angle/position variant (<= 5 deg, +-5 cm; --spread)
        info={"z0_mm": z0_mm, "gun": {"max_angle_deg": 0.0, "max_displacement_mm": 0.0,
                                      "spread": {"max_angle_deg": 5.0, "max_displacement_mm": 50.0}},
              "file_format": "calogan-hdf5", "energy_units_in_file": "MeV (layers), GeV (energy)"})
