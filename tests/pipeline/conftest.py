"""Small files made by the library for the pipeline tests (no downloads)."""
import pytest

from pcloud.geometry import get_geometry
from pcloud.io.calogan import write_calogan
from pcloud.sim.showers import simulate_showers


@pytest.fixture(scope="session")
def calogan_files(tmp_path_factory):
    """Two CaloGAN HDF5 files (e+ and pi+, 160 showers each, 1-100 GeV) and two more for evaluation."""
    d = tmp_path_factory.mktemp("calogan")
    g = get_geometry("calogan")
    out = {}
    for name, particle, seed, n in (("e", "e+", 1, 160), ("pi", "pi+", 2, 160), ("e2", "e+", 3, 60),
                                    ("pi2", "pi+", 4, 60)):
        s = simulate_showers(g, particle, n, energy_gev=(1, 100), seed=seed)
        write_calogan(d / f"{name}.h5", s)
        out[name] = d / f"{name}.h5"
    return out
