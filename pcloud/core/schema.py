"""The one point-cloud schema of pcloud.

A *cloud array* is an :class:`awkward.Array` with one record per event. Per-event fields sit at the top level; the
per-point fields sit in the list of records ``points`` (``clouds.points.energy`` is ``var * float32``; write
``clouds.points["type"]``, since ``.type`` is the awkward type attribute). Cells above
threshold and track-layer intersections are both points, distinguished by ``type``.

Per point (``clouds.points``)
=============================

==================  ===============  =====  ===========================================================  =========
field               dtype            unit   meaning                                                      default
==================  ===============  =====  ===========================================================  =========
``type``            int8             --     :class:`PointType`: CELL 0, FOCAL_TRACK 1, OTHER_TRACK 2,    CELL
                                            PADDING 3
``x, y, z``         float32          mm     position in the geometry's frame (local frame for xy /       0
                                            ralpha geometries, collider frame for etaphi, see
                                            :mod:`pcloud.geometry.base`); cells: the cell centre
``eta, phi``        float32          --,    collider pseudorapidity and azimuth; for local-frame         0
                                     rad    geometries the window is placed at the event's
                                            ``window_eta`` (0 when absent)
``layer``           int32            --     global layer index (``geometry.layer_offsets``); tracks: the -1
                                            layer they are extrapolated to
``cell_id``         int32            --     flat cell index (``geometry.cells``); -1 for track points     -1
``energy``          float32 (f64)    GeV    cells: measured cell energy; track points: 0 by convention   (req.)
                                            (the track momentum is ``track_pt``)
``noise_sigma``     float32          GeV    electronic noise of the cell; 0 for tracks                   0
``delta_r``         float32          --     sqrt(d_eta^2 + d_phi^2) to the focal track at the point's    0
                                            layer; 0 when the cloud is not a per-track cloud
``track_pt``        float32          GeV    transverse momentum of the point's track; 0 for cells        0
``track_chi2_ndf``  float32          --     chi^2 / ndf of the point's track fit; 0 for cells            0
``track_index``     int32            --     index of the track in the event; -1 for cells                -1
``truth_index``     var * int32      --     truth particles that deposited energy in the point (indices  []
                                            into ``particles``; 0 = the incident particle of a
                                            single-particle shower), sorted ascending, unique
``truth_energy``    var * float32    GeV    energy deposited by each of those particles (may be 0 or     []
                                            negative, see *Label policy*)
==================  ===============  =====  ===========================================================  =========

Per event
=========

=========================  ============  ====================================================================
field                      dtype         meaning
=========================  ============  ====================================================================
``event_number``           int64         unique event id; splits hash it (:mod:`pcloud.data.splits`)
truth keys of ShowerImages see :mod:`pcloud.core.showers` (``pdg`` int32, ``energy_gev``, ``theta_rad``, ``phi_rad``,
                                         ``entry_x_mm``..., ``window_eta``...: float64); carried when present
``particles`` (optional)   var * record  truth particles of multi-particle events: ``pdg`` int32,
                                         ``energy_gev`` f64, ``pt_gev`` f64, ``eta`` f64, ``phi`` f64 (rad),
                                         ``charge`` int32 (units of e), ``track_index`` int32 (-1: no track)
``focal_track_index`` opt. int32         per-track clouds: ``track_index`` of the focal track
``focal_truth_index`` opt. int32         per-track clouds: truth particle index of the focal track (the target
                                         of :func:`binary_labels` / :func:`target_fractions`)
=========================  ============  ====================================================================

The schema is open: extra per-event fields (top level) and extra per-point fields (inside ``points``) are kept
through conversion, storage and batching; only the fields above are required (per point: all of the table, which
:func:`build_clouds` fills with the defaults shown; per event: ``event_number`` and ``points``).

Label policy (truth for segmentation)
=====================================

Every derivation first clips the per-particle truth energy at 0: ``e_k = max(truth_energy_k, 0)``. Negative truth
energies (possible when the truth deposit has been calibrated or a noise estimate subtracted) never count *for* or
*against* a particle. Let ``E = sum_k e_k``.

* :func:`hard_labels`: the ``truth_index`` with the largest ``e_k`` (ties: the lowest truth index). When ``E == 0``
  (no truth list: noise-only cells, cells of files without per-cell truth, padding; or only zero / negative truth)
  the label is :data:`NO_PARTICLE` (-1), "no particle".
* :func:`soft_fractions`: ``e_k / E`` aligned with ``truth_index``; all zeros when ``E == 0`` (the cell is owned by
  nobody; the fractions then sum to 0, not 1).
* :func:`target_fractions`: the fraction ``e_t / E`` of one target particle per event (0 when ``E == 0`` or the
  target is absent from the cell).
* :func:`binary_labels`: 1 when ``target_fractions > threshold`` (strict), else 0; so noise-only cells are 0.
"""
from __future__ import annotations

