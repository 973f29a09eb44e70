"""``pcloud export BUNDLE --format onnx|torchscript -o FILE``: a model bundle as one self-contained graph file.

Every learned model of a bundle exports: point models (PointNet, DGCNN with its kNN), the dense CNNs and the
particle-flow segmenters (their PointNet/DGCNN with the segmentation head). Inputs, outputs and the
export-friendly layer paths are those of :mod:`pcloud.nn.export`: batch and point axes are dynamic, clouds with
fewer points than the DGCNN's ``k`` work.

What the graph does *not* hold is the preprocessing: point features, truncation to ``max_points`` (highest
energy first) and the normaliser, or the images of the dense models. The bundle's ``bundle.json`` travels with the
file (ONNX ``metadata_props["pcloud_bundle"]``, TorchScript extra file ``bundle.json``) so a consumer can
reproduce them (:meth:`pcloud.pipeline.bundle.Bundle.batcher` does it in Python).

Needs the ``export`` extra for ONNX (``onnx``, ``onnxscript``; ``onnxruntime`` to run the result).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .core.atomic import atomic_output

FORMATS = ("onnx", "torchscript")


def bundle_model(bundle) -> tuple[torch.nn.Module, dict]:
    """The model of a bundle folder (point, dense or particle-flow segmenter), eval mode on CPU, and its
    ``bundle.json``."""
    from .pipeline.bundle import load_bundle, read_bundle_meta

    meta = read_bundle_meta(bundle)
    if meta["task"] == "pflow":
        from .pipeline.pflow import load_segmenter

        seg, meta = load_segmenter(bundle)
        return seg.model.eval(), meta
    b = load_bundle(bundle)
    return b.model.eval(), b.meta


def export_model(model: torch.nn.Module, fmt: str, output, meta: dict | None = None) -> dict:
    """Write ``model`` as ``fmt`` (``onnx`` or ``torchscript``) into ``output`` (atomically), with ``meta``
    (the bundle's JSON) embedded; returns the input and output names, the file and the export time."""
    from .nn.export import export_onnx, export_torchscript

    if fmt not in FORMATS:
        raise ValueError(f"export: format must be one of {FORMATS}, found {fmt!r}")
    output = Path(output)
    t0 = time.perf_counter()
    text = json.dumps(meta or {}, default=str)
    with atomic_output(output) as tmp:
        if fmt == "onnx":
            try:
                import onnx
            except ImportError as err:
                raise ImportError("pcloud export --format onnx needs the export extra: pip install "
                                  "'pcloud[export]' (onnx, onnxscript, onnxruntime)") from err
            info = export_onnx(model, tmp)
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = "pcloud_bundle", text
            onnx.save(proto, str(tmp))
        else:
            info = export_torchscript(model, tmp)
            ts = torch.jit.load(str(tmp))
            torch.jit.save(ts, str(tmp), _extra_files={"bundle.json": text})
    info.update(path=str(output), seconds=time.perf_counter() - t0, format=fmt)
    return info


def export_bundle(bundle, fmt: str, output) -> dict:
    """``pcloud export``: the model of ``bundle`` written as ``fmt`` to ``output``."""
    model, meta = bundle_model(bundle)
    return export_model(model, fmt, output, meta)
