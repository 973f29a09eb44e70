import pytest
import torch

from pcloud.bench.compute import count_params, peak_memory_mb, throughput


def test_peak_memory_counts_simultaneous_activations():
    m = torch.nn.Sequential(torch.nn.Linear(512, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10))
    x = torch.randn(256, 512)
    with torch.no_grad():
        peak = peak_memory_mb(lambda: m(x))
    one = 256 * 4096 * 4 / 1e6  # one hidden activation in float32
    # the Linear output and the ReLU output coexist: 2 hidden activations (+ the small logits)
    assert 2 * one <= peak < 2 * one + 0.1
    with torch.no_grad():
        peak_small = peak_memory_mb(lambda: m(x[:16]))
    assert peak_small == pytest.approx(peak / 16, rel=0.05)


def test_params_and_throughput():
    m = torch.nn.Linear(10, 3)
    assert count_params(m) == 33
    eps = throughput(lambda: m(torch.randn(100, 10)), 100, min_seconds=0.05)
    assert eps > 0


def test_training_step_cost_measures_forward_and_backward():
    from pcloud.bench.compute import training_step_cost

    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 2))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, b):
            return {"logits": self.m(b["x"])}

    w = Wrap().eval()
    r = training_step_cost(w, {"x": torch.randn(32, 8)}, "cpu")
    assert set(r) == {"step_seconds", "train_peak_memory_mb"} and r["step_seconds"] > 0
    assert r["train_peak_memory_mb"] > 0
    assert w.training and all(p.grad is None for p in w.parameters())  # training mode, gradients cleared


def test_batch_events_padded_and_ragged():
    from pcloud.bench.compute import batch_events
    from pcloud.nn.ragged import padded_to_ragged

    mask = torch.tensor([[True, True, False], [True, False, False]])
    padded = {"x": torch.randn(2, 3, 4), "mask": mask, "g": torch.zeros(2, 3)}
    ragged = padded_to_ragged(padded)
    assert ragged["x"].shape[0] == 3 and batch_events(padded) == batch_events(ragged) == 2
