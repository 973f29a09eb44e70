"""Recognise a file's format from its content and read image formats through one entry point.

Rules of :func:`detect_format` (first match wins; file names and extensions are never used):

==================  =====================================================================================
format              content
==================  =====================================================================================
``"native"``        Parquet magic ``PAR1`` at the start (pcloud's point-cloud store, :mod:`pcloud.io.native`)
``"mltree"``        ROOT magic ``root`` at the start (ATLAS MLTree ntuples, :mod:`pcloud.io.mltree`)
``"calogan"``       HDF5 with datasets ``layer_0``, ``layer_1``, ``layer_2``
``"calochallenge"`` HDF5 with datasets ``showers`` and ``incident_energies``
``"triforce"``      HDF5 with datasets ``ECAL`` and ``HCAL``
==================  =====================================================================================

Anything else raises :class:`~pcloud.io.errors.FormatError` naming what was found (first bytes or HDF5 keys).

Files that are read together into one dataset must share one geometry: :func:`check_same_layout` compares their
formats and section shapes from the metadata (no data read) and raises a FormatError naming the first file that
differs, e.g. a Triforce file with a 25-cell ECAL window given with one with a 51-cell window.
"""
from __future__ import annotations

from pathlib import Path

from ..core.showers import ShowerImages
from .errors import HDF5_SIGNATURE, FormatError, file_head, open_hdf5

PARQUET_MAGIC = b"PAR1"
ROOT_MAGIC = b"root"
IMAGE_FORMATS = ("calogan", "calochallenge", "triforce")
FORMATS = IMAGE_FORMATS + ("native", "mltree")
HDF5_KEYS = {"calogan": ("layer_0", "layer_1", "layer_2"), "calochallenge": ("showers", "incident_energies"),
             "triforce": ("ECAL", "HCAL")}


def detect_format(path) -> str:
    """One of ``"calogan"``, ``"calochallenge"``, ``"triforce"``, ``"native"``, ``"mltree"`` (see module doc)."""
    import h5py

    path = Path(path)
    head = file_head(path, "a data file (HDF5, Parquet or ROOT)")
    if head.startswith(PARQUET_MAGIC):
        return "native"
    if head.startswith(ROOT_MAGIC):
        return "mltree"
    if not head.startswith(HDF5_SIGNATURE) and not h5py.is_hdf5(str(path)):
        raise FormatError(path, "file signature",
                          f"HDF5 {HDF5_SIGNATURE!r}, Parquet {PARQUET_MAGIC!r} or ROOT {ROOT_MAGIC!r}", repr(head))
    with open_hdf5(path) as f:
        keys = set(f.keys())
    for fmt, need in HDF5_KEYS.items():
        if all(k in keys for k in need):
            return fmt
    raise FormatError(path, "HDF5 keys",
                      "the datasets of a known format (" + "; ".join(f"{fmt}: {', '.join(k)}" for fmt, k in
                                                                   HDF5_KEYS.items()) + ")",
                      f"keys {sorted(keys)}")


def image_layout(path, xml=None) -> dict:
    """Format, geometry and event count of an image file from its metadata (no cell data read).

    Returns ``{"format", "geometry", "sections": [(name, (n_layers, n_u, n_v)), ...], "n_cells", "n_events"}``.
    Point-cloud stores raise the FormatError of :func:`read_images`; ``xml`` is the CaloChallenge binning.
    """
    from ..geometry import get_geometry

    fmt = detect_format(path)
    if fmt in ("native", "mltree"):
        read_images(path, xml)  # raises the point-cloud FormatError
    if xml is not None and fmt != "calochallenge":
        raise ValueError(f"{path}: a binning XML was given but the file is a {fmt} file (no XML needed)")
    if fmt == "calogan":
        from .calogan import calogan_n_events

        n, g = calogan_n_events(path), get_geometry("calogan")
    elif fmt == "triforce":
        from .triforce import _layout

        with open_hdf5(path) as f:
            n, cells = _layout(f, path)
        g = get_geometry("clic", ecal_cells=cells)
    else:
        from .calochallenge import _n_events, _resolve_binning

        with open_hdf5(path) as f:
            b = _resolve_binning(f, path, xml, None, "auto", None)
            n = _n_events(f, path, b)
        g = b.geometry
    return {"format": fmt, "geometry": g.name, "sections": [(s.name, tuple(s.shape)) for s in g.sections],
            "n_cells": int(g.n_cells), "n_events": int(n)}


