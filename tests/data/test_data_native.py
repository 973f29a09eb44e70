"""The native Parquet store: round trips, streaming, metadata, errors, atomicity."""
from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pcloud.core.schema import SCHEMA_VERSION
from pcloud.data import clouds_to_images, images_to_clouds
from pcloud.data.summary import summarise_clouds
from pcloud.io.errors import FormatError
from pcloud.io.native import (
    CloudWriter,
    iter_clouds,
    read_clouds,
    read_meta,
    write_clouds,
)
from pcloud.pipeline import describe_file


@pytest.fixture
def showers(calogan, make_random_showers):
    return make_random_showers(calogan, 53, seed=11, event_number=np.arange(1000, 1053))


def test_round_trip_images_clouds_parquet_images(tmp_path, calogan, showers):
    clouds = images_to_clouds(showers)
    path = tmp_path / "c.parquet"
    meta = write_clouds(path, clouds, {"generator": {"name": "hand-made"}, "seed": 42}, row_group_events=10)
    assert meta["n_events"] == 53 and meta["geometry"] == {"name": "calogan", "kwargs": {}}
    back = read_clouds(path)
    assert ak.array_equal(back, clouds, check_parameters=False)
    assert ak.type(back) == ak.type(clouds)
    images = clouds_to_images(back, calogan)
    for s in calogan.sections:
        np.testing.assert_array_equal(images.images[s.name], showers.images[s.name])
    np.testing.assert_array_equal(images.truth["event_number"], showers.truth["event_number"])
    np.testing.assert_array_equal(images.truth["energy_gev"], showers.truth["energy_gev"])
    m = read_meta(path)
    assert m["schema_version"] == SCHEMA_VERSION and m["seed"] == 42 and m["threshold_gev"] == 0.0
    assert m["generator"] == {"name": "hand-made"} and m["units"]["energy"] == "GeV" and m["n_events"] == 53
    assert pq.ParquetFile(path).metadata.num_row_groups == 6


def test_streaming_write_and_iteration_sums_equal_whole(tmp_path, calogan, make_random_showers):
    parts = [images_to_clouds(make_random_showers(calogan, n, seed=s, event_number=np.arange(n) + 100 * s))
             for s, n in enumerate([7, 13, 1, 9])]
    consumed = []

    def gen():  # the writer must consume the chunks lazily
        for p in parts:
            consumed.append(len(p))
            yield p

    path = tmp_path / "s.parquet"
    write_clouds(path, gen(), {"geometry": "calogan"}, row_group_events=5)
    assert consumed == [7, 13, 1, 9]
    whole = ak.concatenate(parts)
    total = float(ak.sum(ak.values_astype(whole.points.energy, np.float64)))
    for chunk_size in (None, 4, 30, 100):
        chunks = list(iter_clouds(path, chunk_size=chunk_size))
        if chunk_size:
            assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
        assert sum(len(c) for c in chunks) == 30
        s = sum(float(ak.sum(ak.values_astype(c.points.energy, np.float64))) for c in chunks)
        assert s == pytest.approx(total, rel=1e-12)
        assert np.concatenate([c.event_number.to_numpy() for c in chunks]).tolist() == \
            whole.event_number.to_numpy().tolist()
    # column pruning keeps the nesting and drops the rest
    sub = next(iter_clouds(path, columns=["event_number", "points.energy"]))
    assert ak.fields(sub) == ["event_number", "points"] and ak.fields(sub.points) == ["energy"]
    assert str(ak.type(sub.points.energy)).endswith("var * float32")
    # ranges read only what they need and slice exactly
    r = read_clouds(path, 6, 18)
    assert r.event_number.tolist() == whole.event_number[6:18].tolist()
    assert ak.array_equal(r.points.energy, whole.points.energy[6:18])


def test_summary_of_path_and_array(tmp_path, calogan, showers):
    clouds = images_to_clouds(showers, threshold_gev=0.1)
    path = tmp_path / "x.parquet"
    write_clouds(path, clouds)
    flat = showers.flat().astype(np.float64)
    above = flat > 0.1
    for s in (describe_file(path), summarise_clouds(clouds)):
        assert s["n_events"] == 53
        assert s["n_points"] == int(above.sum())
        assert s["points_per_event"]["min"] == int(above.sum(1).min())
        assert s["points_per_event"]["max"] == int(above.sum(1).max())
        assert s["total_energy_gev"] == pytest.approx(flat[above].sum(), rel=1e-6)
        assert s["energy_by_type_gev"]["CELL"] == s["total_energy_gev"]
        assert s["energy_by_type_gev"]["FOCAL_TRACK"] == 0.0
        assert s["geometry"] == "calogan" and s["threshold_gev"] == 0.1


