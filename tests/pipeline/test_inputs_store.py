"""pcloud.pipeline inputs and store: specs, labels, geometries, interleaving, energy conservation, streaming."""
import awkward as ak
import h5py
import numpy as np
import pytest
import torch

from pcloud.data.batch import CloudDataset
from pcloud.data.splits import Splits
from pcloud.geometry import get_geometry
from pcloud.io.calogan import read_calogan
from pcloud.io.native import NativeStore
from pcloud.io.triforce import write_triforce
from pcloud.pipeline.inputs import InputError, load_showers, parse_data_specs, resolve_classes
from pcloud.pipeline.store import build_store, section_energies
from pcloud.sim.showers import simulate_showers


def test_specs_labels_globs_and_errors(calogan_files, tmp_path):
    e, pi = calogan_files["e"], calogan_files["pi"]
    inp = parse_data_specs([f"{e}:positron", f"{pi}:211"])
    assert [(i.label, i.pdg, i.index, i.format, i.n_events) for i in inp] == [("e+", -11, 0, "calogan", 160),
                                                                             ("pi+", 211, 1, "calogan", 160)]
    globbed = parse_data_specs([str(e.parent / "*.h5") + ":e+"], probe=False)
    assert [p.path.name for p in globbed] == ["e.h5", "e2.h5", "pi.h5", "pi2.h5"]  # sorted, label on each
    with pytest.raises(InputError, match="unknown label 'electronz'"):
        parse_data_specs([f"{e}:electronz"])
    with pytest.raises(InputError, match="no such file"):
        parse_data_specs([str(tmp_path / "missing.h5") + ":e+"])
    with pytest.raises(InputError, match="no file matches"):
        parse_data_specs([str(tmp_path / "*.h5")])
    with pytest.raises(InputError, match="is a directory"):
        parse_data_specs([str(tmp_path)])
    with pytest.raises(InputError, match="no input data"):
        parse_data_specs([])
    colon = tmp_path / "run:1.h5"  # an existing file whose name has a colon is a path, not FILE:LABEL
    colon.write_bytes(e.read_bytes())
    assert parse_data_specs([str(colon)])[0].label is None


def test_mixed_geometries_and_missing_labels(calogan_files, tmp_path):
    clic = tmp_path / "clic.h5"
    write_triforce(clic, simulate_showers(get_geometry("clic"), "e-", 4, energy_gev=(10, 20), seed=1))
    with pytest.raises(InputError, match="differs from 'calogan'.*share one geometry"):
        parse_data_specs([f"{calogan_files['e']}:e+", f"{clic}:e-"])
    # a public-style CaloGAN file: layers, energy, no particle id anywhere
    bare = tmp_path / "bare.h5"
    s = read_calogan(calogan_files["e"], 0, 10)
    with h5py.File(bare, "w") as f:
        for k, v in s.images.items():
            f.create_dataset(k, data=v[:, 0] * 1000.0)
        f.create_dataset("energy", data=s.truth["energy_gev"].reshape(-1, 1))
    inp = parse_data_specs([str(bare), f"{calogan_files['pi']}:pi+"])
    with pytest.raises(InputError, match=r"bare.h5: no label.*bare.h5:LABEL"):
        resolve_classes(inp)
    # classes from labels and from the files' own pdg, order of first appearance; an extra class has no events
    both = parse_data_specs([str(calogan_files["pi"]), f"{calogan_files['e']}:e+"])
    assert resolve_classes(both) == ["pi+", "e+"]
    with pytest.raises(InputError, match="class 'gamma' of data.classes has no events"):
        resolve_classes(both, ["e+", "pi+", "gamma"])
    with pytest.raises(InputError, match=r"events of class \['pi\+'\] not in data.classes"):
        resolve_classes(both, ["e+"])


def test_store_conserves_energy_and_interleaves(calogan_files, tmp_path):
    inp = parse_data_specs([f"{calogan_files['e']}:e+", f"{calogan_files['pi2']}:pi+"])
    meta = build_store(inp, tmp_path / "s.parquet", ["e+", "pi+"], threshold_gev=0.001, chunk_events=50)
    store = NativeStore(tmp_path / "s.parquet")
    assert meta["n_events"] == store.n_events == 220 and meta["pipeline"]["selected_per_input"] == [160, 60]
    chunks = list(store.chunks())
    # chunk sizes proportional to the files (50 and 19): every row group pair holds both classes
    assert set(ak.to_numpy(chunks[0].label)) == {0} and set(ak.to_numpy(chunks[1].label)) == {1}
    assert len(chunks[0]) == 50 and len(chunks[1]) == 19
    allc = ak.concatenate(chunks)
    assert ak.to_numpy(allc.event_number).tolist() == list(range(220))
    # every event's points hold exactly its image energy above threshold; the section fields add up to it
    for k, path in ((0, calogan_files["e"]), (1, calogan_files["pi2"])):
        sub = allc[ak.to_numpy(allc.source_file) == k]
        s = read_calogan(path)
        flat = s.flat().astype(np.float64)
        want = np.where(flat > 0.001, flat, 0).sum(1)[ak.to_numpy(sub.source_event)]
        got = ak.to_numpy(ak.sum(sub.points.energy, axis=1)).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        secs = np.stack([ak.to_numpy(sub[f"section_{n}_gev"]) for n in ("layer_0", "layer_1", "layer_2")], 1)
        np.testing.assert_allclose(secs.sum(1), want, rtol=1e-5)
        np.testing.assert_allclose(ak.to_numpy(sub.energy_gev), s.truth["energy_gev"][ak.to_numpy(sub.source_event)])
    np.testing.assert_allclose(section_energies(allc, get_geometry("calogan")).sum(1),
                               ak.to_numpy(ak.sum(allc.points.energy, axis=1)), rtol=1e-6)


