"""Distributed training: 2 CPU processes (gloo, file:// rendezvous on the local disk, no TCP store) keep equal
parameters and reproduce a single process on the same global batch; pcloud train --nproc 2 writes one bundle."""
import json

import pytest
import torch
import torch.multiprocessing as mp

from pcloud.cli.main import main
from ddp_check import equivalence_run

if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    rdv = tmp_path / "rendezvous"
    mp.spawn(equivalence_run, args=(2, f"file://{rdv}", str(tmp_path)), nprocs=2, join=True)
    equivalence_run(-1, 2, "", str(tmp_path))
    r0, r1, single = (torch.load(tmp_path / f, weights_only=True) for f in ("rank0.pt", "rank1.pt", "single.pt"))
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k  # replicas stay identical
        assert torch.allclose(r0["params"][k], single["params"][k], atol=1e-5), k
    # the mean of the ranks' losses over equal local batches is the loss of the global batch
    for a, b, s in zip(r0["train_loss"], r1["train_loss"], single["train_loss"]):
        assert abs((a + b) / 2 - s) < 1e-5 * max(1.0, abs(s))
    assert r0["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
    assert single["train_loss"][1] != single["train_loss"][0]  # it trained


def test_cli_train_nproc_2_writes_one_bundle(ops_files, tmp_path, capsys):
    out = tmp_path / "B"
    rc = main(["train", "--data", f"{ops_files['e']}:e+", "--data", f"{ops_files['pi']}:pi+", "--model", "pointnet",
               "--epochs", "1", "--set", "train.batch_size=32", "--set", "data.max_points=32", "--set",
               "data.chunk_events=16", "--nproc", "2", "--out", str(out)])
    assert rc == 0 and (out / "bundle.json").exists() and not list(out.glob(".ddp-rendezvous*"))
    d = json.loads((out / "results.json").read_text())["distributed"]
    assert d["world_size"] == 2 and d["backend"] == "gloo"
    assert d["param_sums"][0] == d["param_sums"][1]
    reads = [r["train_events_read"] for r in d["per_rank"]]
    split = json.loads((out / "bundle.json").read_text())["training"]["split_counts"]["events"]["train"]
    assert min(reads) > 0 and sum(reads) == split  # each rank read its own share of the training split


def test_cli_train_nproc_refuses_particle_flow(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "ev.root"), "--task", "pflow", "--nproc", "2", "--out",
               str(tmp_path / "B")])
    assert rc == 2 and "particle flow (--task pflow) trains in one process" in capsys.readouterr().err
    assert not (tmp_path / "B").exists()