def test_bad_files_give_clear_errors(tmp_path, calogan, showers):
    clouds = images_to_clouds(showers)
    txt = tmp_path / "notes.parquet"
    txt.write_text("hello")
    with pytest.raises(FormatError, match="notes.parquet.*Parquet magic"):
        read_clouds(txt)
    with pytest.raises(FileNotFoundError):
        read_meta(tmp_path / "missing.parquet")
    # a Parquet file without pcloud metadata
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    with pytest.raises(FormatError, match="pcloud metadata"):
        read_meta(plain)
    # wrong schema version
    good = tmp_path / "good.parquet"
    write_clouds(good, clouds)
    t = pq.read_table(good)
    kv = dict(t.schema.metadata or {})
    kv.update(pq.ParquetFile(good).metadata.metadata)
    m = json.loads(kv[b"pcloud"])
    m["schema_version"] = SCHEMA_VERSION + 1
    kv[b"pcloud"] = json.dumps(m).encode()
    old = tmp_path / "old.parquet"
    pq.write_table(t.replace_schema_metadata(kv), old)
    with pytest.raises(FormatError, match="schema_version.*expected schema version"):
        read_clouds(old)
    # missing schema fields
    m["schema_version"] = SCHEMA_VERSION
    kv[b"pcloud"] = json.dumps(m).encode()
    nopoints = tmp_path / "nopoints.parquet"
    pq.write_table(t.drop_columns(["points"]).replace_schema_metadata(kv), nopoints)
    with pytest.raises(FormatError, match=r"missing \['points'\]"):
        read_meta(nopoints)
    with pytest.raises(FormatError, match="column 'points.nope'"):
        read_clouds(good, columns=["points.nope"])


def test_writer_errors_and_atomicity(tmp_path, calogan, showers):
    clouds = images_to_clouds(showers)
    path = tmp_path / "a.parquet"
    with pytest.raises(ValueError, match="nothing to write"):
        write_clouds(path, [], {"geometry": "calogan"})
    assert not path.exists()

    def failing():
        yield clouds[:10]
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError, match="generator died"):
        write_clouds(path, failing())
    assert not path.exists() and list(tmp_path.iterdir()) == []  # no temp file left behind
    # an existing file survives a failed rewrite
    write_clouds(path, clouds[:5])
    with pytest.raises(ValueError, match="chunk 1 has schema"):
        write_clouds(path, [clouds[:3], ak.without_field(clouds[3:6], "pdg")])
    assert read_meta(path)["n_events"] == 5
    with pytest.raises(ValueError, match="must name the geometry"):
        write_clouds(path, ak.without_parameters(clouds))
    with pytest.raises(ValueError, match="geometry 'atlas' but the clouds were made on 'calogan'"):
        write_clouds(path, clouds, {"geometry": "atlas"})
    with pytest.raises(ValueError, match="missing per-point field"):
        write_clouds(path, ak.zip({"event_number": [1], "points": [[{"energy": 1.0}]]}, depth_limit=1),
                     {"geometry": "calogan"})


