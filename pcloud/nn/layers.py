"""Building blocks shared by the point-cloud models: activations, norms, per-point MLPs on the real points of a
padded batch, symmetric masked pooling and parameter re-initialisation.

Padded-batch convention (``pcloud.data.batch``): ``x (B, N, F)`` float32, ``mask (B, N)`` bool (True = real
point). Padded entries are never read: per-point MLPs run only on the real rows ``x[mask]`` (so batch-norm
statistics are taken over real points only and padding costs nothing), and pooling fills padding with ``-inf``
(max) or weight 0 (mean).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["activation", "norm_layer", "reset_children", "make_mlp_layers", "MaskedMLP", "masked_pool", "pooled_dim",
           "POOL_MODES", "export_friendly", "exporting"]

POOL_MODES = ("max", "mean", "sum", "max+mean")

_EXPORT = [False]


def exporting() -> bool:
    """True inside :func:`export_friendly`: the layers take their export-friendly path."""
    return _EXPORT[0]


class export_friendly:
    """Context manager: the point models run without data-dependent shapes (``x[mask]``, ``mask.nonzero()``,
    blocked kNN loops), so ``torch.onnx.export`` / ``torch.jit.trace`` see one static graph with dynamic batch and
    point axes. Eval mode only: per-point layers then run on every slot (padding included) and the padding is
    zeroed afterwards, which equals the training path because batch-norm uses its running statistics
    (tested in ``tests/nn/test_export.py``)."""

    def __enter__(self):
        self._prev = _EXPORT[0]
        _EXPORT[0] = True
        return self

    def __exit__(self, *exc):
        _EXPORT[0] = self._prev
        return False


def activation(act: str) -> nn.Module:
    if act == "relu":
        return nn.ReLU()
    if act == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if act == "gelu":
        return nn.GELU()
    if act == "elu":
        return nn.ELU()
    raise ValueError(f"unknown activation {act!r}; expected 'relu', 'leaky_relu', 'gelu' or 'elu'")


def norm_layer(norm: str | None, dim: int) -> nn.Module | None:
    if norm is None or norm == "none":
        return None
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    if norm == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"unknown norm {norm!r}; expected 'batch', 'layer' or None")


def reset_children(module: nn.Module) -> None:
    """Re-initialise ``module``'s sub-modules: each child's own ``reset_parameters`` if it has one (so custom
    initialisations such as zero-initialised output layers are respected), else recurse into it."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_children(child)


def make_mlp_layers(dims: Sequence[int], norm: str | None = "batch", act: str = "relu", dropout: float = 0.0,
                    last_act: bool = True) -> list[nn.Module]:
    """Linear -> norm -> activation (-> dropout) blocks for ``dims[0] -> dims[1] -> ...`` on ``(M, C)`` rows.

    With ``last_act=False`` the last block is a bare Linear (an output layer).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=not (norm == "batch" and (last_act or not last))))
        if last and not last_act:
            break
        n = norm_layer(norm, b)
        if n is not None:
            layers.append(n)
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return layers


class MaskedMLP(nn.Module):
    """Shared per-point MLP applied to the real points only: ``(..., C_in) -> (..., C_out)``, zeros at padding."""

    def __init__(self, dims: Sequence[int], norm: str | None = "batch", act: str = "relu", dropout: float = 0.0,
                 last_act: bool = True):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"MaskedMLP: need at least input and output sizes, found dims={list(dims)}")
        self.out_channels = int(dims[-1])
        self.net = nn.Sequential(*make_mlp_layers(dims, norm, act, dropout, last_act))

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:  # ragged rows (pcloud.nn.ragged): every row is a real point
            return self.net(x)
        if _EXPORT[0]:
            if self.training:
                raise RuntimeError("MaskedMLP: the export-friendly path is for eval mode only (call model.eval())")
            h = self.net(x.reshape(-1, x.shape[-1]))
            return h.reshape(mask.shape + (h.shape[-1],)) * mask.unsqueeze(-1).to(h.dtype)
        h = self.net(x[mask])
        out = h.new_zeros(mask.shape + (h.shape[-1],))
        out[mask] = h
        return out


def pooled_dim(channels: int, mode: str) -> int:
    """Width of :func:`masked_pool`'s output for ``channels`` input channels."""
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling {mode!r}; expected one of {POOL_MODES}")
    return 2 * channels if mode == "max+mean" else channels


def masked_pool(x: Tensor, mask: Tensor, mode: str = "max") -> Tensor:
    """Symmetric pooling over the real points of each event: ``(B, N, C) -> (B, C)`` (``2C`` for "max+mean").

    Padding never contributes: it is filled with ``-inf`` for max and weighted 0 for mean / sum. An event with
    no real point pools to zeros.
    """
    pooled_dim(x.shape[-1], mode)
    m = mask.unsqueeze(-1)
    parts = []
    if mode in ("max", "max+mean"):
        mx = x.masked_fill(~m, float("-inf")).amax(dim=1)
        parts.append(torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx)))
    if mode in ("mean", "sum", "max+mean"):
        s = x.masked_fill(~m, 0.0).sum(dim=1)
        if mode != "sum":
            s = s / mask.sum(1, keepdim=True).clamp_min(1).to(s.dtype)
        parts.append(s)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
