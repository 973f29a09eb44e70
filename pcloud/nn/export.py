"""Export of pcloud's models to ONNX and TorchScript with dynamic batch (and point) axes.

The models take a batch dict and return a dict; exported graphs take positional tensors and return a tuple, so
each model is wrapped:

* point models (:class:`pcloud.nn.PointNet`, :class:`pcloud.nn.DGCNN`, the particle-flow segmenters that are
  such models with a segmentation head): inputs ``x (B, N, F)`` float32, ``pos (B, N, 3)`` float32,
  ``mask (B, N)`` bool and, for models with per-event inputs, ``g (B, G)`` float32; B and N are dynamic;
* dense models (:class:`pcloud.pipeline.models.DenseAdapter` around :mod:`pcloud.nn.dense`): one input per
  section ``img:<section>`` ``(B, L, U, V)`` float32 (ONNX names ``img_<section>``); B is dynamic.

Outputs are the model's output tensors in sorted key order (``energy``, ``global``, ``logits``, ``seg_logits``...),
named as the keys.

The graphs are traced inside :class:`pcloud.nn.layers.export_friendly`, where the layers avoid data-dependent
shapes: per-point MLPs run on every slot and padding is zeroed afterwards, the kNN is one ``(B, N, N)`` block
with ``k`` columns of ``+inf`` appended (so ``TopK`` works with fewer points than ``k``), and EdgeConv gathers
``(B, N, k, H)`` neighbour values (the fused max/min selection of the training path, without ``nonzero``). In eval
mode these equal the training path (tested); they need eval mode.

ONNX: ``torch.onnx.export`` (``dynamo=True``, the exporter based on ``torch.export`` that needs ``onnxscript``)
with ``dynamic_shapes``; TorchScript: ``torch.jit.trace`` of the same wrapper (traced sizes stay symbolic, checked
by running the traced module on other shapes before it is saved).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .knn import ONNX_TOPK
from .layers import export_friendly

__all__ = ["PointExport", "DenseExport", "wrap_for_export", "export_onnx", "export_torchscript", "example_inputs"]


class PointExport(nn.Module):
    """``(x, pos, mask[, g]) -> tuple`` of a point model's outputs (names in ``output_names``)."""

    def __init__(self, model: nn.Module, output_names: list[str]):
        super().__init__()
        self.model = model
        self.with_g = int(getattr(model, "n_global", 0) or 0) > 0
        self.input_names = ["x", "pos", "mask"] + (["g"] if self.with_g else [])
        self.output_names = list(output_names)

    def forward(self, x, pos, mask, g=None):
        batch = {"x": x, "pos": pos, "mask": mask}
        if g is not None:
            batch["g"] = g
        out = self.model(batch)
        return tuple(out[k] for k in self.output_names)


class DenseExport(nn.Module):
    """``(img_<section>...) -> tuple`` of a dense model's outputs (a :class:`DenseAdapter` or a dense model)."""

    def __init__(self, model: nn.Module, sections: list[str], output_names: list[str]):
        super().__init__()
        self.model = model
        self.sections = list(sections)
        self.input_names = [f"img_{s}" for s in self.sections]
        self.output_names = list(output_names)

    def forward(self, *images):
        out = self.model({f"img:{s}": t for s, t in zip(self.sections, images)})
        return tuple(out[k] for k in self.output_names)


def _dense_core(model):
    return getattr(model, "model", model) if not hasattr(model, "specs") else model