def test_cloud_writer_fills_several_files_in_one_pass(tmp_path, calogan, showers):
    """CloudWriter: two files written side by side from one stream of small chunks; full_row_groups gives row groups
    of exactly row_group_events (the last shorter) and the same clouds as write_clouds; abort(), an exception in the
    block, or a write after close leave no file and no temporary (an earlier file stays as it was)."""
    clouds = images_to_clouds(showers)  # 53 events
    even, odd = tmp_path / "even.parquet", tmp_path / "odd.parquet"
    with CloudWriter(even, row_group_events=8, full_row_groups=True) as we, CloudWriter(odd, row_group_events=8) as wo:
        for s in range(0, len(clouds), 3):  # chunks of 3 events, alternating between the two files
            flushed = we.n_events
            (we if (s // 3) % 2 == 0 else wo).write(clouds[s:s + 3])
            if we.n_events > flushed and we._pending:  # the remainder kept after a flush holds its own events
                assert we._pending[0].nbytes == ak.to_packed(we._pending[0]).nbytes  # only, not the merged buffer
    ev_idx = np.concatenate([np.arange(s, min(s + 3, 53)) for s in range(0, 53, 6)])
    od_idx = np.setdiff1d(np.arange(53), ev_idx)
    assert ak.to_list(read_clouds(even).event_number) == ak.to_list(clouds.event_number[ev_idx])
    assert ak.to_list(read_clouds(odd).event_number) == ak.to_list(clouds.event_number[od_idx])
    sizes = [pq.ParquetFile(even).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(even).num_row_groups)]
    assert len(ev_idx) == 27 and sizes == [8, 8, 8, 3]
    sizes_odd = [pq.ParquetFile(odd).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(odd).num_row_groups)]
    assert sizes_odd == [3] * 8 + [2]  # without buffering: one row group per chunk (the last chunk has 2 events)
    assert read_meta(even)["n_events"] == len(ev_idx) and read_meta(odd)["n_events"] == len(od_idx)
    assert ak.to_list(read_clouds(even)) == ak.to_list(clouds[ev_idx])
    before = even.read_bytes()
    w = CloudWriter(even)
    w.write(clouds[:4])
    w.abort()
    with pytest.raises(RuntimeError, match="stop"), CloudWriter(even) as w:
        w.write(clouds[:4])
        raise RuntimeError("stop")
    assert even.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["even.parquet",
                                                                                           "odd.parquet"]
    new = tmp_path / "new.parquet"
    w = CloudWriter(new, row_group_events=4, full_row_groups=True)
    w.write(clouds[:2])
    w.write(clouds[2:3])
    assert w.close()["n_events"] == 3 and read_meta(new)["n_events"] == 3  # the buffered rest written at close,
    assert pq.ParquetFile(new).num_row_groups == 1  # as one row group
    with pytest.raises(ValueError, match="closed"):
        w.write(clouds[:2])
    with pytest.raises(ValueError, match="nothing to write"):
        CloudWriter(tmp_path / "empty.parquet").close()
    assert not (tmp_path / "empty.parquet").exists()
    with pytest.raises(ValueError, match="already closed"):
        w.abort()
    # a failed chunk: the writer refuses to publish the rest
    for full in (False, True):
        part = tmp_path / f"part{full}.parquet"
        w = CloudWriter(part, row_group_events=4, full_row_groups=full)
        w.write(clouds[:3])
        with pytest.raises(ValueError, match="chunk 1 has schema"):  # checked before buffering too
            w.write(ak.without_field(clouds[3:6], "pdg"))
        with pytest.raises(ValueError, match="an earlier chunk failed"):
            w.write(clouds[6:9])
        with pytest.raises(ValueError, match="not written, a chunk failed"):
            w.close()
        assert not part.exists()
    # the Parquet writer failing to close (a full disk, say) still removes the temporary
    w = CloudWriter(tmp_path / "disk.parquet")
    w.write(clouds[:3])

    real_close, calls = w._writer.close, []

    def full_disk():  # fails once, as a flush onto a full disk would; closes for real when called again
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_close()

    w._writer.close = full_disk
    with pytest.raises(OSError, match="No space left"):
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["even.parquet", "new.parquet", "odd.parquet"]


def test_geometry_kwargs_recorded(tmp_path, make_random_showers):
    from pcloud.geometry import get_geometry

    g = get_geometry("calogan", z0_mm=300.0)
    c = images_to_clouds(make_random_showers(g, 3))
    path = tmp_path / "k.parquet"
    write_clouds(path, c)
    assert read_meta(path)["geometry"] == {"name": "calogan", "kwargs": {"z0_mm": 300.0}}
    write_clouds(path, c, {"geometry": g})
    assert read_meta(path)["geometry"]["kwargs"] == {"z0_mm": 300.0}
    assert float(read_clouds(path).points.z[0, 0]) == pytest.approx(300.0 + 45.0)  # layer_0 centre moved
    write_clouds(path, c, {"geometry": {"name": "calogan", "kwargs": {"z0_mm": 300.0}, "xml": "binning.xml"}})
    assert read_meta(path)["geometry"]["xml"] == "binning.xml"
