"""Detector geometries: cells, materials and depths of the calorimeters pcloud simulates and reads."""
from __future__ import annotations

import math
import numbers

from .atlas import atlas_geometry
from .base import Geometry, Section, wrap_phi
from .calogan import calogan_geometry
from .clic import clic_geometry
from .cms import cms_geometry
from .materials import MATERIALS, Material, Stack

GEOMETRIES = {"calogan": calogan_geometry, "clic": clic_geometry, "atlas": atlas_geometry, "cms": cms_geometry}


def _number(lo: float, hi: float):
    def check(v):
        return (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi,
                f"a number in [{lo:g}, {hi:g}]")
    return check


def _integer(lo: int, hi: int):
    def check(v):
        return (isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= v <= hi,
                f"an integer in [{lo}, {hi}]")
    return check


def _one_of(*values):
    def check(v):
        return (not isinstance(v, bool) and v in values, f"one of {list(values)}")
    return check


#: the keyword arguments each builder accepts and their allowed values; checked before anything is built, so that
#: geometry arguments read from a file (a native store's metadata) cannot ask for an absurdly large geometry
GEOMETRY_ARGUMENTS = {
    "calogan": {"z0_mm": _number(-1e4, 1e4)},
    "clic": {"ecal_cells": _one_of(25, 51), "hcal_cells": _integer(1, 121), "ecal_merge": _integer(1, 51)},
    "atlas": {"eta_max": _number(0.05, 1.5)},
    "cms": {"n_crystals": _integer(1, 400)},
}


def check_geometry_arguments(name: str, kwargs: dict) -> None:
    """ValueError naming the geometry, the argument and what is allowed, for unknown names or values."""
    if name not in GEOMETRIES:
        raise ValueError(f"unknown geometry {name!r}; known: {sorted(GEOMETRIES)}")
    allowed = GEOMETRY_ARGUMENTS[name]
    for key, value in kwargs.items():
        if key not in allowed:
            raise ValueError(f"geometry {name!r}: unknown argument {key!r}; known: {sorted(allowed) or 'none'}")
        ok, what = allowed[key](value)
        if not ok:
            raise ValueError(f"geometry {name!r}: argument {key!r} must be {what}, found {value!r}")


def get_geometry(name: str, **kwargs) -> Geometry:
    """Build a geometry by name (``calogan``, ``clic``, ``atlas``, ``cms``); kwargs go to its builder and are
    checked first (:data:`GEOMETRY_ARGUMENTS`)."""
    check_geometry_arguments(name, kwargs)
    g = GEOMETRIES[name](**kwargs)
    g.info["builder_kwargs"] = dict(kwargs)
    return g


__all__ = ["Geometry", "Section", "wrap_phi", "Stack", "Material", "MATERIALS", "GEOMETRIES", "GEOMETRY_ARGUMENTS",
           "check_geometry_arguments", "get_geometry"]
