"""CaloGAN HDF5 files (Paganini, de Oliveira, Nachman; seed 004), read into and written from ShowerImages.

Public layout (one file per particle, e.g. ``eplus.hdf5``, ``gamma.hdf5``, ``piplus.hdf5``; hep-lbdl/CaloGAN
``README.md`` and ``generation/convert.py``):

============  ============  ======  ===============================================================
dataset       shape         unit    meaning
============  ============  ======  ===============================================================
``energy``    (N, 1)        GeV     incident particle energy (``TotalEnergy`` of the Geant4 ntuple)
``layer_0``   (N, 3, 96)    MeV     energy per cell of layer 0 (x: 3 cells of 160 mm, y: 96 of 5 mm)
``layer_1``   (N, 12, 12)   MeV     layer 1, 40 x 40 mm cells
``layer_2``   (N, 12, 6)    MeV     layer 2, 40 x 80 mm cells
``overflow``  (N, 3)        MeV     per layer: energy outside the +-240 mm transverse window
============  ============  ======  ===============================================================

``convert.py`` stores the double columns of the Geant4 ntuple without a dtype, so the files are float64; pcloud
writes float64 as well (``dtype="float32"`` halves the size; CaloGAN's ``models/train.py`` casts to float32 and
divides layers and energy by 1000 itself, reading only ``layer_*`` and ``energy``).

Overflow, as CaloGAN's Geant4 stepping action defines it (hep-lbdl/CaloGAN ``generation/src/SteppingAction.cc``):
every step is binned by its *pre-step* point; z < -150 mm is layer 0, z < 197 mm layer 1, otherwise layer 2 (so
steps upstream of the calorimeter count as layer 0 and steps behind it as layer 2); x and y are binned over
(-240, 240) mm with the layer's cell counts, and a step outside that window in x or y goes to the layer's overflow
bin (ntuple columns 504 + layer). ``overflow[:, k]`` is therefore the energy (MeV) deposited in layer k's depth
range but outside its transverse window. pcloud's writer stores truth ``overflow_gev`` (N, 3) x 1000; pcloud's fast
simulation does not compute that truth yet, and without it the writer stores zeros and records so in the root
attribute ``pcloud_overflow`` (``"zeros: not simulated"`` or ``"from truth overflow_gev"``); the reader then adds a
line to ``meta["notes"]`` and does not put the zeros into ``truth["overflow_gev"]``.

Inside pcloud the images are ``(N, 1, nx, ny)`` in GeV on ``get_geometry("calogan")``; ``energy`` becomes truth
``energy_gev`` and ``overflow`` becomes truth ``overflow_gev`` (N, 3).

Writer extras (not in the public files, ignored by other readers): all other truth keys of the ShowerImages
(``event_number``, ``pdg``, ``theta_rad``, ``entry_x_mm``...) go to datasets of the group ``pcloud_truth`` named by
their pcloud truth key, so files simulated by pcloud re-read with full truth; the root attributes ``pdg`` (when all
events share one particle), ``pcloud_format`` = ``"calogan"``, ``pcloud_version``, ``pcloud_overflow`` and
``pcloud_meta`` (JSON of the ShowerImages meta) are added. No public dataset name is reused.

Value checks follow :mod:`pcloud.io.errors` (NaN/inf rejected, small negatives tolerated and counted); a PDG id
pcloud does not know (:data:`pcloud.core.particles.PDG_MASS`) is a :class:`FormatError`.
"""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from ..geometry import get_geometry
from ..core.showers import ShowerImages
from ..core.particles import PDG_MASS, particle_pdg
from ..core.atomic import atomic_output
from .errors import (NEGATIVE_TOLERANCE_GEV, FormatError, check_cells, check_dtype, check_positive,
                     check_shape, event_range, get_dataset, iter_event_chunks, open_hdf5, read_range,
                     read_truth_group, safe_attr,
                     write_truth_group)

