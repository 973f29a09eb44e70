"""Plain-JSON views of result dictionaries (numpy scalars and arrays, non-finite numbers).

``results.json`` files, metadata and ``pcloud info --json`` must parse with a strict JSON parser: numpy values
become Python numbers and lists, and non-finite floats become ``null`` (or, where a table needs to tell an infinite
rejection from a missing one, the strings ``"inf"``, ``"-inf"``, ``"nan"``).
"""
from __future__ import annotations

import math

import numpy as np


def to_jsonable(o, nonfinite: str = "null", skip_keys=(), skip_private: bool = False):
    """``o`` with numpy types converted, non-finite floats as ``None`` (``nonfinite="null"``) or strings
    (``"string"``), keys in ``skip_keys`` and (with ``skip_private``) keys starting with ``_`` dropped."""
    if nonfinite not in ("null", "string"):
        raise ValueError(f"to_jsonable: nonfinite must be 'null' or 'string', found {nonfinite!r}")

    def conv(x):
        if isinstance(x, dict):
            return {str(k): conv(v) for k, v in x.items()
                    if k not in skip_keys and not (skip_private and str(k).startswith("_"))}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, np.ndarray):
            return conv(x.tolist())
        if isinstance(x, (bool, np.bool_)):
            return bool(x)
        if isinstance(x, (float, np.floating)):
            v = float(x)
            if math.isfinite(v):
                return v
            if nonfinite == "null":
                return None
            return "inf" if v > 0 else "-inf" if v < 0 else "nan"
        if isinstance(x, np.integer):
            return int(x)
        return x

    return conv(o)
