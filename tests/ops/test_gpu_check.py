"""scripts/gpu_check.py on the CPU (how it is tested before a GPU is lent): parity of a model with itself is exact in
float32, bf16 autocast moves outputs but keeps the gradient direction, and the cost rows and the Markdown card are
written for point (padded and ragged) and dense models."""
from __future__ import annotations

import json
import sys

import pytest
from helpers.scripts import load_script


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


def test_gpu_check_on_cpu(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--device", "cpu", "--max-points", "32",
                                      "--parity-events", "6", "--events", "12", "--train-batch", "6",
                                      "--infer-batch", "12", "--thresholds", "0,100", "--models", "pointnet,dense_fcn"])
    assert gpu_check.main() == 0
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(res["parity"]) == {"pointnet", "dense_fcn"}
    for name, p in res["parity"].items():
        assert "error" not in p, p
        assert p["float32"]["grads"] == 0.0 and max(p["float32"]["outputs"].values()) == 0.0  # same device, same op
        assert p["float32"]["pass"]
        assert 0 < max(p["bf16"]["outputs"].values()) < 0.05  # bf16 rounds, but not wildly
        assert p["bf16"]["grad_cosine"] > 0.9
    assert [r["threshold_mev"] for r in res["cost"]] == [0.0, 100.0]
    first, last = res["cost"]
    assert last["points_mean"] < first["points_mean"] and last["padded_to"] <= first["padded_to"] <= 32
    assert "dense_fcn" in first["models"] and "dense_fcn" not in last["models"]  # images: measured once
    for row in res["cost"]:
        pn = row["models"]["pointnet"]
        assert pn["float32"]["train_events_per_s"] > 0 and pn["bf16"]["infer_events_per_s"] > 0
        assert row["ragged"]["pointnet"]["train_events_per_s"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| pointnet |" in md and "| dense_fcn |" in md


def test_rel_and_trim(gpu_check):
    import torch

    assert gpu_check.rel(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.0
    assert gpu_check.rel(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])) > 1e20  # zero reference: huge, not nan
    assert abs(gpu_check.rel(torch.tensor([1.1, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0])) - 0.1) < 1e-12
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]).bool()
    b = {"x": torch.zeros(2, 5, 3), "pos": torch.zeros(2, 5, 3), "mask": mask,
         "yseg": torch.zeros(2, 5), "g": torch.zeros(2, 3)}
    t = gpu_check.trim(b)
    assert t["x"].shape == (2, 3, 3) and t["mask"].shape == (2, 3) and t["g"].shape == (2, 3)