def example_inputs(model: nn.Module, batch: int = 2, n_points: int | None = None, seed: int = 0) -> dict:
    """Random inputs of the wrapper of ``model`` (name -> tensor); point models get ``n_points`` points per event
    (default ``k + 3`` for a DGCNN, else 8) with the last event padded by half (one real point at least)."""
    gen = torch.Generator().manual_seed(seed)
    core = _dense_core(model)
    if hasattr(core, "specs"):  # dense
        return {f"img_{name}": torch.rand((batch, *shape), generator=gen) * 0.1 for name, shape in core.specs}
    n = n_points or (int(getattr(model, "k", 5)) + 3)
    f = int(model.in_channels)
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[-1, max(1, n // 2):] = False  # at least one real point per event
    out = {"x": torch.randn(batch, n, f, generator=gen), "pos": torch.randn(batch, n, 3, generator=gen) * 50.0,
           "mask": mask}
    if int(getattr(model, "n_global", 0) or 0) > 0:
        out["g"] = torch.rand(batch, int(model.n_global), generator=gen) * 50.0
    return out


def wrap_for_export(model: nn.Module) -> tuple[nn.Module, dict]:
    """The wrapper of ``model`` (eval mode) and example inputs; outputs named after the model's tensor outputs."""
    model = model.eval()
    ex = example_inputs(model)
    core = _dense_core(model)
    with torch.no_grad(), export_friendly():
        if hasattr(core, "specs"):
            out = model({k.replace("img_", "img:", 1): v for k, v in ex.items()})
        else:
            out = model(ex)
    names = sorted(k for k, v in out.items() if torch.is_tensor(v))
    if hasattr(core, "specs"):
        return DenseExport(model, [n for n, _ in core.specs], names).eval(), ex
    return PointExport(model, names).eval(), ex


def _dynamic_shapes(wrapper, ex: dict) -> dict:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    if isinstance(wrapper, DenseExport):
        return {"images": tuple({0: batch} for _ in wrapper.input_names)}
    points = torch.export.Dim("points", min=1, max=1 << 16)
    shapes = {"x": {0: batch, 1: points}, "pos": {0: batch, 1: points}, "mask": {0: batch, 1: points}}
    if "g" in ex:
        shapes["g"] = {0: batch}
    return shapes


def export_onnx(model: nn.Module, path, opset: int = 18) -> dict:
    """Write ``model`` as ONNX with dynamic axes; returns ``{"inputs", "outputs", "path"}``."""
    wrapper, ex = wrap_for_export(model)
    args = tuple(ex[k] for k in wrapper.input_names)
    path = Path(path)
    ONNX_TOPK[0] = True
    try:
        with torch.no_grad(), export_friendly(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes=_dynamic_shapes(wrapper, ex),
                                     input_names=wrapper.input_names, output_names=wrapper.output_names,
                                     opset_version=opset, verbose=False, report=False)
    finally:
        ONNX_TOPK[0] = False
    prog.save(str(path))
    return {"inputs": wrapper.input_names, "outputs": wrapper.output_names, "path": str(path)}


def export_torchscript(model: nn.Module, path, check_shapes=((3, 5), (1, 40))) -> dict:
    """Write ``model`` as TorchScript (``torch.jit.trace``); the traced module is run on the ``check_shapes``
    (batch, points) before saving and must reproduce the eager outputs there (1e-4)."""
    wrapper, ex = wrap_for_export(model)
    args = tuple(ex[k] for k in wrapper.input_names)
    with torch.no_grad(), export_friendly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, args, check_trace=False, strict=False)
        for b, n in check_shapes:
            core = _dense_core(model)
            other = example_inputs(model, batch=b, n_points=None if hasattr(core, "specs") else n, seed=b * 100 + n)
            other_args = tuple(other[k] for k in wrapper.input_names)
            got, want = traced(*other_args), wrapper(*other_args)
            for name, a, w in zip(wrapper.output_names, got, want):
                if a.shape != w.shape or float((a - w).abs().max()) > 1e-4:
                    raise RuntimeError(f"export_torchscript: the traced graph differs from the model for output "
                                       f"{name!r} at batch {b}, {n} points (shape {tuple(a.shape)} vs "
                                       f"{tuple(w.shape)}); this model cannot be traced with dynamic shapes")
    traced.save(str(path))
    return {"inputs": wrapper.input_names, "outputs": wrapper.output_names, "path": str(path)}
