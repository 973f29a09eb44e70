"""Particle flow on MLTree files: train / evaluate / predict and the benchmark's file input."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pcloud.bench.pflow import PflowConfig
from pcloud.bench.pflow.events import generate_pflow_events
from pcloud.io.mltree import write_mltree
from pcloud.pflow.topocluster import topo_cluster_events
from pcloud.pipeline.config import run_config
from pcloud.pipeline.inputs import InputError
from pcloud.pipeline.pflow import (
    evaluate_pflow,
    predict_pflow,
    read_events,
    train_pflow,
)
from pcloud.sim.events import generate_events


@pytest.fixture(scope="module")
def mltree_files(tmp_path_factory, atlas):
    d = tmp_path_factory.mktemp("mltree")
    out = []
    for seed, n in ((1, 70), (2, 30)):
        ev = generate_events(atlas, n, np.random.default_rng(seed), parent=["rho", "delta"], n_parents=(1, 2),
                             dr=(0.05, 0.3), energy_gev=(10, 60))
        write_mltree(d / f"ev{seed}.root", ev, topo_cluster_events(atlas, ev), atlas)
        out.append(d / f"ev{seed}.root")
    return out


def test_files_are_joined_with_their_truth(mltree_files, atlas):
    events, clusters, inputs = read_events([str(p) for p in mltree_files], need_truth=True, geometry=atlas)
    assert events.n_events == 100 and [i.n_events for i in inputs] == [70, 30]
    assert clusters.n_events == 100 and clusters.cell_cluster.size == events.cells["event"].size
    # cross-references survive the join: every hit points at a particle of its own event
    assert np.all(events.particles["event"][events.hits["particle"]] == events.cells["event"][events.hits["cell"]])
    assert np.all(events.tracks["event"] == events.particles["event"][events.tracks["particle"]])
    cfg = PflowConfig(data=[str(p) for p in mltree_files], quick=True).resolved()
    assert generate_pflow_events(atlas, cfg).n_events == 100


def test_train_evaluate_predict_pflow(mltree_files, tmp_path):
    cfg = run_config(None, ["train.epochs=1", "train.batch_size=32"], data=[str(mltree_files[0])], task="pflow")
    res = train_pflow(cfg, tmp_path / "P", log=lambda s: None)
    # data.pflow_max_points 0 (default): every point of the track clouds, nothing truncated
    bundle = json.loads((tmp_path / "P" / "bundle.json").read_text())
    assert bundle["data"]["max_points"] is None and bundle["training"]["truncated_energy_fraction"] == 0.0
    assert bundle["model"]["kwargs"]["ragged"] is True  # train.pflow_ragged auto: PointNet on flat batches
    assert set(res["methods"]) == {"iterative", "common"} and res["split"] == "test"
    for r in res["methods"].values():
        assert r["conservation"]["max_violation_gev"] < 1e-6 and 0 <= r["f1"] <= 1
    ev = evaluate_pflow(tmp_path / "P", [str(mltree_files[1])], tmp_path / "E", log=lambda s: None)
    assert ev["n_events"] == 30
    on_disk = json.loads((tmp_path / "E" / "results.json").read_text())
    for r in on_disk["methods"].values():  # the error budget: by kind, significance and layer (names of the file)
        assert sum(r["energy_lost"].values()) == pytest.approx(1 - r["energy_weighted_accuracy"], abs=1e-9)
        assert set(r["by_layer"]) <= {"EMB1", "EMB2", "EMB3", "TileBar0", "TileBar1", "TileBar2"} and r["by_layer"]
        assert sum(b["n_cells"] for b in r["by_layer"].values()) == r["n_cells"]
    info = predict_pflow(tmp_path / "P", str(mltree_files[1]), tmp_path / "p.parquet", log=lambda s: None)
    t = pq.read_table(tmp_path / "p.parquet").to_pydict()
    assert len(t["cell_id"]) == info["n_cells"]
    e = np.asarray(t["energy_gev"])
    for mode in ("iterative", "common"):  # attributed + neutral = measured, cell by cell
        charged = np.array([sum(f) for f in t[f"fraction_{mode}"]]) * np.where(e > 0, e, 0)
        np.testing.assert_allclose(charged + np.asarray(t[f"neutral_{mode}_gev"]), e, atol=1e-9)
    assert all(len(a) == len(b) for a, b in zip(t["track_index"], t["fraction_iterative"]))


def test_image_files_are_refused_for_particle_flow(calogan_files):
    with pytest.raises(InputError, match="cannot be used for task 'pflow'"):
        read_events([str(calogan_files["e"])], need_truth=True)


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), path
    else:
        assert a == b, path


def test_pflow_streams_in_chunks(mltree_files, tmp_path):
    """Files larger than memory: reading the MLTree files 9 events at a time (clouds written to the per-split
    stores chunk by chunk, metrics accumulated, predictions written per chunk) gives the same model, metrics and
    predictions as reading them whole."""
    files = [str(p) for p in mltree_files]
    res = {}
    for chunk in (9, 1000):
        cfg = run_config(None, ["train.epochs=2", "train.batch_size=32", "data.pflow_max_points=64",
                                f"data.pflow_chunk_events={chunk}", "train.pflow_shuffle_buffer=40"],
                         data=files, task="pflow")
        res[chunk] = train_pflow(cfg, tmp_path / f"P{chunk}", log=lambda s: None)
    _same(res[9], res[1000])
    assert res[9]["n_events"] > 0 and res[9]["split"] == "test"
    n_clouds = pq.ParquetFile(tmp_path / "P9" / "data" / "pflow_train.parquet").metadata.num_rows
    assert n_clouds == pq.ParquetFile(tmp_path / "P1000" / "data" / "pflow_train.parquet").metadata.num_rows > 20
    ev = {c: evaluate_pflow(tmp_path / "P9", files, tmp_path / f"E{c}", log=lambda s: None, chunk_events=c)
          for c in (7, 1000)}
    _same(ev[7], ev[1000])
    assert ev[7]["n_events"] == 100
    pred = {}
    for c in (7, 1000):
        predict_pflow(tmp_path / "P9", files[1], tmp_path / f"p{c}.parquet", log=lambda s: None, chunk_events=c)
        pred[c] = pq.read_table(tmp_path / f"p{c}.parquet")
    assert pq.ParquetFile(tmp_path / "p7.parquet").metadata.num_row_groups == 5  # 30 events in chunks of 7
    assert pred[7].equals(pred[1000])


def test_pflow_training_reads_each_file_twice_and_each_store_once(mltree_files, tmp_path, monkeypatch):
    """One pass over the MLTree files writes both cloud stores (train and val), the test evaluation is the second;
    fit_stores fits the normaliser and the truncated-energy statistic in one pass over the training store, and the
    statistic equals the one of the in-memory fit on the same clouds."""
    import pcloud.pipeline.pflow as pp
    from pcloud.io import native
    from pcloud.io.native import NativeStore, read_clouds

    reads, passes = [], []
    real_iter = pp.iter_mltree
    monkeypatch.setattr(pp, "iter_mltree", lambda path, *a, **k: reads.append(str(path)) or real_iter(path, *a, **k))
    real_chunks = native.NativeStore.chunks

    def chunks(self, *a, **k):
        passes.append(self.path.name)
        return real_chunks(self, *a, **k)

    monkeypatch.setattr(native.NativeStore, "chunks", chunks)
    files = [str(p) for p in mltree_files]
    cfg = run_config(None, ["train.epochs=1", "train.batch_size=32", "data.pflow_max_points=16",
                            "data.pflow_chunk_events=25", "train.pflow_threshold=0.4"], data=files, task="pflow")
    train_pflow(cfg, tmp_path / "P", log=lambda s: None)
    assert sorted(reads) == sorted(files * 2)  # the threshold given: stores, then the test evaluation
    # the normaliser pass, then one pass per epoch each for training and validation (1 epoch)
    assert passes.count("pflow_train.parquet") == 2 and passes.count("pflow_val.parquet") == 1
    monkeypatch.setattr(native.NativeStore, "chunks", real_chunks)
    from pcloud.pflow.learned import FocalTrackSegmenter

    bundle = json.loads((tmp_path / "P" / "bundle.json").read_text())
    frac = bundle["training"]["truncated_energy_fraction"]
    clouds = read_clouds(tmp_path / "P" / "data" / "pflow_train.parquet")
    seg = FocalTrackSegmenter(max_points=16, device="cpu")
    e_all, e_kept = seg.kept_energy(clouds)
    assert 0.0 < frac < 0.9 and frac == pytest.approx(1.0 - e_kept / e_all, rel=1e-9, abs=1e-12)
    # by hand on the raw points: track points first (in stored order), then the highest-energy cells, 16 per cloud
    e = [np.clip(np.asarray(c.points.energy, float), 0, None) for c in clouds[:50]]
    typ = [np.asarray(c.points["type"]) for c in clouds[:50]]
    kept = sum(np.sort(ei[ti == 0])[::-1][:max(16 - int((ti > 0).sum()), 0)].sum() + ei[ti > 0][:16].sum()
               for ei, ti in zip(e, typ))
    assert any((ti > 0).sum() > 16 for ti in typ)  # a cloud whose track points alone fill the 16 slots
    assert seg.kept_energy(clouds[:50]) == pytest.approx((sum(x.sum() for x in e), kept), rel=1e-12)
    assert NativeStore(tmp_path / "P" / "data" / "pflow_val.parquet").n_events > 0


def test_pflow_threshold_chosen_on_val_chunk_by_chunk(mltree_files, tmp_path, atlas):
    """pcloud train --task pflow with the default recipe (topo cells, per-cell CE, threshold "val"): the threshold
    chosen from counts added up over chunks of the validation events is the one choose_threshold finds on all of
    them at once, it is applied by evaluation (bundle reloaded), and bad recipe values are errors naming the key."""
    from pcloud.core.events import select_events
    from pcloud.data.splits import Splits
    from pcloud.pipeline.pflow import load_segmenter

    files = [str(p) for p in mltree_files]
    cfg = run_config(None, ["train.epochs=1", "train.batch_size=32", "data.pflow_max_points=32",
                            "data.pflow_chunk_events=11"], data=files, task="pflow", model="transformer")
    assert (cfg.train["pflow_loss"], cfg.train["pflow_threshold"], cfg.data["pflow_cells"]) == ("ce", "val", "topo")
    res = train_pflow(cfg, tmp_path / "P", log=lambda s: None)
    seg, _ = load_segmenter(tmp_path / "P")
    assert seg.model_name == "transformer" and seg.cells == "topo" and seg.loss_name == "ce"
    assert seg.model_cfg["dim"] == 32  # model.small: the light widths
    assert seg.max_points == 32 and run_config(None, [], data=files, task="pflow").data["pflow_max_points"] == 0
    assert seg.ragged is False  # train.pflow_ragged auto: padded batches for every model but PointNet
    info = json.loads((tmp_path / "P" / "bundle.json").read_text())["training"]
    assert info["threshold"] == seg.threshold and 0.05 <= seg.threshold <= 0.7
    events = read_events(files, need_truth=True, geometry=atlas)[0]
    splits = Splits.load(tmp_path / "P" / "splits.json")
    val = select_events(events, splits.mask(np.arange(events.n_events), "val"))
    assert seg.choose_threshold(val, atlas) == info["threshold"]  # all validation events at once
    assert seg.threshold_info["val"] == pytest.approx(info["threshold_info"]["val"], rel=1e-9)
    assert seg.threshold_info["n_cells"] == info["threshold_info"]["n_cells"] > 0
    assert res["methods"]["common"]["f1"] > 0
    for bad, key in (("train.pflow_loss=l2", "train.pflow_loss"), ("train.pflow_threshold=1.5",
                                                                   "train.pflow_threshold"),
                     ("data.pflow_cells=some", "data.pflow_cells"), ("train.pflow_energy_share=2", "energy_share"),
                     ("data.pflow_max_points=-1", "data.pflow_max_points"),
                     ("data.pflow_max_points=1.5", "data.pflow_max_points"),
                     ("train.pflow_ragged=maybe", "train.pflow_ragged")):
        with pytest.raises(ValueError, match=key):
            run_config(None, [bad], data=files, task="pflow")
    logged = []
    cfg = run_config(None, ["data.max_points=64", "model.options={loss: focal, k: 4}"], data=files, task="pflow",
                     model="dgcnn")
    with pytest.raises(InputError, match=r"model.options: \['loss'\] are set by other keys"):
        train_pflow(cfg, tmp_path / "Q", log=logged.append)
    assert any("data.max_points (64) applies to the id / energy tasks" in m for m in logged)
    cfg = run_config(None, ["model.options={loss: focal, k: 4}"], data=files, task="pflow", model="dgcnn")
    with pytest.raises(InputError, match=r"model.options: \['loss'\] are set by other keys"):
        train_pflow(cfg, tmp_path / "Q", log=lambda s: None)
    assert not (tmp_path / "Q" / "data").exists()  # refused before anything is read or written


def test_training_on_a_file_without_truth_is_one_clear_error(tmp_path, capsys):
    """Streamed particle-flow training stops at the first chunk of a file without per-cell truth: exit 2, one line
    naming the file and the branch, no bundle and no cloud store left behind."""
    from helpers.mltree import athena_style_file

    from pcloud.cli.main import main

    path = athena_style_file(tmp_path / "nohits.root", with_truth=False)
    rc = main(["train", "--data", str(path), "--task", "pflow", "--epochs", "1", "--out", str(tmp_path / "B")])
    err = capsys.readouterr().err
    assert rc == 2 and "nohits.root" in err and "cluster_cell_hitsTruthIndex" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "B" / "bundle.json").exists() and not list((tmp_path / "B").rglob("*.parquet"))


def test_pflow_pipeline_names_its_models():
    """The cell-graph model needs clouds with the cell graph; the training pipeline's model names are those of the
    id / energy tasks, so it is not among them (bench pflow --models cellgraph and the Python API train it)."""
    from pcloud.pipeline.pflow import PFLOW_MODELS

    assert PFLOW_MODELS == ("pointnet", "dgcnn", "transformer", "gravnet")
    with pytest.raises(ValueError, match="cellgraph"):
        run_config(None, ["model.name=cellgraph"], data=["x.root"], task="pflow")
