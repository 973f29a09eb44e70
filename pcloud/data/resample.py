"""``pcloud resample IN --to atlas|cms|CELLxCELL -o OUT``: the CLIC-like ECAL re-binned to coarser cells.

Seed 001 §5.4 compares its models at the CLIC granularity and after resampling the ECAL to ATLAS- and CMS-like
cell sizes. Here every coarse cell is the union of ``m x m`` native 5.1 mm cells of the same layer (the geometry
``clic`` with ``ecal_merge=m``), so each native cell's energy goes wholly into one coarse cell and the energy of
every event, layer and section is conserved exactly (sums in float64; checked per event on every chunk). The
HCAL is kept. Cell sizes (transverse, at the CLIC ECAL radius of 1.5 m):

==========  =====  =========  ======================================================================
target      m      cell (mm)  meaning
==========  =====  =========  ======================================================================
``cms``     4      20.4       CMS ECAL barrel crystal, 0.0174 x 0.0174 in eta x phi (22 x 22 mm front face)
``atlas``   7      35.7       ATLAS EM barrel middle layer, 0.025 x 0.025 (37 mm at r = 1.5 m)
``AxB``     A/5.1  m x 5.1    a square cell of about A mm (A must equal B; rounded to a multiple of 5.1 mm)
==========  =====  =========  ======================================================================

Input: any CLIC-geometry file pcloud reads (native store, Triforce HDF5); output: a native store in the merged
geometry (points at the coarse cell centres, per-event fields kept, per-point truth lists dropped).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

NATIVE_MM = 5.1
TARGETS = {"cms": 4, "atlas": 7}


def merge_factor(to: str) -> int:
    to = str(to).lower()
    if to in TARGETS:
        return TARGETS[to]
    parts = to.split("x")
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--to {to!r}: expected atlas, cms or CELLxCELL in mm (e.g. 20x20)") from None
    if a != b or not (NATIVE_MM <= a <= 51 * NATIVE_MM):
        raise ValueError(f"--to {to!r}: square cells between {NATIVE_MM} and {51 * NATIVE_MM} mm only")
    return max(1, int(round(a / NATIVE_MM)))


def merge_images(images: dict, m: int) -> dict:
    """ECAL images (N, L, U, V) summed over ``m x m`` blocks (zero-padded to a multiple of m); others kept."""
    out = dict(images)
    e = np.asarray(images["ECAL"], np.float64)
    n, L, U, V = e.shape
    nu, nv = -(-U // m), -(-V // m)
    pad = np.zeros((n, L, nu * m, nv * m))
    pad[:, :, :U, :V] = e
    out["ECAL"] = pad.reshape(n, L, nu, m, nv, m).sum((3, 5))
    return out


def resample_clouds(clouds, geometry, m: int):
    """One chunk of CLIC clouds -> clouds in ``clic`` with ``ecal_merge=m``; returns (clouds, max |dE| GeV)."""
    from ..core.showers import ShowerImages
    from ..data.convert import clouds_to_images, images_to_clouds
    from ..geometry import get_geometry

    kw = dict(geometry.info.get("builder_kwargs", {}))
    if kw.get("ecal_merge", 1) != 1:
        raise ValueError(f"resample: the input is already resampled (ecal_merge={kw['ecal_merge']})")
    target = get_geometry("clic", **{**kw, "ecal_merge": m})
    sh = clouds_to_images(clouds, geometry, dtype=np.float64)
    merged = merge_images(sh.images, m)
    out = images_to_clouds(ShowerImages(target, merged, sh.truth, dict(sh.meta)), threshold_gev=0.0,
                           dtype=np.float64)
    before = sum(v.reshape(len(v), -1).sum(1) for v in sh.images.values())
    after = sum(v.reshape(len(v), -1).sum(1) for v in merged.values())
    return out, target, float(np.abs(after - before).max(initial=0.0))


def resample_file(path, to: str, output, xml=None, chunk_events: int = 2000) -> dict:
    """``pcloud resample`` (module docstring); returns a summary."""
    import awkward as ak

    from ..io.native import NativeStore, write_clouds
    from ..pipeline.inputs import parse_data_specs
    from ..pipeline.store import build_store

    m = merge_factor(to)
    inputs = parse_data_specs([str(path)], xml=xml)
    geometry = inputs[0].geometry
    if geometry.name != "clic":
        raise ValueError(f"{path}: resample re-bins the CLIC ECAL; this file is on geometry {geometry.name!r}")
    with tempfile.TemporaryDirectory(dir=Path(output).resolve().parent) as tmp:
        if inputs[0].format == "native":
            store = NativeStore(path)
        else:
            build_store(inputs, Path(tmp) / "in.parquet", None, 0.0, None, xml, chunk_events, log=None)
            store = NativeStore(Path(tmp) / "in.parquet")
        stats = {"events": 0, "cells_in": 0, "cells_out": 0, "dmax": 0.0, "target": None}

        def chunks():
            for c in store.chunks(chunk_size=chunk_events, columns=None):
                r, target, d = resample_clouds(c, geometry, m)
                stats["events"] += len(c)
                stats["cells_in"] += int(ak.sum(ak.num(c.points, axis=1)))
                stats["cells_out"] += int(ak.sum(ak.num(r.points, axis=1)))
                stats["dmax"] = max(stats["dmax"], d)
                stats["target"] = target
                yield r

        write_clouds(output, chunks())
    t = stats["target"]
    pitch = float(np.diff(t.sections[0].u_edges)[0]) if t is not None else NATIVE_MM * m
    return {"events": stats["events"], "from": f"clic ECAL {NATIVE_MM} mm", "to": f"{to} ({pitch:.1f} mm, m={m})",
            "cells_in": stats["cells_in"], "cells_out": stats["cells_out"],
            "max_energy_difference_gev": stats["dmax"], "merge": m}
