"""Triforce / LCD calorimeter HDF5 files (CLIC-like ECAL + HCAL windows; seed 001), read into and written from
ShowerImages.

Public layout (Triforce_CaloML ``Converting/python/Convert_to_h5.py`` + ``addFeatures.py`` and the key list its
sample checks expect):

==========================  ====================  ====  ======================================================
dataset                     shape                 unit  meaning
==========================  ====================  ====  ======================================================
``ECAL``                    (N, 25, 25, 25) or    GeV   ECAL window, axes (x, y, layer); 51 x 51 in the GEN set
                            (N, 51, 51, 25)
``HCAL``                    (N, 11, 11, 60)       GeV   HCAL window, axes (x, y, layer)
``energy``                  (N,) or (N, 1)        GeV   true incident energy
``pdgID``                   (N,)                  -     PDG id of the incident particle
``openingAngle``            (N,)                  rad   pi0 -> gamma gamma opening angle (0 when not a pi0)
``conversion``              (N,)                  -     photon conversion flag
``eta``, ``phi``, ``theta``  (N,)                  rad   true direction (variable-angle samples)
``recoEta``, ``recoPhi``,   (N,)                  rad   direction reconstructed from the shower
``recoTheta``
``ECAL_E``, ``HCAL_E``,     (N,)                        summed energies, hit counts and ratios, ``R9``, shower
``ECAL_nHits``, ...                                     moments ``ECALmomentX1`` ... ``HCALmomentZ6``
==========================  ====================  ====  ======================================================

Inside pcloud the sections of ``get_geometry("clic", ecal_cells=25|51)`` have shape (n_layers, n_u, n_v): the
reader transposes (x, y, layer) -> (layer, x, y) and the writer back.

Truth mapping on read: ``energy`` -> ``energy_gev``, ``pdgID`` -> ``pdg``, ``openingAngle`` ->
``opening_angle_rad``, ``theta`` -> ``theta_rad``, ``phi`` -> ``phi_rad``. Every other dataset with one entry
per event (the optional keys above, or any unknown one) is kept in ``truth`` under its file name; their names are
listed in ``meta["extra_keys"]``. The values are kept as stored (some public feature columns were computed from
energies in 1/50 GeV units by the original scripts; pcloud does not rescale them).

Writer: ``ECAL``, ``HCAL`` (float32), ``energy`` (float64, (N,)), ``pdgID`` (int64), the mapped keys above when
the truth has them, ``ECAL_E``, ``HCAL_E`` (sums, GeV) and ``HCAL_ECAL_ERatio`` (0 where ECAL_E = 0; the public
Triforce loader requires these three; always recomputed from the images, truth values of these names are not
copied), every truth key that carries a Triforce name, and all remaining pcloud
truth keys in the group ``pcloud_truth`` (see :mod:`pcloud.io.calogan`). No public dataset name is reused.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..geometry import get_geometry
from ..core.showers import ShowerImages
from ..core.atomic import atomic_output
from .calogan import _json_attr, _write_common_attrs
from .errors import (NEGATIVE_TOLERANCE_GEV, TRUTH_GROUP, FormatError, check_cells, check_dtype, check_finite,
                     check_positive, check_shape, event_range, get_dataset, iter_event_chunks, open_hdf5, read_range,
                     read_truth_group, write_truth_group)

IMAGE_KEYS = ("ECAL", "HCAL")
#: file key -> pcloud truth key
TRUTH_MAP = {"energy": "energy_gev", "pdgID": "pdg", "openingAngle": "opening_angle_rad", "theta": "theta_rad",
             "phi": "phi_rad"}
#: Optional per-event keys known from the public Triforce/LCD files (kept under these names).
KNOWN_EXTRA_KEYS = tuple(
    ["conversion", "eta", "recoEta", "recoPhi", "recoTheta", "R9", "ECAL_E", "HCAL_E", "ECAL_nHits", "HCAL_nHits",
     "HCAL_ECAL_ERatio", "HCAL_ECAL_nHitsRatio", "ECAL_ratioFirstLayerToTotalE", "HCAL_ratioFirstLayerToTotalE",
     "ECAL_ratioFirstLayerToSecondLayerE", "HCAL_ratioFirstLayerToSecondLayerE", "N_Subjettiness"]
    + [f"{c}moment{a}{i}" for c in ("ECAL", "HCAL") for a in "XYZ" for i in range(1, 7)])
ECAL_SHAPES = {25: (25, 25, 25), 51: (51, 51, 25)}
HCAL_SHAPE = (11, 11, 60)


def _layout(f, path) -> tuple[int, int]:
    """Check keys/shapes/dtypes from metadata; return (N, ecal_cells)."""
    ecal = get_dataset(f, "ECAL", path)
    check_dtype(ecal, "f", path)
    n = check_shape(ecal, (None, *ECAL_SHAPES[25]), path, alternatives=((None, *ECAL_SHAPES[51]),))
    ecal_cells = int(ecal.shape[1])
    hcal = get_dataset(f, "HCAL", path)
    check_dtype(hcal, "f", path)
    nh = check_shape(hcal, (None, *HCAL_SHAPE), path)
    if nh != n:
        raise FormatError(path, "dataset 'HCAL'", f"{n} events (as 'ECAL')", f"{nh} events")
    for key, kinds, what in (("energy", "fiu", "a numeric dtype"), ("pdgID", "fiu", "an integer (or float) dtype")):
        ds = get_dataset(f, key, path)
        check_dtype(ds, kinds, path, what)
        nk = check_shape(ds, (None,), path, alternatives=((None, 1),))
        if nk != n:
            raise FormatError(path, f"dataset {key!r}", f"{n} events (as 'ECAL')", f"{nk} events")
    return n, ecal_cells


def triforce_n_events(path) -> int:
    """Number of events in a Triforce file (validates the layout, reads no data)."""
    with open_hdf5(path) as f:
        return _layout(f, path)[0]


def read_triforce(path, start: int | None = None, stop: int | None = None,
                  negative_tolerance_gev: float = NEGATIVE_TOLERANCE_GEV, clip_negative: bool = False,
                  allow_empty: bool = False, extras: bool = True) -> ShowerImages:
    """Read events ``[start, stop)`` of a Triforce/LCD HDF5 file into :class:`ShowerImages` on
    ``get_geometry("clic", ecal_cells=25|51)`` (chosen from the ECAL shape).

    ``extras=False`` skips the optional per-event datasets. Raises :class:`FormatError` for the bad inputs listed
    in :mod:`pcloud.io.errors`, a non-integer ``pdgID`` or extras with the wrong length.
    """
    import h5py

    with open_hdf5(path) as f:
        n, ecal_cells = _layout(f, path)
        g = get_geometry("clic", ecal_cells=ecal_cells)
        start, stop = event_range(n, start, stop, path, allow_empty)
        images, n_neg = {}, 0
        for s in g.sections:
            a = read_range(f[s.name], start, stop, path).astype(np.float32)
            tol = max(negative_tolerance_gev, 5.0 * s.noise_sigma_gev)
            a, k = check_cells(a, path, f"dataset {s.name!r}", tol, start, "GeV", clip_negative)
            n_neg += k
            images[s.name] = np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))  # (x, y, layer) -> (layer, x, y)
        e = read_range(f["energy"], start, stop, path).astype(np.float64).reshape(-1)
        check_positive(e, path, "dataset 'energy'", start)
        pdg_raw = read_range(f["pdgID"], start, stop, path).reshape(-1)
        check_finite(pdg_raw.astype(np.float64), path, "dataset 'pdgID'", start)
        if pdg_raw.dtype.kind == "f" and np.any(pdg_raw != np.round(pdg_raw)):
            raise FormatError(path, "dataset 'pdgID'", "integer PDG ids", f"non-integer values {pdg_raw[:3]}")
        truth = {"energy_gev": e, "pdg": pdg_raw.astype(np.int32)}
        extra_keys = []
        for key, ds in f.items():
            if key in IMAGE_KEYS or key in ("energy", "pdgID") or not isinstance(ds, h5py.Dataset):
                continue
            if not extras and key not in TRUTH_MAP:
                continue
            if ds.ndim == 0 or ds.shape[0] != n:
                if key in TRUTH_MAP or key in KNOWN_EXTRA_KEYS:
                    raise FormatError(path, f"dataset {key!r}", f"{n} entries (one per event)", f"shape {ds.shape}")
                continue  # a per-file dataset of unknown meaning: not per-event truth
            if ds.dtype.kind not in "biuf":
                continue
            v = read_range(ds, start, stop, path)
            if v.ndim == 2 and v.shape[1] == 1:
                v = v[:, 0]
            name = TRUTH_MAP.get(key, key)
            truth[name] = v.astype(np.float64) if name in TRUTH_MAP.values() else v
            if key not in TRUTH_MAP:
                extra_keys.append(key)
        for k, v in read_truth_group(f, n, start, stop, path).items():
            truth.setdefault(k, v)
        if "event_number" not in truth:
            truth["event_number"] = np.arange(start, stop, dtype=np.int64)
        file_meta = _json_attr(f, "pcloud_meta")
    meta = {"source_format": "triforce", "source_path": str(path), "n_events_in_file": n,
            "event_range": [start, stop], "ecal_cells": ecal_cells, "n_negative_cells": n_neg,
            "negative_cells_clipped": bool(clip_negative), "energy_units_in_file": "GeV",
            "extra_keys": extra_keys}
    if file_meta is not None:
        meta["file_meta"] = file_meta
    return ShowerImages(g, images, truth, meta)


def iter_triforce(path, chunk_size: int = 2_000, start: int | None = None, stop: int | None = None,
                  **kwargs) -> Iterator[ShowerImages]:
    """Yield :class:`ShowerImages` chunks of at most ``chunk_size`` events (each read separately from disk)."""
    yield from iter_event_chunks(read_triforce, path, triforce_n_events(path), chunk_size, start, stop, **kwargs)


def write_triforce(path, showers: ShowerImages, compression: str | None = "gzip",
                   compression_opts: int | None = None) -> None:
    """Write ShowerImages on a clic geometry in the Triforce/LCD layout (see the module docstring), atomically."""
    import h5py

    g = showers.geometry
    if g.name != "clic" or g.section_names != list(IMAGE_KEYS):
        raise ValueError(f"write_triforce: showers must be on the 'clic' geometry, found {g.name!r} with "
                         f"sections {g.section_names}")
    ecal_cells = g.section("ECAL").n_u
    if g.section("HCAL").shape != (60, 11, 11) or ecal_cells not in ECAL_SHAPES:
        raise ValueError(f"write_triforce: Triforce files hold ECAL 25x25x25 / 51x51x25 and HCAL 11x11x60, "
                         f"found ECAL {g.section('ECAL').shape}, HCAL {g.section('HCAL').shape}")
    n = showers.n_events
    if n == 0:
        raise ValueError(f"write_triforce({path}): no events to write")
    missing = [k for k in ("energy_gev", "pdg") if k not in showers.truth]
    if missing:
        raise ValueError(f"write_triforce({path}): truth {missing} required (datasets 'energy', 'pdgID'); "
                         f"found {sorted(showers.truth)}")
    kw = {"compression": compression, "compression_opts": compression_opts} if compression else {}
    inverse = {v: k for k, v in TRUTH_MAP.items()}
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            sums = {}
            for name in IMAGE_KEYS:
                a = np.asarray(showers.images[name], dtype=np.float32)
                sums[name] = a.reshape(n, -1).sum(axis=1, dtype=np.float64)
                f.create_dataset(name, data=np.transpose(a, (0, 2, 3, 1)), **kw)  # (layer, x, y) -> (x, y, layer)
            f.create_dataset("energy", data=np.asarray(showers.truth["energy_gev"], dtype=np.float64).reshape(n))
            f.create_dataset("pdgID", data=np.asarray(showers.truth["pdg"]).astype(np.int64).reshape(n))
            written = {"energy_gev", "pdg"}
            for key, fkey in inverse.items():
                if key in showers.truth and key not in written:
                    f.create_dataset(fkey, data=np.asarray(showers.truth[key], dtype=np.float64))
                    written.add(key)
            ecal_e, hcal_e = sums["ECAL"], sums["HCAL"]
            derived = {"ECAL_E": ecal_e, "HCAL_E": hcal_e,
                       "HCAL_ECAL_ERatio": np.divide(hcal_e, ecal_e, out=np.zeros(n), where=ecal_e > 0)}
            for key, v in derived.items():  # always recomputed from the images written
                f.create_dataset(key, data=v)
                written.add(key)
            for key, v in showers.truth.items():
                if key in written:
                    continue
                if key in KNOWN_EXTRA_KEYS or key in ("conversion", "eta"):
                    f.create_dataset(key, data=np.asarray(v))
                    written.add(key)
            rest = {k: v for k, v in showers.truth.items() if k not in written}
            if TRUTH_GROUP in rest:
                raise ValueError(f"write_triforce: truth key {TRUTH_GROUP!r} is reserved")
            write_truth_group(f, rest, compression=compression)
            _write_common_attrs(f, "triforce", showers)
