"""Small files and model bundles for the export, serving, distributed-training and scan tests (made here, no
downloads)."""
import numpy as np
import pytest

from pcloud.geometry import get_geometry
from pcloud.io.calogan import write_calogan
from pcloud.sim.showers import simulate_showers

QUICK = ["train.epochs=1", "train.batch_size=32", "data.max_points=48", "train.shuffle_buffer=64"]


@pytest.fixture(scope="session")
def ops_files(tmp_path_factory):
    """CaloGAN e+ and pi+ files (120 showers each, 1-100 GeV)."""
    d = tmp_path_factory.mktemp("ops_files")
    g = get_geometry("calogan")
    out = {}
    for name, particle, seed in (("e", "e+", 11), ("pi", "pi+", 12)):
        write_calogan(d / f"{name}.h5", simulate_showers(g, particle, 120, energy_gev=(1, 100), seed=seed))
        out[name] = d / f"{name}.h5"
    return out


def _train(files, out, model, extra=()):
    from pcloud.pipeline.config import run_config
    from pcloud.pipeline.train import train

    cfg = run_config(None, QUICK + list(extra), data=[f"{files['e']}:e+", f"{files['pi']}:pi+"], model=model,
                     task="id+energy")
    train(cfg, out, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def point_bundles(ops_files, tmp_path_factory):
    """{"pointnet": folder, "dgcnn": folder}: 1-epoch id+energy bundles (DGCNN k=10)."""
    d = tmp_path_factory.mktemp("ops_bundles")
    return {m: _train(ops_files, d / m, m) for m in ("pointnet", "dgcnn")}


@pytest.fixture(scope="session")
def pflow_bundle(tmp_path_factory):
    """A particle-flow bundle (DGCNN segmenter, 1 epoch) and the events it can be run on."""
    from pcloud.pipeline.config import run_config
    from pcloud.pipeline.pflow import _write_bundle
    from pcloud.pflow.learned import FocalTrackSegmenter
    from pcloud.sim.events import generate_events

    atlas = get_geometry("atlas")
    ev = generate_events(atlas, 40, np.random.default_rng(5), parent=["rho", "delta"], n_parents=(1, 2),
                         dr=(0.05, 0.3), energy_gev=(10, 60))
    test = generate_events(atlas, 6, np.random.default_rng(6), parent=["rho", "delta"], n_parents=(1, 2),
                           dr=(0.05, 0.3), energy_gev=(10, 60))
    seg = FocalTrackSegmenter(model="dgcnn", dr_max=0.2, max_points=64, device="cpu", seed=1, widths="light")
    seg.fit(ev, ev, atlas, epochs=1, batch_size=32, log=lambda s: None)
    out = tmp_path_factory.mktemp("pflow_bundle") / "P"
    out.mkdir()
    cfg = run_config(None, [], data=["x.root"], task="pflow", model="dgcnn")
    _write_bundle(out, seg, cfg, [], {"epochs_run": 1})
    return out, test
