"""Shared fixtures for the image-format reader/writer tests: small random ShowerImages and public-like files."""
import h5py
import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.core.showers import ShowerImages


def random_showers(geometry, n, seed=0, sparsity=0.7, **truth):
    """Random non-negative images (GeV) with a fraction of empty cells, plus energy/pdg truth."""
    rng = np.random.default_rng(seed)
    images = {}
    for s in geometry.sections:
        a = rng.exponential(0.2, (n, *s.shape)).astype(np.float32)
        a[rng.random(a.shape) < sparsity] = 0.0
        images[s.name] = a
    t = {"energy_gev": rng.uniform(1.0, 100.0, n), "pdg": np.full(n, 22, dtype=np.int32)}
    t.update(truth)
    return ShowerImages(geometry, images, t, {"generator": "tests/io random"})


@pytest.fixture
def calogan_showers():
    return random_showers(get_geometry("calogan"), 9, seed=1,
                          theta_rad=np.linspace(1.4, 1.7, 9), entry_x_mm=np.linspace(-5.0, 5.0, 9),
                          overflow_gev=np.abs(np.random.default_rng(2).normal(0, 0.05, (9, 3))))


@pytest.fixture
def clic_showers():
    return random_showers(get_geometry("clic"), 5, seed=3, sparsity=0.95)


def _write_public_calogan(path, n=4, dtype=np.float64, compression=None, seed=0, **overrides):
    """A CaloGAN file exactly as the public ones (no pcloud extras), datasets replaceable via overrides."""
    rng = np.random.default_rng(seed)
    data = {"energy": rng.uniform(1, 100, (n, 1)), "layer_0": rng.exponential(50.0, (n, 3, 96)),
            "layer_1": rng.exponential(50.0, (n, 12, 12)), "layer_2": rng.exponential(5.0, (n, 12, 6)),
            "overflow": rng.exponential(1.0, (n, 3))}
    data.update(overrides)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if v is None:
                continue
            v = np.asarray(v)
            f.create_dataset(k, data=v.astype(dtype) if v.dtype.kind == "f" else v,
                             compression=compression if v.ndim else None)
    return data


@pytest.fixture
def public_calogan():
    """Factory ``public_calogan(path, n=4, dtype=..., compression=None, **dataset_overrides) -> data dict``."""
    return _write_public_calogan


@pytest.fixture
def make_showers():
    """Factory ``make_showers(geometry, n, seed=0, sparsity=0.7, **truth) -> ShowerImages``."""
    return random_showers
