"""Triforce / LCD calorimeter HDF5 files (CLIC-like ECAL + HCAL windows; seed 001), read into and written from
ShowerImages, in the layout and on the energy scale of the public files.

Sources (read for this module, described in my own words; commit ids in ``/work/notes/formats_spec.md`` §0):
MattUnderscoreZhang/Triforce_CaloML ``SamplePrep/Converting/python/Convert_to_txt.py`` (truth: ``pdgID``,
``openingAngle``, ``conversion``), ``SamplePrep/Converting/python/Convert_to_h5.py`` (windows, energy scale,
reconstructed angles), ``SamplePrep/SampleAlterationCode/AddFeatures/addFeatures.py`` (derived keys),
``SamplePrep/SampleAlterationCode/AddFeatures/test_files.py`` (the exact key sets), ``Training/TriForce/Loader/
blunt_loader.py`` and ``loader.py`` / ``filters.py`` / ``transforms.py`` (what the loader reads and assumes).

Layout (all datasets have N entries along the first axis; h5py lists keys alphabetically):

==================================  ===============  =======  ================================================
dataset                             shape, dtype     unit     meaning
==================================  ===============  =======  ================================================
``ECAL``                            (N, X, X, 25)    GeV      ECAL window, axes (x, y, layer); X = 51 in the
                                    float32                   public files, 25 in the older/reduced layout
``HCAL``                            (N, 11, 11, 60)  GeV      HCAL window, axes (x, y, layer)
                                    float32
``energy``                          (N,) float64     GeV      true incident energy (1-D: the loader computes
                                                              ``energy - (ECAL_E + HCAL_E)`` per batch)
``pdgID``                           (N,) int64       -        PDG id of the incident particle
``openingAngle``                    (N,) float64     rad      pi0 -> gamma gamma opening angle, **-1** otherwise
``conversion``                      (N,) int64       -        number of photon conversions (see below)
``ECAL_E``, ``HCAL_E``              (N,) float64     GeV      sum of all cells of the window
``ECAL_nHits``, ``HCAL_nHits``      (N,) int64       -        cells with E > 0.1 GeV
``HCAL_ECAL_ERatio``                (N,) float64     -        HCAL_E / ECAL_E (0 where ECAL_E = 0)
``HCAL_ECAL_nHitsRatio``            (N,) float64     -        HCAL_nHits / ECAL_nHits (0 where 0 hits)
``{C}_ratioFirstLayerToTotalE``     (N,) float64     -        E(layer 0) / {C}_E (0 on division by 0)
``{C}_ratioFirstLayerToSecondLayerE`` (N,) float64   -        E(layer 0) / E(layer 1) (0 on division by 0)
``{C}moment{A}{k}``, k = 1..6       (N,) float64     cells    moments of the projection of {C} on axis A
                                                              (X, Y or Z = layer), see :func:`triforce_features`
``R9``                              (N,) float64     -        max 3x3 (x, y) sum of the layer-summed ECAL / total
``recoEta``, ``recoPhi``,           (N,) float64     rad      direction of the energy-weighted barycentre
``recoTheta``                                                 (variable-angle samples only)
==================================  ===============  =======  ================================================

Energy scale. The public conversion multiplied the Geant4 cell energies (active-layer deposits) by 50/1000 ("Geant
is in units of 1/50 GeV"): a sampling-fraction correction, so that the cells are *calibrated GeV* and
``ECAL_E + HCAL_E`` is close to ``energy`` for electrons and photons. Triforce's code relies on it: the energy
regression target is ``(energy - (ECAL_E + HCAL_E)) / (10 ln energy)``, the ``recoOverGen`` filter keeps
``ECAL_E + HCAL_E > 0.66 energy`` and the baselines drop charged pions below 0.3. pcloud's writer therefore stores
calibrated GeV: images simulated in ``mode="visible"`` (active-layer energies, ~1/64 of the energy in the Si/W
ECAL) are divided by the EM sampling fraction of each section (:func:`pcloud.sim.media.em_sampling_fraction`,
f_mip x e/mip, the factor :func:`pcloud.bench.singles.tasks.em_scale` uses; the simulation records it in
``meta["em_sampling_fraction"]``); ``mode="total"`` images (absorber + active) are already on the energy scale.
The factors are stored in the root attributes ``pcloud_em_sampling_fraction_ECAL`` / ``_HCAL`` (1.0 = no factor)
and ``pcloud_energy_scale`` (text). The reader returns the cells as stored (calibrated GeV, as for public files)
and keeps the factors in ``meta["calibration"]``; ``scale="visible"`` multiplies them back.

Measured on written files (pcloud fast simulation, visible mode, 10-100 GeV, 2000 events each): median
(ECAL_E + HCAL_E) / energy = 0.996 (e-), 0.995 (gamma, pi0), 0.820 (pi+) with the 51-cell ECAL window; 0.984, 0.985,
0.984, 0.810 with the 25-cell window; before the calibration 0.0154-0.0156 (e/gamma/pi0) and 0.017 (pi+).

Truth keys pcloud writes where its simulation has no Geant4 equivalent:

* ``openingAngle``: truth ``opening_angle_rad`` of pi0 events (PDG 111); -1 for every other event, as
  ``Convert_to_txt.py`` does when the first three MC particles are not pi0, gamma, gamma. On read, negative values
  become NaN in ``opening_angle_rad`` (pcloud's "not a pi0").
* ``conversion``: ``Convert_to_txt.py`` counts, per event, the e+ e- pairs of the MC-particle record that share a
  production vertex and carry more than 1 GeV together. In a ddsim/DD4hep record those are (as far as I can tell
  from how the record is kept: secondaries are stored when produced in the tracker region) photon conversions in
  the material *in front of* the calorimeter. pcloud defines ``conversion`` as exactly that: the number of photon
  conversions to e+ e- with more than 1 GeV before the calorimeter front face. pcloud's fast simulation places no
  material in front of the CLIC window (photons always convert inside the ECAL, after an exponential depth of mean
  9/7 X0), so the writer stores **0 for every simulated event**; a ``conversion`` truth key (e.g. read from a public
  file) is written as it is. The definition is stored in the attribute ``pcloud_conversion_definition``.
* ``recoEta``/``recoPhi``/``recoTheta``: ``Convert_to_h5.py`` takes the energy-weighted barycentre (x, y, z) of
  all ECAL and HCAL hits in global coordinates and writes theta = acos(z / r), eta = -ln tan(theta / 2) and
  phi = **atan(y / x)** (not atan2: folded into (-pi/2, pi/2)). pcloud does the same with the cell centres of the
  stored window (it has no hits outside it), weighted by the stored (calibrated) energies, in the collider frame of
  :meth:`Geometry.to_collider` with the event's ``window_eta`` (0 if the truth lacks it). pcloud's CLIC window sits
  at phi = 0, so atan and atan2 agree. An event without energy (Triforce's conversion drops such events) gets the
  window axis: eta = window_eta, phi = 0. Truth ``recoEta``/``recoPhi``/``recoTheta`` (read from a file) are copied.

Key sets. ``write_triforce(strict_keys=True)`` writes exactly the 53 keys of the fixed-angle check
(:data:`FIXED_ANGLE_KEYS`) or the 56 of the variable-angle check (:data:`RANDOM_ANGLE_KEYS`, + reco angles), so
Triforce's ``test_files.py`` (``list(f.keys()) == expected``) passes; pcloud-only truth (``theta``, ``phi``, the
``pcloud_truth`` group) is then not written and re-reading loses it (``event_number`` becomes the file index).
By default the writer adds ``theta``/``phi`` (truth ``theta_rad``/``phi_rad``) and the group ``pcloud_truth``
(every other truth key), which Triforce's loaders ignore (``blunt_loader`` reads ``eta``/``phi`` when present,
zero otherwise).

Inside pcloud the sections of ``get_geometry("clic", ecal_cells=25|51)`` have shape (n_layers, n_u, n_v): the
reader transposes (x, y, layer) -> (layer, x, y) and the writer back. Truth mapping on read: ``energy`` ->
``energy_gev``, ``pdgID`` -> ``pdg``, ``openingAngle`` -> ``opening_angle_rad``, ``theta`` -> ``theta_rad``,
``phi`` -> ``phi_rad``; every other per-event dataset is kept in ``truth`` under its file name and listed in
``meta["extra_keys"]``.

Bad input: besides the checks of :mod:`pcloud.io.errors`, a ``pdgID`` pcloud does not know (Triforce's loader
would stop with a KeyError on it) is a :class:`FormatError`; a file whose median (ECAL_E + HCAL_E) / energy lies
outside [0.2, 2] (e.g. energies in MeV) is read with a note in ``meta["notes"]`` and an
:class:`~pcloud.io.errors.EnergyScaleWarning`; so is a file that an earlier pcloud wrote in visible mode (ratio
~0.015, recognised by its ``pcloud_meta`` without the ``pcloud_energy_scale`` attribute), which
``read_triforce(..., scale="calibrated")`` converts.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from ..core.atomic import atomic_output
from ..core.particles import PDG_MASS
from ..core.showers import ShowerImages
from ..geometry import get_geometry
from .calogan import _json_attr, _write_common_attrs
from .errors import (NEGATIVE_TOLERANCE_GEV, TRUTH_GROUP, EnergyScaleWarning, FormatError, check_cells, check_dtype,
                     check_finite, check_positive, check_shape, event_range, get_dataset, iter_event_chunks,
                     open_hdf5, read_range, read_truth_group, safe_attr, write_truth_group)

IMAGE_KEYS = ("ECAL", "HCAL")
#: file key -> pcloud truth key
TRUTH_MAP = {"energy": "energy_gev", "pdgID": "pdg", "openingAngle": "opening_angle_rad", "theta": "theta_rad",
             "phi": "phi_rad"}
#: Cell threshold of ``ECAL_nHits`` / ``HCAL_nHits`` (GeV; addFeatures.py counts ``cells > 0.1``).
HIT_THRESHOLD_GEV = 0.1
MOMENT_KEYS = tuple(f"{c}moment{a}{k}" for c in IMAGE_KEYS for a in "XYZ" for k in range(1, 7))
#: Keys addFeatures.py derives from the images (recomputed by the writer from the float32 images it stores).
DERIVED_KEYS = ("ECAL_E", "HCAL_E", "ECAL_nHits", "HCAL_nHits", "HCAL_ECAL_ERatio", "HCAL_ECAL_nHitsRatio",
                "ECAL_ratioFirstLayerToTotalE", "ECAL_ratioFirstLayerToSecondLayerE",
                "HCAL_ratioFirstLayerToTotalE", "HCAL_ratioFirstLayerToSecondLayerE") + MOMENT_KEYS + ("R9",)
RECO_KEYS = ("recoEta", "recoPhi", "recoTheta")
#: The 53 keys of a fixed-angle file (test_files.py), in h5py's (alphabetical) order.
FIXED_ANGLE_KEYS = tuple(sorted(IMAGE_KEYS + ("energy", "pdgID", "openingAngle", "conversion") + DERIVED_KEYS))
#: The 56 keys of a variable-angle file: the fixed set plus the reconstructed angles.
RANDOM_ANGLE_KEYS = tuple(sorted(FIXED_ANGLE_KEYS + RECO_KEYS))
#: Optional per-event keys known from the public Triforce/LCD files (kept under these names).
KNOWN_EXTRA_KEYS = tuple(k for k in RANDOM_ANGLE_KEYS if k not in IMAGE_KEYS and k not in TRUTH_MAP) + (
    "eta", "N_Subjettiness")
ECAL_SHAPES = {25: (25, 25, 25), 51: (51, 51, 25)}
HCAL_SHAPE = (11, 11, 60)
#: Median (ECAL_E + HCAL_E) / energy outside this range gets a note and an EnergyScaleWarning on read.
SCALE_RATIO_RANGE = (0.2, 2.0)
#: Fewest events a read needs for the energy-scale check.
SCALE_CHECK_MIN_EVENTS = 5
CONVERSION_DEFINITION = ("number of photon conversions to e+e- pairs with more than 1 GeV before the calorimeter "
                         "front face; pcloud's fast simulation has no material there: 0 for simulated events")
_SCALE_ATTR = "pcloud_energy_scale"
_FRACTION_ATTR = "pcloud_em_sampling_fraction_"
#: Events per block when the writer computes derived keys (bounds the float64 temporaries: ~35 MB each at 51 cells).
WRITE_BLOCK_EVENTS = 64


# --------------------------------------------------------------------------------------------- derived keys
def _safe_divide(num, den) -> np.ndarray:
    """num / den with 0 where den == 0 (addFeatures.py's ``safeDivide``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def triforce_features(ecal, hcal) -> dict[str, np.ndarray]:
    """The derived keys of addFeatures.py (:data:`DERIVED_KEYS`) from images in *file* axis order (N, x, y, layer).

    Computed in float64 from the given values (pass the float32 arrays as stored, so that a reader recomputing them
    from the file gets the same numbers). Per calorimeter C with cells E (GeV):

    * ``C_E`` = sum of all cells; ``C_nHits`` = number of cells with E > :data:`HIT_THRESHOLD_GEV` (int64);
    * ``C_ratioFirstLayerToTotalE`` = E(layer 0) / C_E, ``C_ratioFirstLayerToSecondLayerE`` = E(layer 0) / E(layer 1);
    * moments along axis A (X = first image axis, Y = second, Z = layer): with p_i the projection (sum over the two
      other axes) and i = 0 .. n-1 the cell index, moment 1 = sum(i p_i) / sum(p), moment k >= 2 =
      sum((i - moment 1)^k p_i) / sum(p) (central, not normalised);
    * ``HCAL_ECAL_ERatio`` = HCAL_E / ECAL_E, ``HCAL_ECAL_nHitsRatio`` = HCAL_nHits / ECAL_nHits;
    * ``R9`` = largest sum over a 3 x 3 block of (x, y) cells of the layer-summed ECAL, divided by its total (0 if the
      total is not > 0; blocks lie fully inside the window, as skimage's ``view_as_windows``).

    Every ratio is 0 where its denominator is 0.
    """
    out: dict[str, np.ndarray] = {}
    r9 = None
    for name, img in zip(IMAGE_KEYS, (ecal, hcal)):
        a = np.asarray(img)
        if a.ndim != 4:
            raise ValueError(f"triforce_features: {name} must be (N, x, y, layer), found shape {a.shape}")
        # two passes over the cube (float64 accumulation of the stored values); everything else from projections
        xy = a.sum(axis=3, dtype=np.float64)                  # (N, x, y): summed over layers
        proj = {"X": xy.sum(axis=2), "Y": xy.sum(axis=1), "Z": a.sum(axis=(1, 2), dtype=np.float64)}
        total = proj["Z"].sum(axis=1)
        out[f"{name}_E"] = total
        out[f"{name}_nHits"] = np.count_nonzero(a > HIT_THRESHOLD_GEV, axis=(1, 2, 3)).astype(np.int64)
        out[f"{name}_ratioFirstLayerToTotalE"] = _safe_divide(proj["Z"][:, 0], total)
        out[f"{name}_ratioFirstLayerToSecondLayerE"] = _safe_divide(proj["Z"][:, 0], proj["Z"][:, 1])
        norm = proj["X"].sum(axis=1)
        for axis, p in proj.items():
            idx = np.arange(p.shape[1], dtype=np.float64)
            m1 = _safe_divide(p @ idx, norm)
            out[f"{name}moment{axis}1"] = m1
            d = idx[None, :] - m1[:, None]
            dk = d.copy()
            for k in range(2, 7):
                dk *= d
                out[f"{name}moment{axis}{k}"] = _safe_divide(np.einsum("ij,ij->i", p, dk), norm)
        if name == "ECAL":
            blocks = np.lib.stride_tricks.sliding_window_view(xy, (3, 3), axis=(1, 2)).sum(axis=(-2, -1))
            tot = xy.sum(axis=(1, 2))
            r9 = np.where(tot > 0, blocks.max(axis=(1, 2)) / np.where(tot > 0, tot, 1.0), 0.0)
    out["HCAL_ECAL_ERatio"] = _safe_divide(out["HCAL_E"], out["ECAL_E"])
    out["HCAL_ECAL_nHitsRatio"] = _safe_divide(out["HCAL_nHits"], out["ECAL_nHits"])
    out["R9"] = r9
    return {k: out[k] for k in DERIVED_KEYS}


def reco_angles(geometry, images: dict, window_eta=None) -> dict[str, np.ndarray]:
    """``recoEta``, ``recoPhi``, ``recoTheta`` of events on a clic geometry (pcloud image order (N, layer, x, y)).

    Energy-weighted barycentre of the cell centres in the collider frame (:meth:`Geometry.to_collider` with the
    event's ``window_eta``), then theta = acos(z / r), eta = -ln tan(theta / 2), phi = atan(y / x) as
    Triforce's ``Convert_to_h5.py``. Events without energy get the window axis (see the module docstring).
    """
    n = next(iter(images.values())).shape[0]
    weta = np.zeros(n) if window_eta is None else np.broadcast_to(np.asarray(window_eta, np.float64), (n,))
    # the cells of an "xy" section sit at (u, v, layer depth): sum E x etc. from the three projections of each image
    tot, sx, sy, sz = (np.zeros(n) for _ in range(4))
    for sec in geometry.sections:
        if sec.kind != "xy":
            raise ValueError(f"reco_angles: needs 'xy' sections (clic), found {sec.kind!r} for {sec.name!r}")
        a = np.asarray(images[sec.name])
        uv = a.sum(axis=1, dtype=np.float64)                      # (N, u, v)
        pl = a.sum(axis=(2, 3), dtype=np.float64)                 # (N, layer)
        uc = 0.5 * (sec.u_edges[1:] + sec.u_edges[:-1])
        vc = 0.5 * (sec.v_edges[1:] + sec.v_edges[:-1])
        zc = 0.5 * (np.asarray(sec.layer_edges_mm[1:]) + np.asarray(sec.layer_edges_mm[:-1]))
        tot += pl.sum(axis=1)
        sx += uv.sum(axis=2) @ uc
        sy += uv.sum(axis=1) @ vc
        sz += pl @ zc
    has = tot > 0
    w = np.where(has, tot, 1.0)
    xc, yc, zc = geometry.to_collider(sx / w, sy / w, sz / w, weta)
    r = np.sqrt(xc * xc + yc * yc + zc * zc)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.arccos(np.clip(zc / r, -1.0, 1.0))
        eta = -np.log(np.tan(theta / 2.0))
        phi = np.arctan(yc / xc)
    axis_theta = 2.0 * np.arctan(np.exp(-weta))
    return {"recoEta": np.where(has, eta, weta), "recoPhi": np.where(has, phi, 0.0),
            "recoTheta": np.where(has, theta, axis_theta)}


# --------------------------------------------------------------------------------------------- reading
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


def triforce_ecal_cells(path) -> int:
    """ECAL window size of a Triforce file (25 or 51 cells; validates the layout, reads no data)."""
    with open_hdf5(path) as f:
        return _layout(f, path)[1]


def check_pdg_known(pdg: np.ndarray, path, field: str = "dataset 'pdgID'") -> None:
    """Every PDG id must be one pcloud knows (:data:`pcloud.core.particles.PDG_MASS`); else a FormatError."""
    vals = np.unique(np.asarray(pdg, dtype=np.int64))
    bad = [int(v) for v in vals if int(v) not in PDG_MASS]
    if bad:
        raise FormatError(path, field, f"PDG ids of known particles ({sorted({abs(k) for k in PDG_MASS})}, "
                          "either sign)", f"unknown ids {bad[:8]}")


def _file_calibration(f, file_meta) -> tuple[str, dict | None, str | None]:
    """(energy scale of the stored cells, factors, note) from the attributes of a Triforce file."""
    frac = {s: safe_attr(f.attrs[_FRACTION_ATTR + s]) for s in IMAGE_KEYS if _FRACTION_ATTR + s in f.attrs}
    frac = {k: float(v) for k, v in frac.items()} if len(frac) == len(IMAGE_KEYS) else None
    if _SCALE_ATTR in f.attrs:
        return "calibrated", frac, None
    if safe_attr(f.attrs.get("pcloud_format", "")) == "triforce" and isinstance(file_meta, dict) \
            and file_meta.get("mode") == "visible":
        return "visible", None, "old"
    return "calibrated", None, None


def _visible_fractions(geometry) -> dict[str, float]:
    from ..sim.media import em_sampling_fraction  # the factor of pcloud.bench.singles.tasks.em_scale

    return {s.name: float(em_sampling_fraction(s.stack)) for s in geometry.sections}


def _scale_note(images: dict, energy: np.ndarray) -> tuple[float, int] | None:
    """(median ratio, events) when the median (ECAL_E + HCAL_E) / energy is outside SCALE_RATIO_RANGE."""
    if energy.size < SCALE_CHECK_MIN_EVENTS:
        return None
    dep = sum(a.reshape(a.shape[0], -1).sum(axis=1, dtype=np.float64) for a in images.values())
    ratio = float(np.median(dep / energy))
    lo, hi = SCALE_RATIO_RANGE
    return None if lo <= ratio <= hi else (ratio, int(energy.size))


def read_triforce(path, start: int | None = None, stop: int | None = None,
                  negative_tolerance_gev: float = NEGATIVE_TOLERANCE_GEV, clip_negative: bool = False,
                  allow_empty: bool = False, extras: bool = True, scale: str | None = None) -> ShowerImages:
    """Read events ``[start, stop)`` of a Triforce/LCD HDF5 file into :class:`ShowerImages` on
    ``get_geometry("clic", ecal_cells=25|51)`` (chosen from the ECAL shape).

    ``scale``: ``None`` (default) returns the cells as stored: calibrated GeV for public files and files written by
    this pcloud; ``"visible"`` multiplies them by the sampling fractions a pcloud file records (FormatError for
    files without them); ``"calibrated"`` also divides the visible cells of a file written by an older pcloud in
    visible mode by :func:`pcloud.sim.media.em_sampling_fraction`. ``meta["energy_scale"]`` says what was returned
    and ``meta["calibration"]`` holds the factors. ``extras=False`` skips the optional per-event datasets.

    Raises :class:`FormatError` for the bad inputs listed in :mod:`pcloud.io.errors`, a non-integer or unknown
    ``pdgID`` or extras with the wrong length. An energy scale far from calibrated GeV is not an error: see the
    module docstring (note in ``meta["notes"]``, :class:`EnergyScaleWarning`).
    """
    import h5py

    if scale not in (None, "calibrated", "visible"):
        raise ValueError(f"read_triforce: scale must be None, 'calibrated' or 'visible', got {scale!r}")
    notes: list[str] = []   # everything the caller should know about the scale
    warn: list[str] = []    # the subset that means the cells are probably not what Triforce's tools expect
    with open_hdf5(path) as f:
        n, ecal_cells = _layout(f, path)
        g = get_geometry("clic", ecal_cells=ecal_cells)
        start, stop = event_range(n, start, stop, path, allow_empty)
        file_meta = _json_attr(f, "pcloud_meta")
        stored, frac, kind = _file_calibration(f, file_meta)
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
        check_pdg_known(pdg_raw, path)
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
        if "opening_angle_rad" in truth:  # the public files write -1 for "not a pi0"; pcloud uses NaN
            oa = truth["opening_angle_rad"]
            truth["opening_angle_rad"] = np.where(oa < 0, np.nan, oa)
        for k, v in read_truth_group(f, n, start, stop, path).items():
            truth.setdefault(k, v)
        if "event_number" not in truth:
            truth["event_number"] = np.arange(start, stop, dtype=np.int64)
    returned = stored
    if scale == "visible" and stored == "calibrated":
        if frac is None:
            raise FormatError(path, f"attributes '{_FRACTION_ATTR}ECAL/HCAL'",
                              "the sampling fractions a pcloud writer stores (needed for scale='visible')",
                              "none (cells are calibrated GeV with no recorded factor)")
        for s in IMAGE_KEYS:
            images[s] = (images[s] * np.float32(frac[s])).astype(np.float32)
        returned = "visible"
    elif scale == "calibrated" and stored == "visible":
        frac = _visible_fractions(g)
        for s in IMAGE_KEYS:
            images[s] = (images[s] / np.float32(frac[s])).astype(np.float32)
        returned = "calibrated"
        notes.append(f"cells written by an older pcloud in visible mode divided by the EM sampling fractions "
                     f"{_fmt_frac(frac)} (pcloud.sim.media.em_sampling_fraction)")
    elif stored == "visible":
        f_now = _visible_fractions(g)
        warn.append(f"{path}: written by an older pcloud in visible mode: cells are active-layer energies, about "
                     f"{_fmt_frac(f_now)} of the calibrated GeV that Triforce's tools assume; read with "
                     f"scale='calibrated' (divides by these EM sampling fractions) or re-simulate")
    if returned == "calibrated" and kind != "old":
        bad = _scale_note(images, e)
        if bad is not None:
            warn.append(f"{path}: median (ECAL_E + HCAL_E) / energy = {bad[0]:.3g} over {bad[1]} events, outside "
                         f"{list(SCALE_RATIO_RANGE)}: the cells do not look like calibrated GeV (active-layer "
                         f"energies? MeV?); Triforce's loader and filters assume ECAL_E + HCAL_E ~ energy")
    for note in warn:
        warnings.warn(note, EnergyScaleWarning, stacklevel=2)
    notes += warn
    meta = {"source_format": "triforce", "source_path": str(path), "n_events_in_file": n,
            "event_range": [start, stop], "ecal_cells": ecal_cells, "n_negative_cells": n_neg,
            "negative_cells_clipped": bool(clip_negative), "energy_units_in_file": "GeV",
            "energy_scale": returned, "calibration": {"stored": stored, "em_sampling_fraction": frac},
            "extra_keys": extra_keys}
    if notes:
        meta["notes"] = notes
    if file_meta is not None:
        meta["file_meta"] = file_meta
    return ShowerImages(g, images, truth, meta)


def _fmt_frac(frac: dict) -> str:
    return ", ".join(f"{k} {v:.4g} (1/{1 / v:.3g})" for k, v in frac.items())


def iter_triforce(path, chunk_size: int = 2_000, start: int | None = None, stop: int | None = None,
                  **kwargs) -> Iterator[ShowerImages]:
    """Yield :class:`ShowerImages` chunks of at most ``chunk_size`` events (each read separately from disk)."""
    yield from iter_event_chunks(read_triforce, path, triforce_n_events(path), chunk_size, start, stop, **kwargs)


# --------------------------------------------------------------------------------------------- writing
def _calibration(showers: ShowerImages, calibrate) -> tuple[dict[str, float], str]:
    """Factors f per section (file cells = images / f) and the energy-scale label, see :func:`write_triforce`."""
    if calibrate not in ("auto", True, False):
        raise ValueError(f"write_triforce: calibrate must be 'auto', True or False, got {calibrate!r}")
    meta = showers.meta
    scale, mode = meta.get("energy_scale"), meta.get("mode")
    if calibrate == "auto":
        calibrate = scale == "visible" or (scale is None and mode == "visible")
    if not calibrate:
        if scale:
            label = f"as given: {scale}"
        elif mode == "total":
            label = "total deposited energy (absorber + active), no factor"
        else:
            label = "as given (no visible-mode marker in the meta)"
        return {s: 1.0 for s in IMAGE_KEYS}, label
    frac = None
    for src in ((meta.get("calibration") or {}).get("em_sampling_fraction"), meta.get("em_sampling_fraction")):
        if isinstance(src, dict) and all(isinstance(src.get(s), (int, float)) and 0 < src[s] < 1 for s in IMAGE_KEYS):
            frac = {s: float(src[s]) for s in IMAGE_KEYS}
            break
    if frac is None:
        frac = _visible_fractions(showers.geometry)
    return frac, ("calibrated GeV: visible (active-layer) energies divided by the EM sampling fraction of each "
                  "section (pcloud.sim.media.em_sampling_fraction)")


def _angle_mode(showers: ShowerImages, angles: str) -> str:
    if angles not in ("auto", "fixed", "random"):
        raise ValueError(f"write_triforce: angles must be 'auto', 'fixed' or 'random', got {angles!r}")
    if angles != "auto":
        return angles
    t = showers.truth
    if any(k in t for k in RECO_KEYS):
        return "random"
    th = np.asarray(t.get("theta_rad", np.zeros(1)), dtype=np.float64)
    th = th[np.isfinite(th)]
    return "random" if th.size and th.max() - th.min() > 1e-9 else "fixed"


def _opening_angle(truth: dict, n: int) -> np.ndarray:
    pdg = np.asarray(truth["pdg"]).reshape(n)
    oa = np.asarray(truth.get("opening_angle_rad", np.full(n, np.nan)), dtype=np.float64).reshape(n)
    return np.where((pdg == 111) & np.isfinite(oa) & (oa >= 0), oa, -1.0)


def write_triforce(path, showers: ShowerImages, compression: str | None = "gzip",
                   compression_opts: int | None = None, *, calibrate="auto", strict_keys: bool = False,
                   angles: str = "auto") -> None:
    """Write ShowerImages on a clic geometry in the public Triforce/LCD layout (module docstring), atomically.

    ``calibrate``: ``"auto"`` divides the images by the EM sampling fraction of each section when they are visible
    energies (``meta["energy_scale"] == "visible"``, or ``meta["mode"] == "visible"`` from the simulation without an
    ``energy_scale``), using the factors recorded in the meta or :func:`pcloud.sim.media.em_sampling_fraction`;
    ``True`` always divides, ``False`` never. ``strict_keys``: write exactly :data:`FIXED_ANGLE_KEYS` or
    :data:`RANDOM_ANGLE_KEYS` (no pcloud extras). ``angles``: ``"fixed"`` or ``"random"`` key set; ``"auto"``
    picks ``"random"`` when the truth has a reco angle or ``theta_rad`` varies. Non-strict files always get the reco
    angles. Images and derived keys are written in blocks of :data:`WRITE_BLOCK_EVENTS` events, ECAL/HCAL chunked
    one event per chunk as the public files.
    """
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
    truth = showers.truth
    missing = [k for k in ("energy_gev", "pdg") if k not in truth]
    if missing:
        raise ValueError(f"write_triforce({path}): truth {missing} required (datasets 'energy', 'pdgID'); "
                         f"found {sorted(truth)}")
    energy = np.asarray(truth["energy_gev"], dtype=np.float64).reshape(n)
    if not np.all(np.isfinite(energy) & (energy > 0)):
        raise ValueError(f"write_triforce({path}): truth 'energy_gev' must be finite and > 0")
    pdg = np.asarray(truth["pdg"]).astype(np.int64).reshape(n)
    check_pdg_known(pdg, path, "truth 'pdg'")
    frac, scale_label = _calibration(showers, calibrate)
    mode = _angle_mode(showers, angles)
    with_reco = mode == "random" or not strict_keys
    kw = {"compression": compression, "compression_opts": compression_opts} if compression else {}

    per_event: dict[str, np.ndarray] = {k: np.empty(n, np.int64 if k.endswith("nHits") else np.float64)
                                        for k in DERIVED_KEYS}
    copied_reco = [k for k in RECO_KEYS if k in truth]  # read from a file: kept (no hits to recompute them from)
    if with_reco:
        per_event.update({k: (np.asarray(truth[k], dtype=np.float64).reshape(n) if k in copied_reco
                              else np.empty(n)) for k in RECO_KEYS})
    weta = truth.get("window_eta")
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = {s.name: f.create_dataset(s.name, shape=(n, s.n_u, s.n_v, s.n_layers), dtype=np.float32,
                                           chunks=(1, s.n_u, s.n_v, s.n_layers), **kw) for s in g.sections}
            for a in range(0, n, WRITE_BLOCK_EVENTS):
                b = min(n, a + WRITE_BLOCK_EVENTS)
                block, file_order = {}, {}
                for s in IMAGE_KEYS:
                    img = np.asarray(showers.images[s][a:b], dtype=np.float32)
                    if frac[s] != 1.0:
                        img = (img / np.float32(frac[s])).astype(np.float32)
                    block[s] = img
                    file_order[s] = np.ascontiguousarray(np.transpose(img, (0, 2, 3, 1)))  # -> (x, y, layer)
                    ds[s][a:b] = file_order[s]
                for k, v in triforce_features(file_order["ECAL"], file_order["HCAL"]).items():
                    per_event[k][a:b] = v
                if with_reco and len(copied_reco) < len(RECO_KEYS):
                    w = None if weta is None else np.asarray(weta, dtype=np.float64)[a:b]
                    for k, v in reco_angles(g, block, w).items():
                        if k not in copied_reco:
                            per_event[k][a:b] = v
            f.create_dataset("energy", data=energy)
            f.create_dataset("pdgID", data=pdg)
            f.create_dataset("openingAngle", data=_opening_angle(truth, n))
            conv = np.asarray(truth["conversion"]) if "conversion" in truth else np.zeros(n, np.int64)
            if conv.dtype.kind == "f" and np.any(conv != np.round(conv)):
                raise ValueError(f"write_triforce({path}): truth 'conversion' must hold integer counts")
            f.create_dataset("conversion", data=conv.astype(np.int64).reshape(n))
            for k, v in per_event.items():
                f.create_dataset(k, data=v)
            written = set(f.keys())
            used = {"energy_gev", "pdg", "opening_angle_rad", "conversion", *DERIVED_KEYS, *RECO_KEYS}
            if not strict_keys:
                for key, fkey in (("theta_rad", "theta"), ("phi_rad", "phi")):
                    if key in truth:
                        f.create_dataset(fkey, data=np.asarray(truth[key], dtype=np.float64).reshape(n))
                        used.add(key)
                for key in KNOWN_EXTRA_KEYS:
                    if key in truth and key not in written and key not in used:
                        f.create_dataset(key, data=np.asarray(truth[key]))
                        used.add(key)
                rest = {k: v for k, v in truth.items() if k not in used}
                if TRUTH_GROUP in rest:
                    raise ValueError(f"write_triforce: truth key {TRUTH_GROUP!r} is reserved")
                write_truth_group(f, rest, compression=compression)
            else:
                expected = RANDOM_ANGLE_KEYS if mode == "random" else FIXED_ANGLE_KEYS
                if tuple(f.keys()) != expected:  # an internal invariant, checked because the strict set is the point
                    raise RuntimeError(f"write_triforce: strict key set broken: {sorted(set(f.keys()) ^ set(expected))}")
            _write_common_attrs(f, "triforce", showers, meta={**showers.meta, "energy_scale": "calibrated"})
            f.attrs[_SCALE_ATTR] = scale_label
            for s in IMAGE_KEYS:
                f.attrs[_FRACTION_ATTR + s] = float(frac[s])
            f.attrs["pcloud_conversion_definition"] = CONVERSION_DEFINITION
            f.attrs["pcloud_triforce_keys"] = (f"strict-{mode}" if strict_keys else f"extended-{mode}")