MEV_PER_GEV = 1000.0
LAYER_KEYS = ("layer_0", "layer_1", "layer_2")
#: File-name style particle names used with the public CaloGAN files.
CALOGAN_PARTICLES = {"eplus": -11, "eminus": 11, "gamma": 22, "piplus": 211, "piminus": -211, "pizero": 111,
                     "pi0": 111, "positron": -11, "electron": 11, "photon": 22}
#: Root attribute saying where the ``overflow`` dataset came from (see the module docstring).
OVERFLOW_ATTR = "pcloud_overflow"
OVERFLOW_FROM_TRUTH = "from truth overflow_gev"
OVERFLOW_ZEROS = "zeros: not simulated"


def resolve_pdg(value, path=None, field="pdg") -> int:
    """PDG id from an int, a pcloud particle name or a CaloGAN file-style name (``eplus``, ``piplus``...).

    Ids pcloud does not know (not in :data:`pcloud.core.particles.PDG_MASS`) and unknown names are a FormatError.
    """
    value = safe_attr(value)
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        pdg = int(value)
    else:
        s = str(value).strip()
        if s.lstrip("+-").isdigit():
            pdg = int(s)
        elif s.lower() in CALOGAN_PARTICLES:
            return CALOGAN_PARTICLES[s.lower()]
        else:
            try:
                return particle_pdg(s)
            except ValueError:
                raise FormatError(path, field, f"a PDG id or particle name ({sorted(CALOGAN_PARTICLES)})",
                                  repr(value)) from None
    if pdg not in PDG_MASS:
        raise FormatError(path, field, f"the PDG id of a known particle ({sorted({abs(k) for k in PDG_MASS})}, "
                          "either sign)", repr(value))
    return pdg


def _n_events(f, path) -> int:
    """Check keys, shapes and dtypes from the file's metadata (no data read); return N."""
    g = get_geometry("calogan")
    n = None
    for s in g.sections:
        ds = get_dataset(f, s.name, path)
        check_dtype(ds, "f", path)
        ni = check_shape(ds, (None, s.n_u, s.n_v), path)
        if n is not None and ni != n:
            raise FormatError(path, f"dataset {s.name!r}", f"{n} events (as {LAYER_KEYS[0]!r})", f"{ni} events")
        n = ni
    e = get_dataset(f, "energy", path)
    check_dtype(e, "fiu", path, "a numeric dtype")
    ne = check_shape(e, (None, 1), path, alternatives=((None,),))
    if ne != n:
        raise FormatError(path, "dataset 'energy'", f"{n} events (as the layers)", f"{ne} events")
    ov = get_dataset(f, "overflow", path, required=False)
    if ov is not None:
        check_dtype(ov, "f", path)
        no = check_shape(ov, (None, 3), path)
        if no != n:
            raise FormatError(path, "dataset 'overflow'", f"{n} events (as the layers)", f"{no} events")
    return n


def calogan_n_events(path) -> int:
    """Number of events in a CaloGAN file (validates the layout, reads no data)."""
    with open_hdf5(path) as f:
        return _n_events(f, path)


def _check_energy_units(path, images: dict, e_gev: np.ndarray) -> None:
    if e_gev.size < 20:
        return
    dep = sum(a.reshape(a.shape[0], -1).sum(axis=1, dtype=np.float64) for a in images.values())
    ok = dep > 0
    if ok.sum() < 20:
        return
    ratio = float(np.median(dep[ok] / e_gev[ok]))
    if not 0.01 <= ratio <= 10.0:
        raise FormatError(path, "datasets 'layer_*' vs 'energy'",
                          "cell sums (MeV in the file) comparable to the incident energy (GeV), median ratio in "
                          "[0.01, 10]", f"median ratio {ratio:.3g}",
                          hint="is 'energy' stored in MeV or are the layers in GeV? (read with check_units=False "
                               "to skip this check)")


