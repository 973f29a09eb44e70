"""Format errors and the input checks that raise them.

Every reader in :mod:`pcloud.io` reports bad input with :class:`FormatError`, whose message always names the file,
the key/field, what was expected and what was found::

    FormatError: /data/gamma.h5: dataset 'layer_1': expected shape (N, 12, 12), found (1000, 12, 11)

The helpers below (open an HDF5 file, fetch and check a dataset, check values, read an event range) are shared by
the CaloGAN, CaloChallenge and Triforce readers so that all of them treat bad input the same way.

Policy for values (all readers):

* NaN / inf in an image, an incident energy or a particle id: rejected (:class:`FormatError`).
* Incident energies must be > 0.
* Negative cell energies: real files can carry small negative values only from electronic noise (pedestal
  subtraction). Cells with ``E >= -tolerance`` are accepted and kept as they are (or set to 0 with
  ``clip_negative=True``); the number of negative cells is reported in ``meta["n_negative_cells"]``. Any cell below
  ``-tolerance`` is rejected. The tolerance of a section is ``max(negative_tolerance_gev, 5 * noise_sigma_gev)``
  (a 5 sigma noise fluctuation; default ``negative_tolerance_gev = 1e-3`` GeV = 1 MeV).
* Files with 0 events are rejected unless the reader is called with ``allow_empty=True``.
* Values that are legal but implausible for the format (e.g. Triforce cells far from calibrated GeV) are read, with
  a line in ``meta["notes"]`` and an :class:`EnergyScaleWarning`; they are not errors.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: Default tolerance (GeV) for negative cell energies, see the module docstring.
NEGATIVE_TOLERANCE_GEV = 1e-3
#: First bytes of an HDF5 file (HDF5 file format specification, "Format Signature").
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class FormatError(ValueError):
    """A file does not have the layout or content its format requires.

    ``FormatError(path, field, expected, found)`` formats ``"{path}: {field}: expected {expected}, found {found}"``;
    the parts are also kept as attributes ``path``, ``field``, ``expected``, ``found`` for programmatic use.
    """

    def __init__(self, path, field: str, expected: str, found: str, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        msg = f"{self.path or '<in memory>'}: {field}: expected {expected}, found {found}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __reduce__(self):  # keep picklable (multiprocessing data loaders)
        return (FormatError, (self.path, self.field, self.expected, self.found, self.hint))


class EnergyScaleWarning(UserWarning):
    """A file was read, but its energies are not on the scale its format's own tools assume (see the reader's
    ``meta["notes"]``)."""


# ----------------------------------------------------------------------------------------------- HDF5 helpers
def _first_bytes(path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def file_head(path, expected: str, n: int = 8) -> bytes:
    """First ``n`` bytes of an input file, after the checks every reader shares: the path exists
    (FileNotFoundError), is not a directory and is not empty (:class:`FormatError` naming ``expected``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(path, "file", expected, "a directory")
    head = _first_bytes(path, n)
    if not head:
        raise FormatError(path, "file", expected, "an empty file (0 bytes)")
    return head


@contextmanager
def open_hdf5(path):
    """Open an HDF5 file read-only; non-HDF5, empty, truncated or corrupt files raise :class:`FormatError`.

    h5py's ``OSError`` (e.g. "truncated file: eof = ...") at open, and its ``OSError`` / ``KeyError`` /
    ``RuntimeError`` from corrupt objects inside the ``with`` block, become a FormatError naming the file.
    """
    import h5py

    path = Path(path)
    head = file_head(path, "an HDF5 file")
    size = path.stat().st_size
    if not head.startswith(HDF5_SIGNATURE) and not h5py.is_hdf5(str(path)):
        raise FormatError(path, "file signature", f"HDF5 signature {HDF5_SIGNATURE!r}", f"{head[:8]!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise FormatError(path, "file", "a readable HDF5 file",
                          f"an unreadable or truncated file of {size} bytes ({err})") from None
    try:
        yield f
    except (OSError, KeyError, RuntimeError) as err:
        # h5py reports corrupt object headers / data as OSError, KeyError or RuntimeError
        raise FormatError(path, "file", "a consistent HDF5 file",
                          f"corrupt content ({type(err).__name__}: {err})") from None
    finally:
        f.close()


def get_dataset(f, key: str, path=None, required: bool = True):
    """Dataset ``key`` of an open HDF5 file; missing (or a group) -> FormatError listing the keys found."""
    import h5py

    path = path or f.filename
    if key not in f:
        if not required:
            return None
        raise FormatError(path, f"dataset {key!r}", f"a dataset named {key!r}",
                          f"keys {sorted(f.keys())}")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise FormatError(path, f"dataset {key!r}", "an HDF5 dataset", f"a {type(obj).__name__}")
    return obj


def check_shape(ds, expected: tuple, path=None, alternatives: tuple = ()) -> int:
    """Check a dataset's shape against ``expected`` (``None`` = any size, first axis = events) or alternatives.

    Returns the number of events (first axis).
    """
    shapes = (expected, *alternatives)
    for shp in shapes:
        if len(ds.shape) == len(shp) and all(e is None or e == s for e, s in zip(shp, ds.shape)):
            return int(ds.shape[0])
    want = " or ".join("(" + ", ".join("N" if e is None else str(e) for e in s) + ("," if len(s) == 1 else "")
                       + ")" for s in shapes)
    raise FormatError(path or ds.file.filename, f"dataset {ds.name.lstrip('/')!r}", f"shape {want}",
                      f"{ds.shape}")


def check_dtype(ds, kinds: str = "f", path=None, what: str = "a floating-point dtype"):
    """Check ``ds.dtype.kind`` is one of ``kinds`` (numpy kind letters: f float, i/u integer)."""
    if ds.dtype.kind not in kinds:
        raise FormatError(path or ds.file.filename, f"dataset {ds.name.lstrip('/')!r}", what, f"dtype {ds.dtype}")


def read_range(ds, start: int, stop: int, path=None) -> np.ndarray:
    """``ds[start:stop]`` with HDF5 read errors (truncated or corrupt data) as FormatError."""
    try:
        return ds[start:stop]
    except (OSError, RuntimeError, ValueError) as err:
        raise FormatError(path or ds.file.filename, f"dataset {ds.name.lstrip('/')!r}",
                          f"readable data for events [{start}, {stop})", f"a read error ({err})") from None


def event_range(n_events: int, start: int | None, stop: int | None, path, allow_empty: bool) -> tuple[int, int]:
    """Event range of a read, with Python slice semantics for non-negative bounds.

    ``start``/``stop`` are clipped to the file (``[n, n + k)`` reads 0 events, so a caller may loop
    ``start += chunk`` until a read comes back empty). A file with 0 events is a FormatError unless
    ``allow_empty``; negative bounds are a ValueError.
    """
    if n_events == 0 and not allow_empty:
        raise FormatError(path, "number of events", "at least one event", "0 events",
                          hint="pass allow_empty=True to accept empty files")
    start = 0 if start is None else int(start)
    stop = n_events if stop is None else int(stop)
    if start < 0 or stop < 0:
        raise ValueError(f"{path}: event range [{start}, {stop}) must be non-negative (the file has {n_events} "
                         f"events)")
    start = min(start, n_events)
    stop = max(start, min(stop, n_events))
    return start, stop


def check_finite(a: np.ndarray, path, field: str, offset: int = 0):
    """Reject NaN / inf, naming the first bad event (index in the file)."""
    bad = ~np.isfinite(a)
    if bad.any():
        flat = bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim > 1 else bad
        first = int(np.argmax(flat)) + offset
        raise FormatError(path, field, "finite values", f"{int(bad.sum())} NaN/inf values (first in event {first})")


def check_positive(a: np.ndarray, path, field: str, offset: int = 0):
    """Incident energies: finite and > 0."""
    check_finite(a, path, field, offset)
    bad = a <= 0
    if bad.any():
        first = int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1))) + offset
        raise FormatError(path, field, "energies > 0", f"{int(bad.sum())} values <= 0 (first in event {first}, "
                          f"value {a.reshape(a.shape[0], -1)[first - offset].min()!r})")


