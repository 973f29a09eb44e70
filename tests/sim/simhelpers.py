"""Helpers shared by the simulation tests (imported via the sim conftest)."""
import numpy as np
from pcloud.geometry import Geometry, Section


def block_geometry(stack, depth_mm, half_width_mm=5000.0, n_cells=10, name="block", n_layers=1):
    """A single wide, deep block of ``stack`` starting at z = 0 (for containment-controlled checks)."""
    return Geometry(name, [Section("B", "xy", np.linspace(0.0, depth_mm, n_layers + 1),
                                   np.linspace(-half_width_mm, half_width_mm, n_cells + 1),
                                   np.linspace(-half_width_mm, half_width_mm, n_cells + 1), stack)])


def beam(n, z0=-10.0, direction=(0.0, 0.0, 1.0)):
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    return np.tile([0.0, 0.0, z0], (n, 1)), np.tile(d, (n, 1))
