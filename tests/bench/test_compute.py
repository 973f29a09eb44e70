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