def test_store_selection_and_nothing_half_written(calogan_files, tmp_path):
    inp = parse_data_specs([f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"])
    meta = build_store(inp, tmp_path / "sel.parquet", ["e+", "pi+"], selection={"energy_gev": [50, None]})
    e = ak.to_numpy(ak.concatenate(list(NativeStore(tmp_path / "sel.parquet").chunks())).energy_gev)
    assert e.min() >= 50 and meta["n_events"] == e.size
    with pytest.raises(InputError, match="no event passes the selection"):
        build_store(inp, tmp_path / "none.parquet", ["e+", "pi+"], selection={"energy_gev": [1000, None]})
    assert not (tmp_path / "none.parquet").exists() and not list(tmp_path.glob(".none*"))
    with pytest.raises(InputError, match="unknown per-event field 'colour'"):
        build_store(inp, tmp_path / "bad.parquet", ["e+", "pi+"], selection={"colour": [0, 1]})


def test_streamed_epochs_visit_every_training_event_once(calogan_files, tmp_path):
    inp = parse_data_specs([f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"])
    build_store(inp, tmp_path / "s.parquet", ["e+", "pi+"], chunk_events=40)
    store = NativeStore(tmp_path / "s.parquet")
    assert store.n_row_groups == 8
    sp = Splits({"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    want = sorted(ak.to_numpy(sp.select(ak.concatenate(list(store.chunks())), "train").event_number).tolist())
    ds = CloudDataset(store, batch_size=16, shuffle=True, seed=5, splits=sp, split="train", shuffle_buffer=48)
    orders = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        got = [int(n) for b in loader for n in b.event_number]
        assert sorted(got) == want  # two workers: disjoint row groups, nothing lost or repeated
        orders.append(got)
        # the buffer mixes the classes: no batch of 16 is all from one file after shuffling
    assert orders[0] != orders[1]


def test_load_showers_caps_classes(calogan_files):
    inp = parse_data_specs([f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"])
    s = load_showers(inp, ["e+", "pi+"], max_per_class=25, chunk_events=10)
    assert np.bincount(s.truth["label"]).tolist() == [25, 25]
    assert s.truth["event_number"].tolist() == list(range(50))
    assert s.truth["source_event"][:25].tolist() == list(range(25))


@pytest.mark.parametrize("kind", ["point", "dense"])
def test_batcher_reads_only_its_columns_and_makes_the_same_batches(calogan_files, tmp_path, kind):
    """Streaming reads only the columns a batch is made of (a smaller shuffle buffer); the batches are identical
    to those made from the full clouds, and a batch without a needed field fails naming it."""
    from pcloud.data.normalise import Normaliser
    from pcloud.pipeline.batches import Batcher
    from pcloud.pipeline.store import section_field

    inp = parse_data_specs([f"{calogan_files['e']}:e+", f"{calogan_files['pi']}:pi+"])
    build_store(inp, tmp_path / "s.parquet", ["e+", "pi+"], chunk_events=64)
    store = NativeStore(tmp_path / "s.parquet")
    g = get_geometry("calogan")
    feats = ["x", "y", "z", "layer", "log_energy"]
    norm = Normaliser.fit(store.chunks(), feats)
    b = Batcher(kind, feats, 40, norm, g, [section_field(s.name) for s in g.sections])
    cols = b.columns(store)
    pts = sorted(c.split(".", 1)[1] for c in cols if c.startswith("points."))
    assert pts == (["energy", "layer", "type", "x", "y", "z"] if kind == "point" else ["cell_id", "energy", "type"])
    assert {"event_number", "label", "energy_gev", "section_layer_0_gev"} <= set(cols)
    full, pruned = next(iter(store.chunks())), next(iter(store.chunks(columns=cols)))
    assert len(ak.fields(pruned.points)) < len(ak.fields(full.points))
    bf, bp = b(full), b(pruned)
    assert bf.keys() == bp.keys()
    for k in bf:
        assert torch.equal(bf[k], bp[k]), k
    from pcloud.core.schema import SchemaError

    with pytest.raises(SchemaError, match="energy"):
        b(next(iter(store.chunks(columns=[c for c in cols if c != "points.energy"]))))
