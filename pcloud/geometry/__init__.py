"""Detector geometries: cells, materials and depths of the calorimeters pcloud simulates and reads."""
from __future__ import annotations

from .atlas import atlas_geometry
from .base import Geometry, Section, wrap_phi
from .calogan import calogan_geometry
from .clic import clic_geometry
from .cms import cms_geometry
from .materials import MATERIALS, Material, Stack

GEOMETRIES = {"calogan": calogan_geometry, "clic": clic_geometry, "atlas": atlas_geometry, "cms": cms_geometry}


def get_geometry(name: str, **kwargs) -> Geometry:
    """Build a geometry by name (``calogan``, ``clic``, ``atlas``, ``cms``); kwargs go to its builder."""
    try:
        builder = GEOMETRIES[name]
    except KeyError:
        raise ValueError(f"unknown geometry {name!r}; known: {sorted(GEOMETRIES)}") from None
    g = builder(**kwargs)
    g.info["builder_kwargs"] = dict(kwargs)
    return g


__all__ = ["Geometry", "Section", "wrap_phi", "Stack", "Material", "MATERIALS", "GEOMETRIES", "get_geometry"]
