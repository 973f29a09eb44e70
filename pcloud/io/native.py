"""The native store of pcloud: cloud arrays (:mod:`pcloud.core.schema`) in a chunked Parquet file.

Layout: one Parquet file written through pyarrow from awkward arrays (``ak.to_arrow_table`` with plain Arrow types,
so that pyarrow can prune nested columns on read). Every chunk handed to :func:`write_clouds` becomes one or more row
groups of at most ``row_group_events`` events, so writing and reading stream chunk by chunk and never need the whole
data set in memory. The file's key-value metadata holds, under the key ``pcloud``, a JSON object:

================  ==========================================================================================
key               meaning
================  ==========================================================================================
``format``        ``"pcloud-native"``
``schema_version`` :data:`pcloud.core.schema.SCHEMA_VERSION` at write time; other versions are refused
``geometry``      :func:`geometry_meta`: ``{"name": ..., "kwargs": {...}}`` (the arguments of
                  :func:`pcloud.geometry.get_geometry`), plus ``binning_xml`` (the binning XML text) for
                  geometries built from a CaloChallenge binning; :func:`geometry_from_meta` rebuilds it
``units``         units of the point fields (:data:`pcloud.core.schema.UNITS`)
``threshold_gev`` the cell threshold used by the conversion (``None``: all non-zero cells)
``generator``     free-form generator / reader settings (dict)
``seed``          random seed of the generation (or ``None``)
``n_events``      number of events (written when the file is closed; also ``num_rows`` of the Parquet footer)
================  ==========================================================================================

Any other meta keys given by the writer are kept. Writes are atomic (:func:`pcloud.core.atomic.atomic_output`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import awkward as ak
import numpy as np

from ..core.schema import REQUIRED_EVENT_FIELDS, REQUIRED_POINT_FIELDS, SCHEMA_VERSION, UNITS, validate_clouds
from ..core.atomic import atomic_output
from ..geometry import Geometry, check_geometry_arguments, get_geometry
from .calochallenge import binning_from_geometry, parse_binning
from .errors import FormatError, file_head

META_KEY = b"pcloud"
FORMAT_NAME = "pcloud-native"
PARQUET_MAGIC = b"PAR1"
DEFAULT_ROW_GROUP_EVENTS = 4096


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"meta value of type {type(o).__name__} is not JSON serialisable")


def geometry_meta(geometry: Geometry) -> dict:
    """The store's description of a geometry: ``{"name", "kwargs"}`` for the named geometries of
    :func:`pcloud.geometry.get_geometry`, plus ``binning_xml`` for CaloChallenge binnings (the geometry is defined
    by the XML there). :func:`geometry_from_meta` is the inverse."""
    out = {"name": geometry.name, "kwargs": dict(geometry.info.get("builder_kwargs", {}))}
    if "calochallenge" in geometry.info:
        out["binning_xml"] = binning_from_geometry(geometry).to_xml()
    return out


def geometry_from_meta(meta, path=None) -> Geometry:
    """Rebuild the geometry described by a store's ``meta["geometry"]`` (or by that dict itself)."""
    g = meta.get("geometry", meta) if isinstance(meta, dict) else meta
    if not isinstance(g, dict) or "name" not in g:
        raise FormatError(path, "metadata 'geometry'", "an object with a 'name' (and 'kwargs' or 'binning_xml')",
                          f"{type(g).__name__} {str(g)[:80]!r}")
    if g.get("binning_xml"):
        if not isinstance(g["binning_xml"], str):
            raise FormatError(path, "metadata 'geometry.binning_xml'", "the binning XML text",
                              type(g["binning_xml"]).__name__)
        return parse_binning(g["binning_xml"]).geometry  # voxel count bounded before anything is built
    kwargs = g.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not isinstance(g["name"], str):
        raise FormatError(path, "metadata 'geometry'", "a geometry name and an object of its arguments",
                          f"name {g['name']!r}, kwargs {str(kwargs)[:80]!r}")
    try:
        check_geometry_arguments(g["name"], kwargs)
    except ValueError as err:
        raise FormatError(path, "metadata 'geometry'", "a known geometry with allowed arguments", str(err)) from None
    return get_geometry(g["name"], **kwargs)