from enum import IntEnum

import awkward as ak
import numpy as np
from awkward.contents import ListOffsetArray, NumpyArray, RecordArray
from awkward.index import Index64

#: Bumped whenever a required field, dtype or meaning changes; the native store refuses other versions.
SCHEMA_VERSION = 1

#: Label of cells owned by no truth particle (see the module docstring).
NO_PARTICLE = -1


class PointType(IntEnum):
    CELL = 0
    FOCAL_TRACK = 1
    OTHER_TRACK = 2
    PADDING = 3


#: Per-point scalar fields: name -> (dtype, default, unit).
POINT_FIELDS: dict[str, tuple[type, float, str]] = {
    "type": (np.int8, int(PointType.CELL), ""),
    "x": (np.float32, 0.0, "mm"),
    "y": (np.float32, 0.0, "mm"),
    "z": (np.float32, 0.0, "mm"),
    "eta": (np.float32, 0.0, ""),
    "phi": (np.float32, 0.0, "rad"),
    "layer": (np.int32, -1, ""),
    "cell_id": (np.int32, -1, ""),
    "energy": (np.float32, 0.0, "GeV"),
    "noise_sigma": (np.float32, 0.0, "GeV"),
    "delta_r": (np.float32, 0.0, ""),
    "track_pt": (np.float32, 0.0, "GeV"),
    "track_chi2_ndf": (np.float32, 0.0, ""),
    "track_index": (np.int32, -1, ""),
}
#: Per-point list fields (one entry per truth particle in the point): name -> (dtype, unit).
POINT_LIST_FIELDS: dict[str, tuple[type, str]] = {"truth_index": (np.int32, ""), "truth_energy": (np.float32, "GeV")}

#: Per-event fields with a fixed dtype (others are carried with their own dtype).
EVENT_FIELDS: dict[str, type] = {
    "event_number": np.int64, "pdg": np.int32, "energy_gev": np.float64, "theta_rad": np.float64,
    "phi_rad": np.float64, "entry_x_mm": np.float64, "entry_y_mm": np.float64, "entry_z_mm": np.float64,
    "window_eta": np.float64, "photon1_energy_gev": np.float64, "photon2_energy_gev": np.float64,
    "opening_angle_rad": np.float64, "deposited_gev": np.float64, "focal_track_index": np.int32,
    "focal_truth_index": np.int32,
}
#: Fields of the optional per-event ``particles`` list: name -> (dtype, unit).
PARTICLE_FIELDS: dict[str, tuple[type, str]] = {
    "pdg": (np.int32, ""), "energy_gev": (np.float64, "GeV"), "pt_gev": (np.float64, "GeV"),
    "eta": (np.float64, ""), "phi": (np.float64, "rad"), "charge": (np.int32, "e"), "track_index": (np.int32, ""),
}
REQUIRED_EVENT_FIELDS = ("event_number", "points")
REQUIRED_POINT_FIELDS = tuple(POINT_FIELDS) + tuple(POINT_LIST_FIELDS)

#: Units written into the native store's metadata.
UNITS = {"energy": "GeV", "length": "mm", "angle": "rad", "x": "mm", "y": "mm", "z": "mm", "noise_sigma": "GeV",
         "track_pt": "GeV", "truth_energy": "GeV", "phi": "rad"}


class SchemaError(ValueError):
    """A cloud array does not follow the schema (missing field, wrong dtype or nesting)."""