def read_calogan(path, start: int | None = None, stop: int | None = None, pdg=None,
                 negative_tolerance_gev: float = NEGATIVE_TOLERANCE_GEV, clip_negative: bool = False,
                 allow_empty: bool = False, check_units: bool = True) -> ShowerImages:
    """Read events ``[start, stop)`` of a CaloGAN HDF5 file into :class:`ShowerImages` (GeV).

    ``check_units``: with at least 20 showers that deposit energy, the median of (sum of cells) / (incident energy)
    must lie in [0.01, 10]; outside, the layers (MeV) and ``energy`` (GeV) are almost surely in swapped or wrong
    units and a :class:`FormatError` says so (pass ``check_units=False`` for unusual samples).

    ``pdg``: particle (PDG id or name) of all events; default from the file (``pcloud_truth/pdg`` or a root
    attribute ``pdg`` / ``particle``), else no ``pdg`` truth. Only the requested events are read from disk.
    Raises :class:`FormatError` for missing keys, wrong shapes/dtypes, NaN/inf, energies <= 0, cells below the
    negative tolerance, 0 events (unless ``allow_empty``), non-HDF5 or truncated files.
    """
    g = get_geometry("calogan")
    with open_hdf5(path) as f:
        n = _n_events(f, path)
        start, stop = event_range(n, start, stop, path, allow_empty)
        images, n_neg = {}, 0
        for s in g.sections:
            a = (read_range(f[s.name], start, stop, path).astype(np.float64) / MEV_PER_GEV).astype(np.float32)
            tol = max(negative_tolerance_gev, 5.0 * s.noise_sigma_gev)
            a, k = check_cells(a, path, f"dataset {s.name!r}", tol, start, "GeV", clip_negative)
            n_neg += k
            images[s.name] = a[:, None]
        e = read_range(f["energy"], start, stop, path).astype(np.float64).reshape(-1)
        check_positive(e, path, "dataset 'energy'", start)
        truth = {"energy_gev": e}
        if check_units:
            _check_energy_units(path, images, e)
        notes = []
        if "overflow" in f and safe_attr(f.attrs.get(OVERFLOW_ATTR, "")) == OVERFLOW_ZEROS:
            notes.append(f"{path}: 'overflow' holds zeros written by pcloud (the simulation did not compute the "
                         "energy outside the +-240 mm window); not read into truth 'overflow_gev'")
        elif "overflow" in f:
            ov = read_range(f["overflow"], start, stop, path).astype(np.float64) / MEV_PER_GEV
            ov, _ = check_cells(ov, path, "dataset 'overflow'", negative_tolerance_gev, start, "GeV", clip_negative)
            truth["overflow_gev"] = ov
        extra = read_truth_group(f, n, start, stop, path)
        truth.update({k: v for k, v in extra.items() if k not in truth})
        if pdg is not None:
            truth["pdg"] = np.full(stop - start, resolve_pdg(pdg, path, "argument pdg"), dtype=np.int32)
        elif "pdg" not in truth:
            for attr in ("pdg", "particle"):
                if attr in f.attrs:
                    truth["pdg"] = np.full(stop - start, resolve_pdg(f.attrs[attr], path, f"attribute {attr!r}"),
                                           dtype=np.int32)
                    break
        if "pdg" in truth:
            truth["pdg"] = np.asarray(truth["pdg"]).astype(np.int32)
        if "event_number" not in truth:
            truth["event_number"] = np.arange(start, stop, dtype=np.int64)
        file_meta = _json_attr(f, "pcloud_meta")
    meta = {"source_format": "calogan", "source_path": str(path), "n_events_in_file": n,
            "event_range": [start, stop], "n_negative_cells": n_neg, "negative_cells_clipped": bool(clip_negative),
            "energy_units_in_file": "MeV (layers, overflow), GeV (energy)"}
    if notes:
        meta["notes"] = notes
    if file_meta is not None:
        meta["file_meta"] = file_meta
    return ShowerImages(g, images, truth, meta)


def iter_calogan(path, chunk_size: int = 10_000, start: int | None = None, stop: int | None = None,
                 **kwargs) -> Iterator[ShowerImages]:
    """Yield :class:`ShowerImages` chunks of at most ``chunk_size`` events (each read separately from disk)."""
    yield from iter_event_chunks(read_calogan, path, calogan_n_events(path), chunk_size, start, stop, **kwargs)