def _describe_layout(lay: dict) -> str:
    secs = lay["sections"]
    shown = ", ".join(f"{name} {' x '.join(str(v) for v in shape)}" for name, shape in secs[:4])
    more = f", ... ({len(secs)} sections)" if len(secs) > 4 else ""
    return f"a {lay['format']} file on geometry {lay['geometry']!r} ({shown}{more}; {lay['n_cells']} cells)"


def check_same_layout(paths, xml=None) -> dict:
    """Check that image files read together share one format and geometry; return the common layout
    (:func:`image_layout` of the first file). The first file that differs raises a one-line FormatError naming it,
    the geometry expected (from the first file) and the one found. Sections are (n_layers, n_u, n_v) in pcloud's
    order (a Triforce ECAL window of 51 x 51 cells is ``ECAL 25 x 51 x 51``)."""
    paths = list(paths)
    if not paths:
        raise ValueError("check_same_layout: no files given")
    first = image_layout(paths[0], xml)
    for p in paths[1:]:
        lay = image_layout(p, xml)
        if (lay["format"], lay["sections"]) != (first["format"], first["sections"]):
            raise FormatError(p, "geometry", f"{_describe_layout(first)} as {paths[0]} (files read together must "
                              "share one geometry)", _describe_layout(lay))
    return first


def read_images(path, xml=None, start: int | None = None, stop: int | None = None, **kwargs) -> ShowerImages:
    """Read an image file of any supported format into :class:`ShowerImages` (GeV).

    ``xml``: the binning XML (CaloChallenge only; ignored by other formats except that passing it for a non-
    CaloChallenge file is an error). Other keyword arguments go to the format's reader
    (:func:`~pcloud.io.calogan.read_calogan`, :func:`~pcloud.io.calochallenge.read_calochallenge`,
    :func:`~pcloud.io.triforce.read_triforce`). Point-cloud stores (native, MLTree) hold no images: they raise a
    FormatError naming the reader to use.
    """
    fmt = detect_format(path)
    if fmt in ("native", "mltree"):
        reader = {"native": "pcloud.io.native.read_clouds", "mltree": "pcloud.io.mltree"}[fmt]
        raise FormatError(path, "format", "an image file (calogan, calochallenge or triforce HDF5)",
                          f"a {fmt} file (point clouds / events, not dense images)", hint=f"read it with {reader}")
    if xml is not None and fmt != "calochallenge":
        raise ValueError(f"{path}: a binning XML was given but the file is a {fmt} file (no XML needed)")
    if fmt == "calogan":
        from .calogan import read_calogan

        return read_calogan(path, start, stop, **kwargs)
    if fmt == "calochallenge":
        from .calochallenge import read_calochallenge

        return read_calochallenge(path, xml, start, stop, **kwargs)
    from .triforce import read_triforce

    return read_triforce(path, start, stop, **kwargs)


def iter_images(path, xml=None, chunk_size: int = 1_000, **kwargs):
    """Chunked version of :func:`read_images` (yields ShowerImages of at most ``chunk_size`` events)."""
    fmt = detect_format(path)
    if xml is not None and fmt != "calochallenge":
        raise ValueError(f"{path}: a binning XML (--xml) was given but the file is a {fmt} file (no XML needed)")
    if fmt == "calogan":
        from .calogan import iter_calogan

        return iter_calogan(path, chunk_size, **kwargs)
    if fmt == "calochallenge":
        from .calochallenge import iter_calochallenge

        return iter_calochallenge(path, xml, chunk_size, **kwargs)
    if fmt == "triforce":
        from .triforce import iter_triforce

        return iter_triforce(path, chunk_size, **kwargs)
    read_images(path, xml)  # raises the point-cloud FormatError
    raise AssertionError("unreachable")


def write_images(path, showers: ShowerImages, fmt: str | None = None, **kwargs) -> None:
    """Write ShowerImages in ``fmt`` (default: from the geometry: calogan -> calogan, clic -> triforce,
    CaloChallenge binnings -> calochallenge)."""
    if fmt is None:
        name = showers.geometry.name
        fmt = ("calogan" if name == "calogan" else "triforce" if name == "clic"
               else "calochallenge" if "calochallenge" in showers.geometry.info else None)
        if fmt is None:
            raise ValueError(f"write_images: no image file format for geometry {name!r}; "
                             f"formats: {IMAGE_FORMATS}")
    if fmt == "calogan":
        from .calogan import write_calogan

        return write_calogan(path, showers, **kwargs)
    if fmt == "calochallenge":
        from .calochallenge import write_calochallenge

        return write_calochallenge(path, showers, **kwargs)
    if fmt == "triforce":
        from .triforce import write_triforce

        return write_triforce(path, showers, **kwargs)
    raise ValueError(f"write_images: unknown image format {fmt!r}; known: {IMAGE_FORMATS}")
