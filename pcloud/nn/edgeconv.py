"""EdgeConv operator on padded point clouds (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds",
ACM TOG 2019, arXiv:1801.07829, Eq. 7-8).

For every real point ``i`` with neighbour indices ``j in N(i)`` (from :func:`pcloud.nn.knn.knn`)::

    x'_i = AGG_{j in N(i)}  h_Theta( [x_i, x_j - x_i] )

where ``h_Theta`` is a shared MLP and ``AGG`` is max (paper default) or mean.

Implementation note: the first layer of ``h_Theta`` is linear in the concatenation, so
``W [x_i, x_j - x_i] + b = (W_a - W_b) x_i + W_b x_j + b`` with ``W = [W_a | W_b]``: the two products are
computed once per point and only their sum is formed per edge, which avoids materialising the
``(B, N, k, 2C)`` edge-feature tensor. The remaining MLP layers run on the edges of real points only (so
batch-norm statistics ignore padding), and padded points output zeros.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .heads import _activation, _norm, make_mlp_layers, reset_children

__all__ = ["EdgeConv"]


class EdgeConv(nn.Module):
    """EdgeConv ``(B, N, C_in) -> (B, N, C_out)`` with a shared edge MLP ``2 C_in -> hidden... -> C_out``.

    Parameters
    ----------
    in_channels, out_channels : feature sizes.
    hidden : sizes of the intermediate MLP layers (DGCNN uses none for classification, one for segmentation).
    aggr : "max" or "mean" over the ``k`` neighbours. "mean" averages over the distinct real neighbours
        (the ``valid`` slots of :func:`knn`), or over all slots (self-loops) for an isolated point.
    norm, act : normalisation ("batch", "layer" or None) and activation after every layer.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: Sequence[int] = (), aggr: str = "max",
                 norm: str | None = "batch", act: str = "leaky_relu"):
        super().__init__()
        if aggr not in ("max", "mean"):
            raise ValueError(f"EdgeConv: aggr must be 'max' or 'mean', found {aggr!r}")
        self.in_channels, self.out_channels, self.aggr = int(in_channels), int(out_channels), aggr
        dims = [2 * self.in_channels, *hidden, self.out_channels]
        self.lin0 = nn.Linear(dims[0], dims[1], bias=norm != "batch")
        tail: list[nn.Module] = [m for m in (_norm(norm, dims[1]), _activation(act)) if m is not None]
        if len(dims) > 2:
            tail += make_mlp_layers(dims[1:], norm, act)
        self.tail = nn.Sequential(*tail)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, x: Tensor, idx: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        """``x (B, N, C_in)``, ``idx (B, N, k)`` int64 neighbour indices, ``mask (B, N)`` bool, optional
        ``valid (B, N, k)`` bool (needed only for exact "mean" aggregation) -> ``(B, N, C_out)``."""
        C = self.in_channels
        w_a, w_b = self.lin0.weight[:, :C], self.lin0.weight[:, C:]
        centre = torch.nn.functional.linear(x, w_a - w_b, self.lin0.bias)  # (B, N, H)
        nbr = torch.nn.functional.linear(x, w_b)  # (B, N, H)
        bi, ii = mask.nonzero(as_tuple=True)  # real points, (M,)
        nb = idx[bi, ii]  # (M, k)
        e = centre[bi, ii].unsqueeze(1) + nbr[bi.unsqueeze(1), nb]  # (M, k, H)
        M, k, H = e.shape
        h = self.tail(e.reshape(M * k, H)).reshape(M, k, -1)
        if self.aggr == "max":
            agg = h.amax(dim=1)
        else:
            w = torch.ones(M, k, dtype=h.dtype, device=h.device) if valid is None else valid[bi, ii].to(h.dtype)
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
            agg = (h * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True)
        out = agg.new_zeros(mask.shape + (agg.shape[-1],))
        out[bi, ii] = agg
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, aggr={self.aggr!r}"
