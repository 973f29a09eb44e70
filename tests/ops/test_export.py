"""Export: every learned model to ONNX (run in onnxruntime) and TorchScript, equal to torch within 1e-4 on random
and real clouds (fewer points than k included); the export-friendly layer paths equal the training paths."""
import json

import numpy as np
import pytest
import torch

from pcloud.cli.main import main
from pcloud.geometry import get_geometry
from pcloud.io.native import NativeStore
from pcloud.nn.export import example_inputs, export_onnx, export_torchscript, wrap_for_export
from pcloud.nn.knn import knn, knn_dense
from pcloud.nn.layers import export_friendly
from pcloud.pipeline.bundle import load_bundle
from pcloud.pipeline.models import DENSE_MODEL_NAMES, build

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
TOL = 1e-4


def _randomise_bn(model, seed=0):
    """Non-trivial running statistics, so that eval-mode batch norm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))  # some negative scales (fused min path)
    return model.eval()


def _torch_out(model, inputs: dict, names):
    core = getattr(model, "model", model)
    with torch.no_grad():
        if hasattr(core, "specs") or hasattr(model, "specs"):
            out = model({k.replace("img_", "img:", 1): v for k, v in inputs.items()})
        else:
            out = model(dict(inputs))
    return [out[k].numpy() for k in names]


def _max_diff(a_list, b_list):
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) if np.asarray(a).size else 0.0
               for a, b in zip(a_list, b_list))


def _check_onnx_and_ts(model, tmp_path, shapes):
    info = export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == info["inputs"]
    export_torchscript(model, tmp_path / "m.pt")
    ts = torch.jit.load(str(tmp_path / "m.pt"))
    worst = 0.0
    for b, n in shapes:
        ex = example_inputs(model, batch=b, n_points=n, seed=7 * b + (n or 0))
        ref = _torch_out(model, ex, info["outputs"])
        got = sess.run(info["outputs"], {k: v.numpy() for k, v in ex.items()})
        with torch.no_grad():
            got_ts = [t.numpy() for t in ts(*[ex[k] for k in info["inputs"]])]
        worst = max(worst, _max_diff(got, ref), _max_diff(got_ts, ref))
    assert worst <= TOL, worst
    return sess, info


@pytest.mark.parametrize("name", ["pointnet", "dgcnn", "transformer", "gravnet"])
def test_point_models_export_with_dynamic_batch_and_points(name, tmp_path):
    torch.manual_seed(3)
    m = _randomise_bn(build(name, get_geometry("clic"), n_classes=3, regress_energy=True, n_targets=0,
                            n_sections=2, small=True))
    # k = 10 for the small DGCNN: 1, 3 and 9 points are fewer than k (+1)
    _check_onnx_and_ts(m, tmp_path, [(1, 1), (2, 3), (4, 9), (3, 11), (5, 70)])


@pytest.mark.parametrize("name", DENSE_MODEL_NAMES)
def test_dense_models_export_with_dynamic_batch(name, tmp_path):
    torch.manual_seed(4)
    m = _randomise_bn(build(name, get_geometry("calogan"), n_classes=2, regress_energy=True, n_targets=0,
                            n_sections=3, small=True))
    _check_onnx_and_ts(m, tmp_path, [(1, None), (6, None)])


def test_export_friendly_paths_equal_the_training_paths():
    g = torch.Generator().manual_seed(0)
    for n, k in ((1, 4), (3, 4), (12, 4), (40, 8)):
        f = torch.randn(3, n, 3, generator=g) * 30
        mask = torch.rand(3, n, generator=g) > 0.3
        mask[:, 0] = True
        a_idx, a_ok = knn(f, k, mask, return_valid=True, block_size=5)
        b_idx, b_ok = knn_dense(f, k, mask)
        assert torch.equal(a_ok, b_ok) and torch.equal(a_idx[a_ok], b_idx[b_ok])
        # filled slots follow the same rule (nearest real neighbour, else self) on real points
        assert torch.equal(a_idx[mask], b_idx[mask])
    for name, extra in (("dgcnn", {}), ("dgcnn", {"aggr": "mean", "k": 6}), ("dgcnn", {"edge_hidden": (16,)}),
                        ("pointnet", {"channels": (16, 32)}), ("gravnet", {}), ("gravnet", {"k": 3, "use_pos": True}),
                        ("transformer", {})):
        m = _randomise_bn(build(name, get_geometry("clic"), n_classes=2, regress_energy=True, n_targets=0,
                                n_sections=2, small=True, overrides=extra))
        for b, n in ((1, 2), (4, 13)):
            ex = example_inputs(m, batch=b, n_points=n, seed=b + n)
            with torch.no_grad():
                ref = m(ex)
                with export_friendly():
                    got = m(ex)
            for key in ref:
                assert torch.allclose(ref[key], got[key], atol=1e-5), (name, extra, key)
    m.train()
    with export_friendly(), pytest.raises(RuntimeError, match="eval mode"):
        m(example_inputs(m))


def _real_batch(bundle_dir, max_points=None, n=40):
    b = load_bundle(bundle_dir)
    clouds = next(NativeStore(bundle_dir / "data" / "train.parquet").chunks(columns=None))[:n]
    batcher = b.batcher()
    if max_points is not None:
        batcher.max_points = max_points
    batch = batcher(clouds)
    return b, {k: batch[k] for k in ("x", "pos", "mask", "g")}


@pytest.mark.parametrize("model", ["pointnet", "dgcnn"])
def test_cli_export_of_bundles_matches_torch_on_real_clouds(model, point_bundles, tmp_path, capsys):
    bdir = point_bundles[model]
    assert main(["export", str(bdir), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(bdir), "--format", "torchscript", "-o", str(tmp_path / "m.pt")]) == 0
    assert "inputs x, pos, mask, g" in capsys.readouterr().out
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["pcloud_bundle"])["model"]["name"] == model
    extra = {"bundle.json": ""}
    ts = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["bundle.json"])["model"]["name"] == model
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for mp in (None, 5):  # real clouds as trained (48 points), and truncated to 5 points (< k = 10)
        b, batch = _real_batch(bdir, mp)
        ref = _torch_out(b.model, batch, names)
        got = sess.run(names, {k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            got_ts = [t.numpy() for t in ts(*[batch[k] for k in ("x", "pos", "mask", "g")])]
        assert _max_diff(got, ref) <= TOL and _max_diff(got_ts, ref) <= TOL


def test_pflow_segmenter_exports(pflow_bundle, tmp_path):
    from pcloud.pflow.clouds import track_clouds
    from pcloud.pipeline.pflow import load_segmenter

    bdir, events = pflow_bundle
    assert main(["export", str(bdir), "--format", "onnx", "-o", str(tmp_path / "s.onnx")]) == 0
    seg, _ = load_segmenter(bdir)
    clouds = track_clouds(events, get_geometry("atlas"), dr_max=seg.dr_max)
    batch, _, _ = seg.tensors(clouds, with_targets=False)
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "pos", "mask"]
    names = [o.name for o in sess.get_outputs()]
    inputs = {k: batch[k] for k in ("x", "pos", "mask")}
    ref = _torch_out(seg.model.eval(), inputs, names)
    got = sess.run(names, {k: v.numpy() for k, v in inputs.items()})
    assert "seg_logits" in names and _max_diff(got, ref) <= TOL


def test_wrapper_names_inputs_after_the_model():
    m = build("dgcnn", get_geometry("clic"), n_classes=2, regress_energy=False, n_targets=0, n_sections=0,
              small=True)
    w, ex = wrap_for_export(m)
    assert w.input_names == ["x", "pos", "mask"] and set(ex) == {"x", "pos", "mask"}
    assert w.output_names == ["global", "logits"]
