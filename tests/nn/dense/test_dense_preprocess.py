"""The image transform of the dense models."""
from __future__ import annotations

import math

import pytest
import torch

from pcloud.nn.dense import ImageTransform


def test_log1p_values_and_symmetry():
    t = ImageTransform("log1p", scale_gev=0.5)
    x = {"a": torch.tensor([[0.0, 0.5, -0.5, 49.5]])}
    y = t(x)["a"][0]
    torch.testing.assert_close(y, torch.tensor([0.0, math.log(2), -math.log(2), math.log(100)]))
    # small energies: linear regime E / s
    assert t({"a": torch.tensor([1e-6])})["a"].item() == pytest.approx(2e-6, rel=1e-5)


def test_fraction_normalises_over_all_sections_and_handles_empty_events():
    t = ImageTransform("fraction")
    x = {"a": torch.tensor([[1.0, 3.0], [0.0, 0.0]]), "b": torch.tensor([[4.0, 2.0], [0.0, 0.0]])}
    y = t(x)
    torch.testing.assert_close(y["a"][0], torch.tensor([0.1, 0.3]))
    torch.testing.assert_close(y["b"][0], torch.tensor([0.4, 0.2]))
    assert torch.equal(y["a"][1], torch.zeros(2)) and torch.isfinite(y["b"]).all()


def test_linear_none_and_bad_options():
    x = {"a": torch.tensor([2.0])}
    assert ImageTransform("linear", 4.0)(x)["a"].item() == 0.5
    assert ImageTransform("none")(x)["a"].item() == 2.0
    with pytest.raises(ValueError, match="mode"):
        ImageTransform("sqrt")
    with pytest.raises(ValueError, match="scale_gev"):
        ImageTransform("log1p", 0.0)