def check_cells(a: np.ndarray, path, field: str, tolerance: float, offset: int = 0, unit: str = "GeV",
                clip_negative: bool = False) -> tuple[np.ndarray, int]:
    """Apply the value policy of the module docstring to cell energies ``a`` (in ``unit``).

    Returns ``(array, n_negative)``; with ``clip_negative`` the negative cells are set to 0 (in place).
    """
    check_finite(a, path, field, offset)
    neg = a < 0
    n_neg = int(np.count_nonzero(neg))
    if n_neg:
        lo = float(a.min())
        if lo < -tolerance:
            first = int(np.argmax((a < -tolerance).reshape(a.shape[0], -1).any(axis=1))) + offset
            raise FormatError(path, field, f"cell energies >= -{tolerance:g} {unit} (noise tolerance)",
                              f"minimum {lo:g} {unit} (first in event {first})",
                              hint="raise negative_tolerance_gev if the file has large noise")
        if clip_negative:
            a[neg] = 0
    return a, n_neg


def safe_attr(value):
    """HDF5 attribute -> plain Python (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----------------------------------------------------------------------------------------------- pcloud extras
#: HDF5 group where pcloud writers keep the truth keys a public format has no dataset for (see each writer).
TRUTH_GROUP = "pcloud_truth"


def write_truth_group(f, truth: dict, skip=(), compression=None):
    """Write ``truth`` arrays (minus ``skip``) as datasets of group :data:`TRUTH_GROUP` of an open HDF5 file."""
    keys = [k for k in truth if k not in skip]
    if not keys:
        return []
    g = f.create_group(TRUTH_GROUP)
    g.attrs["description"] = ("per-event truth written by pcloud (pcloud.core.showers truth keys, units in the names); "
                              "not part of the public format, ignored by other readers")
    for k in keys:
        v = np.asarray(truth[k])
        if v.dtype.kind not in "biuf":
            raise TypeError(f"truth key {k!r}: only numeric arrays can be written, found dtype {v.dtype}")
        g.create_dataset(k, data=v, compression=compression if v.ndim and v.size else None)
    return keys


def read_truth_group(f, n_events: int, start: int, stop: int, path) -> dict:
    """Read the :data:`TRUTH_GROUP` datasets for events ``[start, stop)``; lengths must match the file."""
    import h5py

    out = {}
    g = f.get(TRUTH_GROUP)
    if g is None or not isinstance(g, h5py.Group):
        return out
    for k, ds in g.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if ds.ndim == 0 or ds.shape[0] != n_events:
            raise FormatError(path, f"dataset '{TRUTH_GROUP}/{k}'", f"{n_events} entries (one per event)",
                              f"shape {ds.shape}")
        if ds.dtype.kind not in "biuf":
            raise FormatError(path, f"dataset '{TRUTH_GROUP}/{k}'", "numbers (per-event truth)", f"dtype {ds.dtype}")
        out[k] = read_range(ds, start, stop, path)
    return out


def iter_event_chunks(read, path, n_events: int, chunk_size: int, start=None, stop=None, **kwargs):
    """Yield ``read(path, a, b, **kwargs)`` for consecutive event ranges of at most ``chunk_size`` events within
    ``[start, stop)`` of a file holding ``n_events`` (the shared body of the readers' ``iter_*`` functions)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    start, stop = event_range(n_events, start, stop, path, kwargs.get("allow_empty", False))
    for a in range(start, stop, chunk_size):
        yield read(path, a, min(a + chunk_size, stop), **kwargs)
