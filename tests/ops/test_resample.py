"""pcloud resample: the CLIC ECAL re-binned to CMS-, ATLAS-like and custom cells with energy conserved exactly."""
import awkward as ak
import numpy as np
import pytest

from pcloud.cli.main import main
from pcloud.data.resample import merge_factor
from pcloud.io.native import NativeStore, write_clouds
from pcloud.data.convert import images_to_clouds
from pcloud.geometry import get_geometry
from pcloud.sim.showers import simulate_showers


@pytest.fixture(scope="module")
def clic_store(tmp_path_factory):
    p = tmp_path_factory.mktemp("clic") / "g.parquet"
    write_clouds(p, images_to_clouds(simulate_showers(get_geometry("clic"), "gamma", 30, energy_gev=(5, 50), seed=4)))
    return p


@pytest.mark.parametrize("to,m", [("cms", 4), ("atlas", 7), ("15x15", 3)])
def test_resample_conserves_energy_per_event_layer_and_section(clic_store, tmp_path, to, m, capsys):
    out = tmp_path / f"{to}.parquet"
    assert main(["resample", str(clic_store), "--to", to, "-o", str(out)]) == 0
    assert "energy conserved to 0.00e+00" in capsys.readouterr().out
    a, b = NativeStore(clic_store), NativeStore(out)
    assert b.geometry().info["builder_kwargs"]["ecal_merge"] == m
    assert np.diff(b.geometry().sections[0].u_edges)[0] == pytest.approx(5.1 * m)
    ca, cb = a.read(), b.read()
    assert len(ca) == len(cb)
    np.testing.assert_array_equal(ak.to_numpy(ca.event_number), ak.to_numpy(cb.event_number))
    for layer in (0, 12, 30):  # an ECAL layer, another, an HCAL layer
        ea = ak.to_numpy(ak.sum(ak.where(ca.points.layer == layer, ca.points.energy, 0.0), axis=1))
        eb = ak.to_numpy(ak.sum(ak.where(cb.points.layer == layer, cb.points.energy, 0.0), axis=1))
        np.testing.assert_allclose(eb, ea, rtol=1e-12, atol=1e-12)
    assert ak.sum(ak.num(cb.points, axis=1)) < ak.sum(ak.num(ca.points, axis=1))


def test_bad_targets_are_refused(clic_store, tmp_path):
    with pytest.raises(ValueError, match="CELLxCELL"):
        merge_factor("coarse")
    with pytest.raises(ValueError, match="square"):
        merge_factor("10x20")
    assert main(["resample", str(clic_store), "--to", "2x2", "-o", str(tmp_path / "o.parquet")]) == 2
