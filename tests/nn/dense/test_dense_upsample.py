"""Energy-conserving resampling of the upsample-and-stack model (seed 000)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pcloud.geometry import get_geometry
from pcloud.nn.dense import UpsampleStackCNN, rebin_matrix
from pcloud.nn.dense.upsample import common_edges


def test_rebin_matrix_hand_cases():
    # one 3 mm cell replicated into three 1 mm cells: E/3 each
    np.testing.assert_allclose(rebin_matrix([0, 3], [0, 1, 2, 3]), [[1 / 3], [1 / 3], [1 / 3]])
    # two cells merged into one (down-sampling sums them)
    np.testing.assert_allclose(rebin_matrix([0, 1, 2], [0, 2]), [[1, 1]])
    # non-aligned: a 2 mm cell split 1.5 / 0.5 by an edge at 1.5 mm
    np.testing.assert_allclose(rebin_matrix([0, 2], [0, 1.5, 3]), [[0.75], [0.25]])
    # target wider than the source: outside cells get nothing, columns still sum to 1
    m = rebin_matrix([-1, 0, 1], [-3, -1, 1, 3])
    np.testing.assert_allclose(m, [[0, 0], [1, 1], [0, 0]])


def test_common_grid_is_union_with_finest_pitch():
    e = common_edges([np.linspace(-240, 240, 4), np.linspace(-240, 240, 13)], 1000)
    np.testing.assert_allclose(e, np.linspace(-240, 240, 13))  # 40 mm pitch of the finer grid
    e = common_edges([np.linspace(-63.75, 63.75, 26), np.linspace(-165, 165, 12)], 1000)
    assert e[0] == -165 and e[-1] == 165 and np.diff(e).max() <= 5.1 + 1e-9  # CLIC: union extent, ECAL pitch
    assert common_edges([np.linspace(0, 10, 101)], 8).size == 9  # capped


def test_calogan_stack_is_cell_replication():
    """CaloGAN: layer_0 (3 x 96, 160 x 5 mm) -> 12 x 96 (40 x 5 mm): each cell becomes 4 cells of E/4;
    layer_2 (12 x 6, 40 x 80 mm) -> each cell becomes 16 cells of E/16 along v."""
    geo = get_geometry("calogan")
    m = UpsampleStackCNN(geo)
    assert m.grid_shape == (12, 96) and m.n_channels == 3
    g = torch.Generator().manual_seed(0)
    imgs = {s.name: torch.rand(2, *s.shape, generator=g) for s in geo.sections}
    st = m.stack(imgs)
    assert st.shape == (2, 3, 12, 96)
    torch.testing.assert_close(st[:, 0], imgs["layer_0"][:, 0].repeat_interleave(4, dim=1) / 4)
    torch.testing.assert_close(st[:, 1], imgs["layer_1"][:, 0].repeat_interleave(8, dim=2) / 8)
    torch.testing.assert_close(st[:, 2], imgs["layer_2"][:, 0].repeat_interleave(16, dim=2) / 16)


@pytest.mark.parametrize("geo_name,max_cells", [("calogan", 96), ("clic", 96), ("clic", 20), ("cms", 96)])
def test_stack_conserves_every_layer_energy(geo_name, max_cells):
    geo = get_geometry(geo_name)
    m = UpsampleStackCNN(geo, max_cells=max_cells)
    g = torch.Generator().manual_seed(1)
    imgs = {s.name: torch.rand(3, *s.shape, generator=g, dtype=torch.float64) * 2 for s in geo.sections}
    st = m.double().stack(imgs)
    per_layer_in = torch.cat([imgs[s.name].sum((2, 3)) for s in geo.sections], dim=1)  # (B, n_layers_total)
    assert st.shape[1] == per_layer_in.shape[1]
    torch.testing.assert_close(st.sum((2, 3)), per_layer_in, rtol=1e-10, atol=1e-10)
    assert (st >= 0).all()
    # float32 model (the default): conserved to float32 rounding
    st32 = UpsampleStackCNN(geo, max_cells=max_cells).stack({k: v.float() for k, v in imgs.items()})
    torch.testing.assert_close(st32.sum((2, 3)).double(), per_layer_in, rtol=1e-5, atol=1e-5)


def test_clic_hcal_is_spread_over_ecal_granularity():
    """A single HCAL cell (30 mm) lands on ~30/5.08 fine cells per axis with the energy shared by overlap."""
    geo = get_geometry("clic")
    m = UpsampleStackCNN(geo).double()
    imgs = {s.name: torch.zeros(1, *s.shape, dtype=torch.float64) for s in geo.sections}
    imgs["HCAL"][0, 0, 5, 5] = 12.0  # central HCAL cell of the first HCAL layer: x, y in [-15, 15] mm
    st = m.stack(imgs)[0, 25]  # first HCAL channel after the 25 ECAL layers
    assert st.sum().item() == pytest.approx(12.0)
    uc = 0.5 * (m.u_edges[:-1] + m.u_edges[1:])
    inside = np.abs(uc) < 15 + np.diff(m.u_edges).max()
    nz = st.abs() > 0
    assert nz.any(1).numpy()[~inside].sum() == 0 and nz.any(0).numpy()[~inside].sum() == 0
    # a fine cell fully inside [-15, 15] gets 12 GeV x (its area / 30^2 mm^2)
    i = int(np.argmin(np.abs(uc)))
    area = np.diff(m.u_edges)[i] * np.diff(m.v_edges)[i]
    assert st[i, i].item() == pytest.approx(12.0 * area / 900.0)


def test_transform_applied_after_resampling():
    """With transform 'none' the model's stack equals the GeV stack; with 'fraction' it sums to 1 per event."""
    geo = get_geometry("calogan")
    g = torch.Generator().manual_seed(2)
    imgs = {s.name: torch.rand(2, *s.shape, generator=g) for s in geo.sections}
    m = UpsampleStackCNN(geo, transform="fraction")
    from pcloud.nn.dense.preprocess import check_images, section_energies_gev
    chk = check_images(imgs, m.specs, m._anchor, "t")
    x = m.prepare(chk, section_energies_gev(chk, m.section_names))["stack"]
    torch.testing.assert_close(x.sum((1, 2, 3)), torch.ones(2))


def test_mixed_grid_kinds_rejected():
    sec = get_geometry("calogan").sections[0], get_geometry("cms").sections[0]
    with pytest.raises(ValueError, match="grid kind"):
        UpsampleStackCNN(SimpleNamespace(name="mixed", sections=list(sec)))
