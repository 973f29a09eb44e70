"""Padded batches, truncation, PyG batches, collation and the streaming dataset."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch

from pcloud.data import CloudDataset, PaddedCollate, PyGCollate, Splits, images_to_clouds, to_padded, to_pyg_batch
from pcloud.core.schema import build_clouds
from pcloud.core.schema import PointType
from pcloud.io.native import NativeStore, write_clouds


@pytest.fixture
def small():
    """3 events: 3 cells; 0 points; 2 cells + 1 focal track (energy 0) with hand-made truth."""
    return build_clouds(
        [3, 0, 3],
        {"energy": np.array([0.5, 2.0, 1.0, 0.1, 0.0, 3.0]), "type": [0, 0, 0, 0, 1, 0],
         "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": [10.0, 20, 30, 40, 50, 60], "z": [0.5, 0, 0, 0, 0, 0],
         "track_index": [-1, -1, -1, -1, 0, -1]},
        {"event_number": [11, 12, 13], "energy_gev": [5.0, 6.0, 7.0], "focal_truth_index": [0, 0, 1]},
        truth_counts=[1, 2, 0, 1, 1, 1], truth_index=[0, 0, 1, 1, 1, 0], truth_energy=[0.5, 0.5, 1.5, 0.1, 0.0, 3.0])


def test_padded_layout_and_mask(small):
    b = to_padded(small, ["energy", "x"])
    assert b["x"].shape == (3, 3, 2) and b["x"].dtype == torch.float32
    assert b["mask"].tolist() == [[True] * 3, [False] * 3, [True] * 3]
    assert b["n_points"].tolist() == [3, 0, 3]
    # sort_by="energy": event 0 cells by decreasing energy; event 2: track first, then cells by energy
    assert b["energy"][0].tolist() == [2.0, 1.0, 0.5]
    assert b["x"][0, :, 1].tolist() == [2.0, 3.0, 1.0]
    assert b["type"][2].tolist() == [PointType.FOCAL_TRACK, PointType.CELL, PointType.CELL]
    assert b["energy"][2].tolist() == [0.0, 3.0, pytest.approx(0.1)]
    assert b["type"][1].tolist() == [PointType.PADDING] * 3
    assert torch.all(b["x"][~b["mask"]] == 0) and torch.all(b["pos"][~b["mask"]] == 0)
    assert b["pos"][0, 2].tolist() == [1.0, 10.0, 0.5]
    assert b["event_number"].tolist() == [11, 12, 13]
    # padding never counted: masked sums equal the ragged sums
    np.testing.assert_allclose((b["energy"] * b["mask"]).sum(1).numpy(), ak.to_numpy(ak.sum(small.points.energy, 1)),
                               rtol=1e-6)
    keep = to_padded(small, ["x"], sort_by=None)
    assert keep["x"][0, :, 0].tolist() == [1.0, 2.0, 3.0]


def test_truncation_keeps_tracks_and_highest_energy(small):
    b = to_padded(small, ["energy"], max_points=2, pad_to_multiple=4)
    assert b["x"].shape == (3, 4, 1)
    assert b["mask"].sum(1).tolist() == [2, 0, 2]
    assert b["energy"][0, :2].tolist() == [2.0, 1.0]
    assert b["type"][2, :2].tolist() == [PointType.FOCAL_TRACK, PointType.CELL]
    assert b["n_truncated"].tolist() == [1, 0, 1]
    np.testing.assert_allclose(b["truncated_energy"].numpy(), [0.5, 0.0, 0.1], rtol=1e-6)
    assert b["truncated_energy"].dtype == torch.float64
    # sort_by=None truncates the same points but keeps stored order
    c = to_padded(small, ["energy"], max_points=2, sort_by=None)
    assert c["energy"][0].tolist() == [2.0, 1.0] and c["energy"][2].tolist() == [0.0, 3.0]
    d = to_padded(small, ["x"], max_points=1, sort_by=None)
    assert d["x"][0, 0, 0].item() == 2.0


def test_targets_and_globals(small):
    b = to_padded(small, ["energy"], targets=("hard", "binary", "soft"), event_targets=("energy_gev",),
                  global_features=("energy_gev",))
    # event 0 sorted: [cell1 (truth 0:0.5, 1:1.5), cell2 (no truth), cell0 (0:0.5)]
    # event 2 sorted: [track (truth 1: 0.0 -> no particle), cell 3.0 (truth 0), cell 0.1 (truth 1)]
    assert b["y_hard"].tolist() == [[1, -1, 0], [-1, -1, -1], [-1, 0, 1]]
    # focal_truth_index: event 0 -> particle 0, event 2 -> particle 1; track point has zero truth -> 0
    assert b["y_binary"].tolist() == [[0, 0, 1], [-1, -1, -1], [0, 0, 1]]
    np.testing.assert_allclose(b["y_soft"].numpy(), [[0.25, 0, 1], [0, 0, 0], [0, 0, 1]])
    assert b["energy_gev"].tolist() == [5.0, 6.0, 7.0] and b["g"].shape == (3, 1)
    with pytest.raises(ValueError, match="focal_truth_index"):
        to_padded(ak.without_field(small, "focal_truth_index"), ["energy"], targets=("binary",))
    with pytest.raises(ValueError, match="unknown target"):
        to_padded(small, ["energy"], targets=("fuzzy",))


def test_pyg_batch_sizes(small, calogan, make_random_showers):
    b = to_pyg_batch(small, ["energy", "type_onehot"], y="hard")
    assert b.num_graphs == 3
    assert b.x.shape == (6, 4) and b.pos.shape == (6, 3) and b.y.shape == (6,)
    assert b.batch.tolist() == [0, 0, 0, 2, 2, 2] and b.ptr.tolist() == [0, 3, 3, 6]
    assert b.get_example(2).x.shape == (3, 4)
    assert [d.num_nodes for d in b.to_data_list()] == [3, 0, 3]
    e = to_pyg_batch(small, ["energy"], y="energy_gev")
    assert e.y.tolist() == [5.0, 6.0, 7.0]
    clouds = images_to_clouds(make_random_showers(calogan, 17))
    p = to_pyg_batch(clouds, ["x", "y", "z", "log_energy"], max_points=40)
    counts = np.minimum(ak.to_numpy(ak.num(clouds.points, 1)), 40)
    assert p.x.shape == (counts.sum(), 4)
    assert torch.bincount(p.batch, minlength=17).tolist() == counts.tolist()


def test_collate_from_records(small):
    items = [small[0], small[2]]
    b = PaddedCollate(["energy"])(items)
    assert b["event_number"].tolist() == [11, 13] and b["x"].shape == (2, 3, 1)
    assert PyGCollate(["energy"])(items).num_graphs == 2
    loader = torch.utils.data.DataLoader([small[i] for i in range(3)], batch_size=2, collate_fn=PaddedCollate(["x"]))
    assert [x["mask"].shape[0] for x in loader] == [2, 1]


def test_dataset_streams_path_and_array(tmp_path, calogan, make_random_showers):
    clouds = images_to_clouds(make_random_showers(calogan, 45, event_number=np.arange(45) * 3 + 1))
    path = tmp_path / "d.parquet"
    write_clouds(path, clouds, row_group_events=8)
    total = float(ak.sum(clouds.points.energy))
    for src in (clouds, NativeStore(path)):
        ds = CloudDataset(src, batch_size=10, chunk_size=16, collate=PaddedCollate(["energy"]))
        batches = list(torch.utils.data.DataLoader(ds, batch_size=None))
        assert [len(b["event_number"]) for b in batches] == [10, 10, 10, 10, 5] and len(ds) == 5
        assert sum(float((b["energy"] * b["mask"]).sum()) for b in batches) == pytest.approx(total, rel=1e-5)
        ns = np.concatenate([b["event_number"].numpy() for b in batches])
        assert ns.tolist() == clouds.event_number.tolist()
    # shuffled and split: a permutation of the split's events, seeded
    sp = Splits({"train": 0.7, "test": 0.3}, seed=3)
    want = sorted(sp.select(clouds, "train").event_number.tolist())
    ds = CloudDataset(NativeStore(path), batch_size=4, shuffle=True, seed=1, splits=sp, split="train")
    got = [int(n) for b in ds for n in b.event_number]
    assert sorted(got) == want and got != want and len(ds) == -(-len(want) // 4)
    again = [int(n) for b in CloudDataset(NativeStore(path), batch_size=4, shuffle=True, seed=1, splits=sp, split="train")
             for n in b.event_number]
    assert again == got
    with pytest.raises(TypeError, match="chunk source"):
        CloudDataset(path, batch_size=4)


def test_shuffled_stream_memory_does_not_grow_with_the_number_of_buffers(tmp_path, calogan, make_random_showers):
    """Each yielded batch is a view of its shuffle buffer; the points that view keeps alive (``layout.nbytes``)
    must stay bounded by one buffer, not grow with the number of buffers already emitted (issue 8: a remainder that
    was a view of the previous buffer dragged every earlier buffer into the next concatenation)."""
    clouds = images_to_clouds(make_random_showers(calogan, 600, occupancy=0.1, event_number=np.arange(600)))
    path = tmp_path / "d.parquet"
    write_clouds(path, clouds, row_group_events=20)
    sp = Splits({"train": 0.7, "test": 0.3}, seed=3)
    ds = CloudDataset(NativeStore(path), batch_size=7, shuffle=True, seed=1, splits=sp, split="train",
                      shuffle_buffer=40)
    held = [b.layout.nbytes for b in ds]
    n_events = sum(1 for _ in sp.select(clouds, "train").event_number)
    assert len(held) == -(-n_events // 7) and len(held) > 50  # ~10 buffers
    one_buffer = ak.to_packed(clouds[:60]).layout.nbytes  # a full buffer (40 events + remainder, + slack)
    assert max(held) < one_buffer, (max(held), one_buffer)
    assert max(held[-10:]) < 2 * max(held[:10])


def test_bad_batch_input(small):
    with pytest.raises(KeyError, match="unknown feature"):
        to_padded(small, ["energy", "colour"])
    with pytest.raises(ValueError, match="no events"):
        to_padded(small[:0], ["energy"])
    with pytest.raises(ValueError, match="max_points"):
        to_padded(small, ["energy"], max_points=0)
    bad = build_clouds([1], {"energy": np.array([np.nan])}, {})
    with pytest.raises(ValueError, match="NaN"):
        to_padded(bad, ["energy"])


def test_truncation_random_events_energy_bookkeeping():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 30, 40)
    e = rng.exponential(1.0, counts.sum())
    clouds = build_clouds(counts, {"energy": e}, {})
    k = 7
    b = to_padded(clouds, ["energy"], max_points=k)
    kept = (b["energy"].double() * b["mask"]).sum(1).numpy()
    total = np.bincount(np.repeat(np.arange(40), counts), weights=e.astype(np.float32), minlength=40)
    np.testing.assert_allclose(kept + b["truncated_energy"].numpy(), total, rtol=1e-6)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for i in (0, 5, 17, 39):  # spot checks: kept points are the k highest energies, in decreasing order
        want = np.sort(e[starts[i]:starts[i + 1]].astype(np.float32))[::-1][:k]
        np.testing.assert_array_equal(b["energy"][i, :len(want)].numpy(), want)
        assert b["n_truncated"][i] == max(0, counts[i] - k)


def test_pyg_batch_without_torch_geometric_says_how_to_install(small, monkeypatch):
    # PyG is an optional extra: without it, to_pyg_batch names the extra instead of failing deep inside
    monkeypatch.setitem(__import__("sys").modules, "torch_geometric", None)
    monkeypatch.setitem(__import__("sys").modules, "torch_geometric.data", None)
    with pytest.raises(ImportError, match=r"pcloud\[pyg\]"):
        to_pyg_batch(small, ["energy"])