# ---------------------------------------------------------------------------------------------------- building
def _offsets(counts: np.ndarray, what: str) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and (counts.min() < 0)):
        raise SchemaError(f"{what}: counts must be a 1-d array of non-negative integers, found {counts!r:.80}")
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _flat(values, n: int, dtype, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim == 0:
        if a == 0:
            return np.zeros(n, dtype=dtype)  # zeroed pages come lazily from the OS: cheaper than np.full
        return np.full(n, a, dtype=dtype)
    if a.shape != (n,):
        raise SchemaError(f"field {name!r}: expected {n} values, found shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _energy_dtype(values):
    """Energies are stored as float32 unless given as float64 (kept for bit-exact float64 work)."""
    return np.float64 if getattr(values, "dtype", None) == np.float64 else np.float32


def build_clouds(counts, points: dict, events: dict, truth_counts=None, truth_index=None, truth_energy=None,
                 particles=None) -> ak.Array:
    """Assemble a cloud array from flat numpy columns (zero-copy where the dtypes already match; no loops).

    counts: points per event (length N). points: per-point columns of length ``sum(counts)``, in event order; the
    fields of :data:`POINT_FIELDS` that are missing get their defaults, extra fields are kept. Columns are cast to
    the schema dtypes, except that float64 ``energy`` / ``truth_energy`` arrays stay float64 (float32 otherwise).
    truth_counts / truth_index / truth_energy: the per-point truth lists, flat (``truth_counts`` per point);
    omitted: empty lists.
    events: per-event columns of length N (``event_number`` defaults to ``arange(N)``). particles: optional
    ``var * record`` of length N (an awkward array) or a dict of flat particle columns with a ``counts`` entry.
    """
    offsets = _offsets(counts, "build_clouds")
    n_events, n_points = offsets.size - 1, int(offsets[-1])
    if "energy" not in points:
        raise SchemaError("build_clouds: points must contain 'energy' (GeV)")
    cols, names = [], []
    for name, (dtype, default, _) in POINT_FIELDS.items():
        names.append(name)
        if name == "energy":
            dtype = _energy_dtype(points[name])
        cols.append(NumpyArray(_flat(points.get(name, default), n_points, dtype, name)))
    if truth_counts is None:
        if truth_index is not None or truth_energy is not None:
            raise SchemaError("build_clouds: truth_index/truth_energy given without truth_counts")
        toff = np.zeros(n_points + 1, dtype=np.int64)
        tidx, ten = np.zeros(0, np.int32), np.zeros(0, np.float32)
    else:
        toff = _offsets(truth_counts, "build_clouds truth_counts")
        if toff.size != n_points + 1:
            raise SchemaError(f"build_clouds: truth_counts has {toff.size - 1} entries, expected {n_points} points")
        tidx = _flat(truth_index, int(toff[-1]), np.int32, "truth_index")
        ten = _flat(truth_energy, int(toff[-1]), _energy_dtype(truth_energy), "truth_energy")
    names += ["truth_index", "truth_energy"]
    cols += [ListOffsetArray(Index64(toff), NumpyArray(tidx)), ListOffsetArray(Index64(toff), NumpyArray(ten))]
    for name, v in points.items():
        if name not in POINT_FIELDS:
            names.append(name)
            cols.append(NumpyArray(_flat(v, n_points, np.asarray(v).dtype, name)))
    point_rec = RecordArray(cols, names, length=n_points)

    ev_names, ev_cols = ["event_number"], [NumpyArray(_flat(events.get("event_number", np.arange(n_events)),
                                                             n_events, np.int64, "event_number"))]
    for name, v in events.items():
        if name in ("event_number", "points", "particles"):
            continue
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[0] == n_events:  # fixed-size per-event vectors (e.g. CaloGAN overflow per layer)
            if not np.issubdtype(v.dtype, np.number):
                raise SchemaError(f"build_clouds: per-event field {name!r} must be numeric, found {v.dtype}")
            ev_names.append(name)
            ev_cols.append(NumpyArray(np.ascontiguousarray(v)))
            continue
        if v.ndim != 1:
            raise SchemaError(f"build_clouds: per-event field {name!r} must be 1-d or (N, k), found shape {v.shape}")
        ev_names.append(name)
        ev_cols.append(NumpyArray(_flat(v, n_events, EVENT_FIELDS.get(name, v.dtype), name)))
    ev_names.append("points")
    ev_cols.append(ListOffsetArray(Index64(offsets), point_rec))
    if particles is not None:
        ev_names.append("particles")
        ev_cols.append(make_particles(particles, n_events).layout)
    return ak.Array(RecordArray(ev_cols, ev_names, length=n_events))


def make_particles(particles, n_events: int) -> ak.Array:
    """Normalise a per-event truth-particle list to ``var * {PARTICLE_FIELDS}`` (missing fields: -1 / 0 / NaN)."""
    if isinstance(particles, ak.Array):
        if len(particles) != n_events:
            raise SchemaError(f"particles: expected {n_events} events, found {len(particles)}")
        counts = ak.to_numpy(ak.num(particles, axis=1))
        flat = {f: ak.to_numpy(ak.flatten(particles[f], axis=1)) for f in ak.fields(particles)}
    elif isinstance(particles, dict):
        if "counts" not in particles:
            raise SchemaError("particles: a dict of flat columns needs a 'counts' entry (particles per event)")
        counts = np.asarray(particles["counts"])
        flat = {k: v for k, v in particles.items() if k != "counts"}
    else:
        raise SchemaError(f"particles: expected an awkward array or a dict, found {type(particles).__name__}")
    off = _offsets(counts, "particles")
    if off.size != n_events + 1:
        raise SchemaError(f"particles: counts has {off.size - 1} entries, expected {n_events} events")
    n = int(off[-1])
    defaults = {"pdg": 0, "track_index": -1, "charge": 0}
    names, cols = [], []
    for name, (dtype, _) in PARTICLE_FIELDS.items():
        names.append(name)
        cols.append(NumpyArray(_flat(flat.get(name, defaults.get(name, np.nan)), n, dtype, f"particles.{name}")))
    for name, v in flat.items():
        if name not in PARTICLE_FIELDS:
            names.append(name)
            cols.append(NumpyArray(_flat(v, n, np.asarray(v).dtype, f"particles.{name}")))
    return ak.Array(ListOffsetArray(Index64(off), RecordArray(cols, names, length=n)))


# ---------------------------------------------------------------------------------------------------- checking
def validate_clouds(clouds, where: str = "clouds", point_fields=None) -> ak.Array:
    """Check that ``clouds`` follows the schema; returns it as an awkward array. Raises :class:`SchemaError`
    naming ``where``, the field, what was expected and what was found. ``point_fields``: the per-point fields the
    caller needs (default: all of the schema's), for clouds read with only some columns of a store
    (:func:`pcloud.io.native.iter_clouds` ``columns``)."""
    if not isinstance(clouds, ak.Array):
        raise SchemaError(f"{where}: expected an awkward Array of events, found {type(clouds).__name__}")
    fields = ak.fields(clouds)
    missing = [f for f in REQUIRED_EVENT_FIELDS if f not in fields]
    if missing:
        raise SchemaError(f"{where}: missing per-event field(s) {missing}; found {fields}")
    pfields = ak.fields(clouds.points)
    missing = [f for f in (REQUIRED_POINT_FIELDS if point_fields is None else point_fields) if f not in pfields]
    if missing:
        raise SchemaError(f"{where}: missing per-point field(s) {missing} in 'points'; found {pfields}")
    if clouds.points.ndim != 2:
        raise SchemaError(f"{where}: 'points' must be var * record (one list per event), found {clouds.points.type}")
    return clouds


def n_points(clouds) -> np.ndarray:
    """Number of points per event (int64 numpy)."""
    return ak.to_numpy(ak.num(clouds.points, axis=1)).astype(np.int64)


def event_fields(clouds) -> list[str]:
    """Per-event scalar fields (everything at the top level except ``points`` and nested lists)."""
    out = []
    for f in ak.fields(clouds):
        if f in ("points", "particles"):
            continue
        if clouds[f].ndim == 1 and not ak.fields(clouds[f]):
            out.append(f)
    return out


# ---------------------------------------------------------------------------------------------------- labels
def _clipped_truth(points):
    te = points.truth_energy
    return ak.where(te > 0, te, 0.0)


def hard_labels(points) -> ak.Array:
    """Per point: the truth index that deposited most (clipped) energy; :data:`NO_PARTICLE` when none is positive.

    ``points`` is ``clouds.points`` (any nesting depth of lists of points). Ties go to the first entry of the
    point's truth list, i.e. the lowest truth index.
    """
    e = _clipped_truth(points)
    best = ak.argmax(e, axis=-1, keepdims=True)
    label = ak.firsts(points.truth_index[best], axis=-1)
    positive = ak.sum(e, axis=-1) > 0
    return ak.values_astype(ak.where(positive, ak.fill_none(label, NO_PARTICLE), NO_PARTICLE), np.int64)


def soft_fractions(points) -> ak.Array:
    """Per point and truth entry: ``max(e_k, 0) / sum_k max(e_k, 0)``; zeros for points without positive truth."""
    e = _clipped_truth(points)
    total = ak.sum(e, axis=-1)
    safe = ak.where(total > 0, total, 1.0)
    return e / safe


def _per_event_target(points, target_index) -> ak.Array:
    t = np.asarray(target_index)
    if t.ndim == 0:
        return ak.Array(np.full(len(points), int(t), dtype=np.int64))
    if t.shape != (len(points),):
        raise ValueError(f"target_index: expected a scalar or {len(points)} per-event values, found shape {t.shape}")
    return ak.Array(t.astype(np.int64))


def target_fractions(points, target_index) -> ak.Array:
    """Per point: fraction of the (clipped) truth energy deposited by the event's target particle.

    ``target_index`` is one truth index (scalar) or one per event (e.g. ``clouds.focal_truth_index``).
    """
    frac = soft_fractions(points)
    t = _per_event_target(points, target_index)
    is_t = points.truth_index == t
    return ak.values_astype(ak.sum(ak.where(is_t, frac, 0.0), axis=-1), np.float32)


def binary_labels(points, target_index, threshold: float = 0.5) -> ak.Array:
    """Per point: 1 when the target particle's energy fraction is strictly above ``threshold``, else 0."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"binary_labels: threshold must be in [0, 1), found {threshold}")
    return ak.values_astype(target_fractions(points, target_index) > threshold, np.int64)