def _normalise_meta(meta: dict | None, first_chunk: ak.Array, path) -> dict:
    meta = dict(meta or {})
    params = ak.parameters(first_chunk)
    g = meta.get("geometry", params.get("pcloud_geometry"))
    if g is None:
        raise ValueError("write_clouds: meta must name the geometry, e.g. {'geometry': 'calogan'} or "
                         "{'geometry': {'name': 'calogan', 'kwargs': {...}}}")
    if isinstance(g, str):
        g = {"name": g, "kwargs": dict(params.get("pcloud_geometry_kwargs") or {})
             if g == params.get("pcloud_geometry") else {}}
    elif isinstance(g, Geometry):
        g = geometry_meta(g)
    elif isinstance(g, dict) and "name" in g:
        g = {**g, "name": g["name"], "kwargs": dict(g.get("kwargs") or {})}  # extra keys (e.g. "xml") kept
    else:
        raise ValueError(f"write_clouds: meta['geometry'] must be a name, a Geometry or a dict with 'name', "
                         f"found {g!r}")
    meta["geometry"] = g
    tagged = params.get("pcloud_geometry")
    if tagged is not None and tagged != g["name"]:
        raise ValueError(f"write_clouds({path}): meta names geometry {g['name']!r} but the clouds were made on "
                         f"{tagged!r}")
    meta.setdefault("threshold_gev", params.get("pcloud_threshold_gev"))
    meta.setdefault("generator", {})
    meta.setdefault("seed", None)
    meta["units"] = {**UNITS, **meta.get("units", {})}
    meta["format"] = FORMAT_NAME
    meta["schema_version"] = SCHEMA_VERSION
    try:
        json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"write_clouds({path}): meta must be JSON serialisable: {err}") from None
    return meta


def _chunks_of(clouds_or_chunks) -> Iterator[ak.Array]:
    if isinstance(clouds_or_chunks, ak.Array):
        yield clouds_or_chunks
    else:
        yield from clouds_or_chunks


class _Aborted(Exception):
    """Handed to the temporary file's context by :meth:`CloudWriter.abort` so that it removes the file."""