def write_calogan(path, showers: ShowerImages, compression: str | None = "gzip",
                  compression_opts: int | None = None, dtype="float64") -> None:
    """Write ShowerImages on the calogan geometry as a public-layout CaloGAN file, atomically: layers and
    ``overflow`` in MeV, ``energy`` (N, 1) in GeV, all ``dtype`` (float64 as CaloGAN's ``convert.py``; float32 is
    accepted by CaloGAN's loader too).

    ``overflow`` comes from truth ``overflow_gev`` (N, 3) (finite, >= 0; the energy outside the +-240 mm window per
    layer, module docstring); without it the dataset is zeros and the attribute ``pcloud_overflow`` says so. Extra
    truth goes to the ``pcloud_truth`` group. ``compression``: ``"gzip"`` (as the public files), ``"lzf"`` or
    ``None``.
    """
    import h5py

    g = showers.geometry
    if g.name != "calogan" or [s.name for s in g.sections] != list(LAYER_KEYS):
        raise ValueError(f"write_calogan: showers must be on the 'calogan' geometry, found geometry {g.name!r} "
                         f"with sections {g.section_names}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"write_calogan: dtype must be a float dtype, got {dtype}")
    n = showers.n_events
    if n == 0:
        raise ValueError(f"write_calogan({path}): no events to write")
    if "energy_gev" not in showers.truth:
        raise ValueError(f"write_calogan({path}): truth 'energy_gev' is required (the 'energy' dataset); "
                         f"found truth keys {sorted(showers.truth)}")
    ov = showers.truth.get("overflow_gev")
    if ov is not None:
        ov = np.asarray(ov, dtype=np.float64)
        if ov.shape != (n, 3) or not np.all(np.isfinite(ov)) or np.any(ov < 0):
            raise ValueError(f"write_calogan({path}): truth 'overflow_gev' must be (N, 3) = ({n}, 3), finite and "
                             f">= 0 (GeV outside the +-240 mm window per layer); found shape {ov.shape}")
    kw = {"compression": compression, "compression_opts": compression_opts} if compression else {}
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for s in g.sections:
                mev = np.asarray(showers.images[s.name], dtype=np.float64)[:, 0] * MEV_PER_GEV
                f.create_dataset(s.name, data=mev.astype(dtype), **kw)
            e = np.asarray(showers.truth["energy_gev"], dtype=np.float64).reshape(n, 1)
            f.create_dataset("energy", data=e.astype(dtype), **kw)
            f.create_dataset("overflow", data=(np.zeros((n, 3)) if ov is None else ov * MEV_PER_GEV).astype(dtype),
                             **kw)
            f.attrs[OVERFLOW_ATTR] = OVERFLOW_ZEROS if ov is None else OVERFLOW_FROM_TRUTH
            write_truth_group(f, showers.truth, skip=("energy_gev", "overflow_gev"), compression=compression)
            if "pdg" in showers.truth:
                p = np.unique(np.asarray(showers.truth["pdg"]))
                if p.size == 1:
                    f.attrs["pdg"] = int(p[0])
            _write_common_attrs(f, "calogan", showers)


def _write_common_attrs(f, fmt: str, showers: ShowerImages, meta: dict | None = None):
    """Root attributes every pcloud writer adds: format, version, geometry name and the meta as JSON (``meta``
    replaces ``showers.meta`` when the file's content differs from the input's, e.g. after a calibration)."""
    from .. import __version__

    f.attrs["pcloud_format"] = fmt
    f.attrs["pcloud_version"] = __version__
    f.attrs["pcloud_geometry"] = showers.geometry.name
    f.attrs["pcloud_meta"] = json.dumps(showers.meta if meta is None else meta, default=str, sort_keys=True)


def _json_attr(f, key):
    if key not in f.attrs:
        return None
    try:
        return json.loads(safe_attr(f.attrs[key]))
    except (TypeError, ValueError):
        return None
