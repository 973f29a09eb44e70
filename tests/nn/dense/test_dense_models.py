"""Shapes, overfitting, gradient flow, energy skip connection and input checks of the dense models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcloud.geometry import get_geometry
from pcloud.nn.dense import DENSE_MODELS, build_dense_model
from pcloud.core.showers import ShowerImages

MODELS = sorted(DENSE_MODELS)
GEOMETRIES = ("calogan", "clic", "cms")


@pytest.fixture(scope="module")
def geoms():
    return {g: get_geometry(g) for g in GEOMETRIES}


def _imgs(geo, b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.rand(b, *s.shape, generator=g) for s in geo.sections}


@pytest.mark.parametrize("geo_name", GEOMETRIES)
@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name, geo_name, geoms):
    geo = geoms[geo_name]
    m = build_dense_model(name, geo, n_classes=3, n_targets=2, n_global=4)
    m.eval()
    out = m(_imgs(geo, 5), torch.randn(5, 4))
    assert out["logits"].shape == (5, 3)
    assert out["energy"].shape == (5,)
    assert out["regression"].shape == (5, 2)
    assert out["global"].shape[0] == 5 and out["global"].dim() == 2
    assert all(torch.isfinite(v).all() for v in out.values())
    assert m.n_params == sum(p.numel() for p in m.parameters() if p.requires_grad) > 0
    # regression switched off: no energy key
    m2 = build_dense_model(name, geo, regress_energy=False)
    assert "energy" not in m2.eval()(_imgs(geo, 2))


#: reduced widths so each overfit test takes about a second (the capacity question is the same)
SMALL = {"dense_fcn": {"hidden": (64, 32)}, "cnn3d": {"hidden": (64, 32)},
         "multistream_cnn": {"channels": (8, 8), "pool_to": 8, "hidden": (64, 32)},
         "densenet": {"growth": 6, "block_layers": (2, 2), "hidden": (32,)},
         "upsample_cnn": {"channels": (8, 8), "max_cells": 32, "hidden": (64, 32)}}


@pytest.mark.parametrize("name", MODELS)
def test_overfits_tiny_batch(name, showers):
    """16 synthetic showers of two clearly different classes: joint CE + relative energy loss drops > 90%."""
    torch.manual_seed(0)
    geo = get_geometry("calogan")
    images, labels, _, energy = showers(geo, 16, seed=1)
    x = {k: torch.as_tensor(v) for k, v in images.items()}
    y = torch.as_tensor(labels)
    e = torch.as_tensor(energy, dtype=torch.float32)
    m = build_dense_model(name, geo, dropout=0.0, **SMALL.get(name, {}))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        out = m(x)
        loss = torch.nn.functional.cross_entropy(out["logits"], y) + (((out["energy"] - e) / e) ** 2).mean() * 10
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], float(np.mean(losses[-5:]))
    assert first > 0.5  # CE of an untrained 2-class model ~ ln 2, plus the energy term
    assert last < 0.1 * first, (name, first, last)
    m.eval()
    with torch.no_grad():
        out = m(x)
    assert (out["logits"].argmax(1) == y).all()
    assert torch.allclose(out["energy"], e, rtol=0.05)


@pytest.mark.parametrize("geo_name", ("calogan", "clic"))
@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name, geo_name, geoms):
    torch.manual_seed(0)
    geo = geoms[geo_name]
    m = build_dense_model(name, geo, n_targets=2, n_global=3)
    out = m(_imgs(geo, 6, seed=3), torch.randn(6, 3))
    loss = (torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 0, 1, 0, 1]))
            + (out["energy"] - 50.0).pow(2).mean() + out["regression"].pow(2).mean())
    loss.backward()
    missing = [n for n, p in m.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    assert not missing, missing


@pytest.mark.parametrize("name", MODELS)
def test_energy_skip_is_linear_baseline_at_init(name, geoms, showers):
    geo = geoms["clic"]
    images, _, dep, _ = showers(geo, 8, seed=2)
    m = build_dense_model(name, geo).eval()
    with torch.no_grad():
        e = m(images)["energy"].double().numpy()
    np.testing.assert_allclose(e, dep, rtol=1e-5)
    # the weights act per section in geometry order: E = 2 E_ECAL + 0.5 E_HCAL
    with torch.no_grad():
        m.head.energy_weight.copy_(torch.tensor([2.0, 0.5]))
        e2 = m(images)["energy"].double().numpy()
    e_ecal = images["ECAL"].reshape(8, -1).sum(1).astype(np.float64)
    e_hcal = images["HCAL"].reshape(8, -1).sum(1).astype(np.float64)
    np.testing.assert_allclose(e2, 2 * e_ecal + 0.5 * e_hcal, rtol=1e-5)
    # without the skip connection the untrained energy is 0 (correction initialised to 0), not the deposit
    m0 = build_dense_model(name, geo, energy_skip=False).eval()
    with torch.no_grad():
        np.testing.assert_allclose(m0(images)["energy"].numpy(), 0.0, atol=1e-6)
    assert not m0.head.energy_weight.requires_grad


def test_accepts_shower_images_numpy_and_other_dtype(geoms, showers):
    geo = geoms["calogan"]
    images, labels, dep, _ = showers(geo, 4)
    si = ShowerImages(geo, images, {"pdg": np.full(4, 11, dtype=np.int32)})
    m = build_dense_model("densenet", geo).double().eval()
    out = m(si.images)
    assert out["energy"].dtype == torch.float32 or out["energy"].dtype == torch.float64
    np.testing.assert_allclose(out["energy"].detach().numpy(), si.total_energy(), rtol=1e-5)
    assert out["logits"].dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise_clear_errors(name, geoms):
    geo = geoms["clic"]
    m = build_dense_model(name, geo, n_global=2).eval()
    imgs = _imgs(geo, 2)
    with pytest.raises(KeyError, match="HCAL"):
        m({"ECAL": imgs["ECAL"]}, torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"images\['ECAL'\].*\(B, 25, 25, 25\).*found \(2, 25, 25\)"):
        m({"ECAL": imgs["ECAL"][:, 0], "HCAL": imgs["HCAL"]}, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="batch size"):
        m({"ECAL": imgs["ECAL"], "HCAL": imgs["HCAL"][:1]}, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_global=2"):
        m(imgs)
    with pytest.raises(ValueError, match=r"global_features must have shape \(2, 2\)"):
        m(imgs, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="dict"):
        m(imgs["ECAL"], torch.zeros(2, 2))


def test_unknown_model_and_bad_options(geoms):
    with pytest.raises(ValueError, match="unknown dense model"):
        build_dense_model("resnet", geoms["cms"])
    with pytest.raises(ValueError, match="mode"):
        build_dense_model("cnn3d", geoms["cms"], transform="sqrt")
    with pytest.raises(ValueError, match="global_scale"):
        build_dense_model("cnn3d", geoms["cms"], n_global=2, global_scale=[1.0])
    with pytest.raises(ValueError, match="kernel"):
        build_dense_model("cnn3d", geoms["clic"], kernel={"HCAL": (2, 2)})


def test_cnn3d_follows_seed001_layout(geoms):
    """Conv3d for the multi-layer CLIC sections (HCAL 3 filters of (6, 2, 2) = the paper's 2x2x6 in x,y,z),
    Conv2d for single-layer sections; valid convolution then 2-pooling fixes the flattened size."""
    m = build_dense_model("cnn3d", geoms["clic"], filters={"ECAL": 8, "HCAL": 3}, kernel={"HCAL": (6, 2, 2)})
    conv_e, conv_h = m.streams["ECAL"][0], m.streams["HCAL"][0]
    assert isinstance(conv_e, torch.nn.Conv3d) and conv_e.kernel_size == (3, 3, 3) and conv_e.out_channels == 8
    assert isinstance(conv_h, torch.nn.Conv3d) and conv_h.kernel_size == (6, 2, 2) and conv_h.out_channels == 3
    # ECAL 25^3 -> 23^3 -> pool 11^3, x8 ; HCAL (60,11,11) -> (55,10,10) -> (27,5,5), x3
    assert m.n_encoded == 8 * 11**3 + 3 * 27 * 5 * 5
    m2 = build_dense_model("cnn3d", geoms["calogan"])
    assert all(isinstance(s[0], torch.nn.Conv2d) for s in m2.streams.values())
    # layer_0 is 3 x 96: kernel 3x3 -> 1 x 94 -> pool (1, 2) -> 1 x 47
    assert m2.streams["layer_0"][2].kernel_size == (1, 2)


def test_densenet_blocks_concatenate_all_previous_maps(geoms):
    """Each dense layer's input has 2*growth + i*growth channels (stem + all previous layers of the block)."""
    from pcloud.nn.dense.densenet import DenseLayer
    m = build_dense_model("densenet", geoms["cms"], growth=6, block_layers=(3, 2), compression=0.5)
    layers = [mod for mod in m.streams["EB"].features if isinstance(mod, DenseLayer)]
    ins = [lay.fn[0].num_features for lay in layers]
    assert ins == [12, 18, 24, 15, 21]  # block 1: 12 + i*6; transition 30 -> 15; block 2: 15 + i*6
    x = torch.rand(2, 15, 4, 4)
    y = layers[3](x)
    assert y.shape == (2, 21, 4, 4) and torch.equal(y[:, :15], x)  # input maps passed on unchanged


DOCUMENTED_N_PARAMS = {  # module docstrings of pcloud/nn/dense/*.py (defaults, 2 classes, energy skip)
    "calogan": {"dense_fcn": 90_319, "cnn3d": 93_183, "multistream_cnn": 564_767, "densenet": 162_751,
                "upsample_cnn": 314_031},
    "clic": {"dense_fcn": 2_954_955, "cnn3d": 1_847_371, "multistream_cnn": 814_923, "densenet": 126_515,
             "upsample_cnn": 1_091_179},
}


@pytest.mark.parametrize("geo_name", ("calogan", "clic"))
def test_documented_parameter_counts(geo_name, geoms):
    got = {n: build_dense_model(n, geoms[geo_name]).n_params for n in MODELS}
    assert got == DOCUMENTED_N_PARAMS[geo_name]


def test_fcn_parameter_count_by_hand(geoms):
    """calogan FCN, hidden (32,), 2 classes, energy skip: trunk Linear(504 + 3 section energies -> 32, no bias
    before batch norm) + BN(32) + heads on z = 32 + 3: logits 35*2+2, energy correction 35+1, 3 skip weights."""
    m = build_dense_model("dense_fcn", geoms["calogan"], hidden=(32,))
    assert m.n_params == 507 * 32 + 2 * 32 + (35 * 2 + 2) + (35 + 1) + 3


def test_models_are_in_the_shared_registry(geoms):
    from pcloud.nn import build_model, list_models
    assert set(MODELS) <= set(list_models())
    m = build_model("cnn3d", geometry=geoms["cms"], n_classes=4)
    assert type(m) is DENSE_MODELS["cnn3d"] and m.eval()(_imgs(geoms["cms"], 2))["logits"].shape == (2, 4)


def test_accepts_trainer_batch_dict(geoms):
    geo = geoms["clic"]
    torch.manual_seed(0)
    m = build_dense_model("densenet", geo, n_global=2).eval()
    imgs, g = _imgs(geo, 3), torch.randn(3, 2)
    with torch.no_grad():
        a = m(imgs, g)
        b = m({"images": imgs, "g": g, "label": torch.zeros(3, dtype=torch.long)})
    torch.testing.assert_close(a["logits"], b["logits"])
    with pytest.raises(ValueError, match="n_global=2"):
        m({"images": imgs})