class CloudWriter:
    """Incremental writer of one native file: :meth:`write` cloud chunks as they come, then :meth:`close`. Used as a
    context manager the file appears at ``path`` only when the block ends without an exception (the temporary is
    removed otherwise), so several stores can be filled in one pass over their input.

    ``meta`` as :func:`write_clouds`; each chunk becomes row groups of at most ``row_group_events`` events, or, with
    ``full_row_groups``, chunks are buffered so that every row group but the last holds exactly
    ``row_group_events`` (for producers of many small chunks)."""

    def __init__(self, path, meta: dict | None = None, row_group_events: int = DEFAULT_ROW_GROUP_EVENTS,
                 compression: str = "zstd", full_row_groups: bool = False):
        if row_group_events <= 0:
            raise ValueError(f"write_clouds: row_group_events must be positive, found {row_group_events}")
        self.path, self.meta, self.row_group_events = Path(path), meta, int(row_group_events)
        self.compression, self.full_row_groups = compression, bool(full_row_groups)
        self.n_events, self.final = 0, None
        self._writer, self._schema, self._n_chunks, self._pending, self._closed = None, None, 0, [], False
        self._failed = None
        self._output = atomic_output(self.path, suffix=".parquet.tmp")
        self._tmp = self._output.__enter__()

    def __enter__(self) -> CloudWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            if not self._closed:
                self.close()
            return False
        self._abort(exc_type, exc, tb)
        return False

    def write(self, chunk: ak.Array) -> None:
        """Append one chunk of clouds (validated; every chunk must have the first one's fields and dtypes). After a
        failed write the writer only aborts: :meth:`close` refuses to publish a file missing a chunk."""
        if self._closed:
            raise ValueError(f"write_clouds({self.path}): the writer is closed")
        if self._failed is not None:
            raise ValueError(f"write_clouds({self.path}): an earlier chunk failed ({self._failed}); abort")
        try:
            self._write(chunk)
        except BaseException as err:
            self._failed = f"{type(err).__name__}: {err}".splitlines()[0]
            raise

    def _write(self, chunk: ak.Array) -> None:
        ci = self._n_chunks
        self._n_chunks += 1
        validate_clouds(chunk, f"write_clouds({self.path}): chunk {ci}")
        if ci == 0:
            self.final = _normalise_meta(self.meta, chunk, self.path)
        if not self.full_row_groups:
            self._write_groups(chunk, ci)
            return
        self._check_schema(ak.to_arrow_table(chunk[:0], extensionarray=False).schema, ci)  # now, not after merging
        self._pending.append(chunk)
        if sum(len(c) for c in self._pending) >= self.row_group_events:
            whole = self._pending[0] if len(self._pending) == 1 else ak.concatenate(self._pending)
            n_full = len(whole) // self.row_group_events * self.row_group_events
            self._write_groups(whole[:n_full], ci)
            # packed: a view of the remainder would keep every earlier buffer alive through the next concatenation
            # (measured: 1.8 GB instead of 0.6 GB writing the cloud stores of 10 000 particle-flow events)
            self._pending = [ak.to_packed(whole[n_full:])] if n_full < len(whole) else []

    def _check_schema(self, schema, ci: int) -> None:
        """The first chunk's Arrow schema is the file's; every later chunk must have the same."""
        if self._schema is None:
            self._schema = schema
        elif not schema.equals(self._schema, check_metadata=False):
            raise ValueError(f"write_clouds({self.path}): chunk {ci} has schema\n{schema}\nbut the first chunk "
                             f"had\n{self._schema}\n(all chunks need the same fields and dtypes)")

    def _write_groups(self, chunk: ak.Array, ci: int) -> None:
        import pyarrow.parquet as pq

        for start in range(0, len(chunk), self.row_group_events):
            part = chunk[start:start + self.row_group_events]
            table = ak.to_arrow_table(part, extensionarray=False)
            self._check_schema(table.schema, ci)
            if self._writer is None:
                # no dictionary encoding: float point columns gain nothing from it and it halves the write speed
                # (measured 4.4e5 -> 9.1e5 CaloGAN showers/min, file size within 5%)
                self._writer = pq.ParquetWriter(self._tmp, self._schema, compression=self.compression,
                                                use_dictionary=False, write_page_checksum=True)
            self._writer.write_table(table, row_group_size=len(part))
            self.n_events += len(part)

    def close(self, meta_at_close=None) -> dict:
        """Write the buffered clouds and the metadata (``meta_at_close``: a callable returning extra keys known
        only now), and move the file into place; returns the metadata written (with ``n_events``)."""
        if self._closed:
            raise ValueError(f"write_clouds({self.path}): the writer is already closed")
        if self._failed is not None:
            err = ValueError(f"write_clouds({self.path}): not written, a chunk failed ({self._failed})")
            self._abort(ValueError, err, None)
            raise err
        self._closed = True
        try:
            pending, self._pending = self._pending, []
            if pending:  # the buffered rest as one last (short) row group
                self._write_groups(pending[0] if len(pending) == 1 else ak.concatenate(pending), self._n_chunks - 1)
            if self.final is None or self.n_events == 0:
                raise ValueError(f"write_clouds({self.path}): nothing to write (no chunks or only empty chunks)")
            self.final["n_events"] = self.n_events
            if meta_at_close is not None:
                self.final.update(meta_at_close())
            writer, self._writer = self._writer, None
            writer.add_key_value_metadata({META_KEY.decode(): json.dumps(self.final, default=_json_default)})
            writer.close()
        except BaseException as err:
            self._abort(type(err), err, err.__traceback__)
            raise
        output, self._output = self._output, None
        output.__exit__(None, None, None)  # fsync and move into place (the temporary is removed if this fails)
        return self.final

    def abort(self) -> None:
        """Drop what was written: no file appears at ``path`` (an earlier file there is left as it was). Refused
        after a successful :meth:`close` (the file is in place)."""
        if self._closed and self._output is None:
            raise ValueError(f"write_clouds({self.path}): already closed (the file is written); nothing to abort")
        err = _Aborted(f"write_clouds({self.path}): aborted")
        self._abort(_Aborted, err, None)

    def _abort(self, exc_type, exc, tb) -> None:
        """Close the Parquet writer and remove the temporary file, whatever fails on the way (the exception that
        caused the abort is the caller's to raise; a failure here is raised only when there is none)."""
        self._closed = True
        failure = None
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        except BaseException as err:  # e.g. a full disk while flushing: the temporary must go all the same
            failure = err
        finally:
            if self._output is not None:
                output, self._output = self._output, None
                try:
                    output.__exit__(exc_type, exc, tb)
                except BaseException as err:  # atomic_output re-raises the exception it was handed: expected
                    if err is not exc:
                        failure = failure or err
        if failure is not None and exc is None:
            raise failure


def write_clouds(path, clouds_or_chunks: ak.Array | Iterable[ak.Array], meta: dict | None = None,
                 row_group_events: int = DEFAULT_ROW_GROUP_EVENTS, compression: str = "zstd",
                 meta_at_close=None) -> dict:
    """Write a cloud array, or an iterable of cloud-array chunks (streamed one at a time), to ``path``.

    ``meta`` must name the geometry unless the clouds carry it (arrays made by :mod:`pcloud.data.convert` do; their
    threshold is taken too); see the module docstring for the stored keys. All chunks must have the same
    fields and dtypes. Returns the metadata written (with ``n_events``). The file appears only when complete.
    ``meta_at_close``: a callable returning extra metadata known only once every chunk was written (e.g. counts
    made while streaming); its keys are merged into the stored metadata. :class:`CloudWriter` writes the same
    files chunk by chunk (several at once).
    """
    with CloudWriter(path, meta, row_group_events, compression) as writer:
        for chunk in _chunks_of(clouds_or_chunks):
            writer.write(chunk)
        return writer.close(meta_at_close)


# ------------------------------------------------------------------------------------------------------ reading
def _open(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    head = file_head(path, "a Parquet file (pcloud native store)", 4)
    if head != PARQUET_MAGIC:
        raise FormatError(path, "file signature", f"Parquet magic {PARQUET_MAGIC!r} (pcloud native store)",
                          f"{head!r}", hint="convert other formats with the pcloud.io readers first")
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as err:
        raise FormatError(path, "file", "a readable Parquet file", f"an unreadable or truncated file ({err})") from None


def _meta_of(pf, path) -> dict:
    kv = pf.metadata.metadata or {}
    if META_KEY not in kv:
        raise FormatError(path, "metadata key 'pcloud'", "a pcloud native store written by write_clouds",
                          f"a Parquet file without pcloud metadata (keys {sorted(k.decode() for k in kv)})")
    try:
        meta = json.loads(kv[META_KEY])
    except ValueError as err:
        raise FormatError(path, "metadata key 'pcloud'", "a JSON object", f"unparsable text ({err})") from None
    if not isinstance(meta, dict):
        raise FormatError(path, "metadata key 'pcloud'", "a JSON object", type(meta).__name__)
    g = meta.get("geometry")
    if not (isinstance(g, dict) and isinstance(g.get("name"), str)):
        raise FormatError(path, "metadata 'geometry'", "an object with a geometry 'name'", f"{str(g)[:80]!r}")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FormatError(path, "schema_version", f"schema version {SCHEMA_VERSION}", f"version {version!r}",
                          hint="re-create the file with this version of pcloud")
    names = pf.schema_arrow.names
    missing = [f for f in REQUIRED_EVENT_FIELDS if f not in names]
    if not missing:
        ptype = pf.schema_arrow.field("points").type
        pfields = [ptype.value_type.field(i).name for i in range(ptype.value_type.num_fields)]
        missing = [f"points.{f}" for f in REQUIRED_POINT_FIELDS if f not in pfields]
    if missing:
        raise FormatError(path, "schema fields", f"the pcloud point-cloud fields (missing {missing})",
                          f"columns {names}")
    meta["n_events"] = pf.metadata.num_rows
    return meta


def read_meta(path) -> dict:
    """The store's metadata (see the module docstring); raises FormatError for non-pcloud files."""
    return _meta_of(_open(path), path)


def _leaf_columns(pf, columns, path) -> list[str] | None:
    """Parquet leaf paths for user columns such as ``"event_number"`` or ``"points.energy"``."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    leaves = [pf.schema.column(i).path for i in range(len(pf.schema))]
    stripped = [[p for p in leaf.split(".") if p not in ("list", "element", "item")] for leaf in leaves]
    out = []
    for c in columns:
        want = c.split(".")
        hit = [leaf for leaf, s in zip(leaves, stripped) if s[:len(want)] == want]
        if not hit:
            raise FormatError(path, f"column {c!r}", "a column of the store",
                              f"columns {sorted({'.'.join(s) for s in stripped})}")
        out += [h for h in hit if h not in out]
    return out


def _strip_options(layout):
    """Remove option types that column pruning introduces (no value is actually missing)."""
    from awkward.contents import ListOffsetArray, RecordArray

    if layout.is_option:
        return _strip_options(layout.project())
    if layout.is_indexed:
        return _strip_options(layout.project())
    if layout.is_list:
        lo = layout.to_ListOffsetArray64(False)
        return ListOffsetArray(lo.offsets, _strip_options(lo.content), parameters=lo.parameters)
    if layout.is_record:
        return RecordArray([_strip_options(c) for c in layout.contents], layout.fields, length=layout.length,
                           parameters=layout.parameters)
    return layout


#: value policy on read: point energies finite, >= -max(NEGATIVE_FLOOR_GEV, NOISE_SIGMAS x noise_sigma) (noise
#: fluctuations of noisy geometries are negative, a few sigma), and below MAX_POINT_ENERGY_GEV (1 PeV in one cell)
NEGATIVE_FLOOR_GEV = 1e-3
NOISE_SIGMAS = 10.0
MAX_POINT_ENERGY_GEV = 1e6


def _check_values(arr: ak.Array, path, first_event: int) -> None:
    """The value policy above on the energies of a chunk; a FormatError names the first bad event."""
    if "points" not in ak.fields(arr) or "energy" not in ak.fields(arr.points):
        return
    counts = ak.to_numpy(ak.num(arr.points, axis=1))
    e = ak.to_numpy(ak.flatten(arr.points.energy, axis=1)).astype(np.float64)
    sig = (ak.to_numpy(ak.flatten(arr.points.noise_sigma, axis=1)).astype(np.float64)
           if "noise_sigma" in ak.fields(arr.points) else np.zeros(e.size))
    floor = -np.maximum(NEGATIVE_FLOOR_GEV, NOISE_SIGMAS * np.nan_to_num(sig))
    bad = ~np.isfinite(e) | (e < floor) | (e > MAX_POINT_ENERGY_GEV)
    if bad.any():
        i = int(np.argmax(bad))
        ev = int(np.searchsorted(np.cumsum(counts), i, side="right")) + first_event
        what = ("non-finite" if not np.isfinite(e[i]) else f"{e[i]:g} GeV")
        raise FormatError(path, "points.energy", f"finite energies in [-max({NEGATIVE_FLOOR_GEV:g} GeV, "
                          f"{NOISE_SIGMAS:g} x noise_sigma), {MAX_POINT_ENERGY_GEV:g} GeV]",
                          f"{int(bad.sum())} bad value(s), first {what} in event {ev}")


def _to_clouds(table, meta) -> ak.Array:
    arr = ak.from_arrow(table)
    arr = ak.Array(_strip_options(arr.layout))
    arr = ak.with_parameter(arr, "pcloud_geometry", meta["geometry"]["name"])
    if meta["geometry"].get("kwargs"):
        arr = ak.with_parameter(arr, "pcloud_geometry_kwargs", meta["geometry"]["kwargs"])
    return ak.with_parameter(arr, "pcloud_threshold_gev", meta.get("threshold_gev"))


def _read_groups(pf, groups, leaf, path):
    import pyarrow as pa

    try:
        return pf.read_row_groups(groups, columns=leaf)
    except (pa.ArrowInvalid, OSError) as err:
        corrupt = "checksum" in str(err).lower() or "crc" in str(err).lower()
        raise FormatError(path, f"row group(s) {list(groups)[:3]}", "readable Parquet data with valid page checksums",
                          "corrupted data: a page checksum does not match (the file was altered or damaged)"
                          if corrupt else f"a read error ({str(err).splitlines()[0][:200]})") from None


def iter_clouds(path, chunk_size: int | None = None, columns=None, row_groups=None) -> Iterator[ak.Array]:
    """Yield the store's events as cloud-array chunks, reading one row group at a time.

    ``chunk_size=None`` yields one chunk per row group; an integer re-buffers to chunks of exactly that many events
    (the last may be shorter). ``columns`` selects fields (``"event_number"``, ``"points.energy"``...; nested
    columns are pruned at the Parquet level). ``row_groups``: the row groups to read, in this order (default all,
    in file order; a shuffled or sharded order streams a shuffled or partial view).
    """
    pf = _open(path)
    meta = _meta_of(pf, path)
    leaf = _leaf_columns(pf, columns, path)
    if chunk_size is not None and int(chunk_size) <= 0:
        raise ValueError(f"iter_clouds: chunk_size must be positive or None, found {chunk_size}")
    n_rg = pf.metadata.num_row_groups
    groups = range(n_rg) if row_groups is None else [int(g) for g in row_groups]
    bad = [g for g in groups if not 0 <= g < n_rg]
    if bad:
        raise ValueError(f"iter_clouds({path}): row groups {bad[:5]} out of range [0, {n_rg})")
    first = np.concatenate([[0], np.cumsum([pf.metadata.row_group(i).num_rows for i in range(n_rg)])])

    def groups_read():
        for rg in groups:
            arr = _to_clouds(_read_groups(pf, [rg], leaf, path), meta)
            _check_values(arr, path, int(first[rg]))
            yield arr

    yield from (groups_read() if chunk_size is None else rechunk(groups_read(), int(chunk_size)))


def rechunk(chunks: Iterable[ak.Array], size: int) -> Iterator[ak.Array]:
    """Cloud arrays of exactly ``size`` events (the last may be shorter) from chunks of any size, holding at most
    one output chunk plus one input chunk at a time."""
    buffer, n_buf = [], 0
    for arr in chunks:
        buffer.append(arr)
        n_buf += len(arr)
        while n_buf >= size:
            whole = buffer[0] if len(buffer) == 1 else ak.concatenate(buffer)
            yield whole[:size]
            rest = ak.to_packed(whole[size:])  # not a view holding the whole buffer (see CloudWriter.write)
            buffer, n_buf = ([rest], len(rest)) if len(rest) else ([], 0)
    if n_buf:
        yield buffer[0] if len(buffer) == 1 else ak.concatenate(buffer)


def read_clouds(path, start: int | None = None, stop: int | None = None, columns=None) -> ak.Array:
    """Events ``[start, stop)`` of the store (Python slice semantics for non-negative bounds), reading only the
    row groups that overlap the range."""
    pf = _open(path)
    meta = _meta_of(pf, path)
    n = pf.metadata.num_rows
    start = 0 if start is None else int(start)
    stop = n if stop is None else min(int(stop), n)
    if start < 0 or stop < 0 or start > stop:
        raise ValueError(f"{path}: event range [{start}, {stop}) is invalid; the store has {n} events")
    leaf = _leaf_columns(pf, columns, path)
    sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)], np.int64)
    first = np.concatenate([[0], np.cumsum(sizes)])
    groups = [i for i in range(sizes.size) if first[i] < stop and first[i + 1] > start]
    if not groups:
        groups = [0]
    arr = _to_clouds(_read_groups(pf, groups, leaf, path), meta)
    off = int(first[groups[0]])
    arr = arr[start - off:stop - off]
    _check_values(arr, path, start)
    return arr


class NativeStore:
    """A native store opened for streaming: ``meta``, ``n_events``, ``geometry()`` and ``chunks()``.

    The chunk-source interface of :class:`pcloud.data.batch.CloudDataset`: the file is opened (and its metadata
    checked) once here; every ``chunks()`` call streams it again row group by row group.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.n_events = int(self.meta["n_events"])

    def __len__(self) -> int:
        return self.n_events

    def geometry(self) -> Geometry:
        return geometry_from_meta(self.meta, self.path)

    @property
    def n_row_groups(self) -> int:
        """Row groups of the file (the units in which it is streamed, sharded and shuffled)."""
        return int(_open(self.path).metadata.num_row_groups)

    def event_field_names(self) -> list[str]:
        """Names of the store's top-level (per-event) columns, ``points`` excluded."""
        return [n for n in _open(self.path).schema_arrow.names if n != "points"]

    def chunks(self, chunk_size: int | None = None, columns=None, row_groups=None) -> Iterator[ak.Array]:
        """:func:`iter_clouds` of the store."""
        return iter_clouds(self.path, chunk_size=chunk_size, columns=columns, row_groups=row_groups)

    def read(self, start: int | None = None, stop: int | None = None, columns=None) -> ak.Array:
        """:func:`read_clouds` of the store."""
        return read_clouds(self.path, start=start, stop=stop, columns=columns)
