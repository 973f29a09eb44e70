"""GravNet for calorimeter point clouds (Qasim, Kieseler, Iiyama, Pierini, "Learning representations of irregular
particle-detector geometry with distance-weighted graph networks", Eur. Phys. J. C 79 (2019) 608,
arXiv:1902.07987).

A GravNet layer (paper Sec. 3.2, Fig. 2) maps every point's features ``h_i`` to

* coordinates ``s_i = W_s h_i + b_s`` in a learned space of ``space_dims`` dimensions (4 in the paper), and
* features to propagate ``f_i = W_f h_i + b_f`` (``prop_dims``, 22 in the paper);

it finds the ``k`` nearest neighbours of each point *in the learned space* (per event; the graph is rebuilt in every
layer and never fixed by the detector geometry), weights the neighbours' features by a potential of their distance,
``V(d_ij) = exp(-d_ij^2)`` (the paper's Gaussian potential; gradients flow into ``s`` through ``d_ij``, the
neighbour *selection* itself has no gradient), aggregates them by mean and max over the neighbours and outputs
``W_o [h_i, mean_j V f_j, max_j V f_j]``.

The model stacks ``blocks`` GravNet blocks as the paper's clustering model does (Sec. 4.2): each block concatenates
the per-event mean of its input to every point ("global exchange"), applies a shared MLP, a GravNet layer and a
normalisation; the outputs of all blocks are concatenated (skip connections) and embedded by a shared MLP, then
pooled for :class:`~pcloud.nn.heads.GlobalHead` (ID, regression, skip-connected energy) and, per point, fed with
the pooled vector to :class:`~pcloud.nn.heads.SegHead`.

Everything runs on the real points only (``x[mask]`` rows, batch-norm statistics of real points). The neighbour
search (``torch.topk``: learned coordinates have no exact ties) is :func:`pcloud.nn.knn.knn` on the padded learned
coordinates in the padded path and
:func:`pcloud.nn.ragged.ragged_knn` (events grouped by size) in the ragged path (:mod:`pcloud.nn.ragged`); both
exclude the point itself and padding, and the repeated slots of events with fewer than ``k + 1`` points do not enter
the mean (``valid`` of :func:`~pcloud.nn.knn.knn`) nor, as neutral repeats, change the max. In eval mode the padded
path ranks neighbours in float64 (as DGCNN does), and inside :func:`pcloud.nn.layers.export_friendly` it runs on
every slot with one ``(B, N, N)`` distance block (:func:`~pcloud.nn.knn.knn_dense`), so ONNX / TorchScript exports
keep the batch and point axes dynamic and choose the same neighbours as torch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .heads import GlobalHead, PointCloudModel, SegHead
from .knn import knn, knn_dense
from .layers import MaskedMLP, exporting, masked_pool, norm_layer, pooled_dim, reset_children
from .ragged import RaggedLayout, ragged_knn, ragged_layout, segment_pool

__all__ = ["GravNetConv", "GravNet"]


class GravNetConv(nn.Module):
    """One GravNet layer on ragged rows: ``h (P, C_in) -> (P, C_out)`` (module docstring).

    ``forward(h, neighbours)`` takes a callable ``neighbours(s) -> (nbr (P, k), valid (P, k))`` that finds the
    neighbours of the learned coordinates ``s (P, space_dims)`` among the points of the same event (flat indices).
    """

    def __init__(self, in_channels: int, out_channels: int, space_dims: int = 4, prop_dims: int = 22,
                 k: int = 16, potential_scale: float = 1.0):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"GravNetConv: k must be a positive int, found {k!r}")
        if space_dims < 1 or prop_dims < 1:
            raise ValueError(f"GravNetConv: space_dims and prop_dims must be >= 1, found {space_dims}, {prop_dims}")
        if potential_scale <= 0:
            raise ValueError(f"GravNetConv: potential_scale must be > 0, found {potential_scale}")
        self.k, self.potential_scale = k, float(potential_scale)
        self.lin_s = nn.Linear(in_channels, space_dims)
        self.lin_f = nn.Linear(in_channels, prop_dims)
        self.lin_o = nn.Linear(in_channels + 2 * prop_dims, out_channels)
        self.out_channels = int(out_channels)

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, h: Tensor, neighbours) -> tuple[Tensor, Tensor]:
        """Returns ``(output (P, C_out), s (P, space_dims))``."""
        s = self.lin_s(h)
        f = self.lin_f(h)
        nbr, valid = neighbours(s.detach())
        d2 = (s.unsqueeze(1) - s[nbr]).pow(2).sum(-1)  # (P, k), differentiable in s
        w = torch.exp(-self.potential_scale * d2) * valid.to(d2.dtype)
        m = f[nbr] * w.unsqueeze(-1)  # (P, k, F)
        n_valid = valid.sum(1, keepdim=True)
        mean = m.sum(1) / n_valid.clamp_min(1).to(m.dtype)
        mx = m.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(1)
        mx = torch.where(n_valid > 0, mx, torch.zeros_like(mx))  # an isolated point: nothing to aggregate
        return self.lin_o(torch.cat([h, mean, mx], dim=-1)), s


class GravNet(PointCloudModel):
    """GravNet with classification / regression / energy-skip / segmentation heads (module docstring).

    Parameters (those shared with :class:`~pcloud.nn.pointnet.PointNet` have the same meaning)
    ----------
    blocks : number of GravNet blocks (paper: 4).
    dense : widths of the shared MLP in front of every GravNet layer (paper: three layers of 64).
    out_dims : output width of every GravNet layer (paper: 48).
    space_dims, prop_dims, k : learned-space dimensions, propagated features and neighbours (paper: 4, 22, 40).
    potential_scale : ``a`` in ``V(d) = exp(-a d^2)`` (paper: 1).
    emb_dim : width of the shared MLP on the concatenated block outputs before pooling.
    use_pos : concatenate ``batch["pos"] / pos_scale_mm`` to the input features.

    ``forward(batch) -> dict``: the configured head outputs plus ``"global"`` (B, D) pooled features. Padded
    (``x``, ``mask``) or ragged (``x``, ``batch``; :mod:`pcloud.nn.ragged`) batches.
    """

    def __init__(self, in_channels: int, n_classes: int = 0, n_targets: int = 0, n_seg_classes: int = 0,
                 n_global: int = 0, energy_columns: Sequence[int] = (), g_scale: Sequence[float] | float | None = None,
                 energy_scale_gev: float = 100.0, use_pos: bool = False, pos_scale_mm: float = 1.0, blocks: int = 4,
                 dense: Sequence[int] = (64, 64), out_dims: int = 48, space_dims: int = 4, prop_dims: int = 22,
                 k: int = 16, potential_scale: float = 1.0, emb_dim: int = 128, pooling: str = "max+mean",
                 head_hidden: Sequence[int] = (256, 128), seg_hidden: Sequence[int] = (256, 128),
                 seg_soft: bool = False, norm: str | None = "batch", act: str = "elu", dropout: float = 0.0):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"GravNet: blocks must be >= 1, found {blocks}")
        if pos_scale_mm <= 0:
            raise ValueError(f"GravNet: pos_scale_mm must be > 0, found {pos_scale_mm}")
        act_name = act
        self.in_channels, self.n_global, self.uses_pos = int(in_channels), int(n_global), bool(use_pos)
        self.pos_scale_mm, self.pooling, self.k = float(pos_scale_mm), pooling, int(k)
        d_in = self.in_channels + (3 if use_pos else 0)
        if d_in < 1:
            raise ValueError(f"GravNet: no input features (in_channels={in_channels}, use_pos={use_pos})")
        self.mlps, self.convs, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = d_in
        for _ in range(blocks):
            self.mlps.append(MaskedMLP([2 * c, *dense], norm, act_name) if dense else nn.Identity())
            c_mlp = dense[-1] if dense else 2 * c
            self.convs.append(GravNetConv(c_mlp, out_dims, space_dims, prop_dims, k, potential_scale))
            self.norms.append(norm_layer(norm, out_dims) or nn.Identity())
            c = out_dims
        local_dim = blocks * out_dims
        self.embed = MaskedMLP([local_dim, emb_dim], norm, act_name)
        d_pool = pooled_dim(emb_dim, pooling)
        self.head = GlobalHead(d_pool, n_classes, n_targets, n_global, g_scale, energy_columns, energy_scale_gev,
                               head_hidden, norm, act_name, dropout)
        self.seg = (SegHead(local_dim + emb_dim, d_pool, n_seg_classes, seg_hidden, norm, act_name, dropout, seg_soft)
                    if n_seg_classes > 0 else None)

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, batch) -> dict[str, Tensor]:
        if self.is_ragged(batch):
            x, pos, lay, g = self.unpack_ragged(batch)
            return self._trunk(x, pos, lay, g, lambda s: ragged_knn(s, lay, self.k, exact_ties=False))
        x, pos, mask, g = self.unpack(batch)
        if exporting():
            return self._forward_dense(x, pos, mask, g)
        bi, ii = mask.nonzero(as_tuple=True)
        lay = ragged_layout(bi, mask.shape[0])
        B, N = mask.shape
        base = (bi * N).unsqueeze(1)
        row_of_slot = torch.zeros(B * N, dtype=torch.long, device=x.device)
        row_of_slot[bi * N + ii] = torch.arange(bi.numel(), device=x.device)

        def neighbours(s: Tensor) -> tuple[Tensor, Tensor]:  # kNN on the padded learned coordinates
            s_pad = s.new_zeros(B, N, s.shape[-1])
            s_pad[bi, ii] = s
            idx, valid = knn(s_pad, self.k, mask, return_valid=True, exact_ties=False,
                             precise=not self.training)
            return row_of_slot[idx[bi, ii] + base], valid[bi, ii]

        out = self._trunk(x[mask], None if pos is None else pos[mask], lay, g, neighbours)
        for key in ("seg_logits", "seg_fractions"):  # per-point outputs back to (B, N, S), zeros at padding
            if key in out:
                v = out[key]
                pad = v.new_zeros(B, N, v.shape[-1])
                pad[bi, ii] = v
                out[key] = pad
        return out

    def _forward_dense(self, x: Tensor, pos: Tensor | None, mask: Tensor, g: Tensor | None) -> dict[str, Tensor]:
        """Export-friendly eval-mode path: every slot of ``(B, N)`` is a row (padding zeroed after each layer), one
        ``(B, N, N)`` kNN block; equal to the padded path on the real points."""
        if self.training:
            raise RuntimeError("GravNet: the export-friendly path is for eval mode only (call model.eval())")
        if self.uses_pos:
            x = torch.cat([x, (pos / self.pos_scale_mm).to(x.dtype)], dim=-1)
        B, N = mask.shape
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = x * keep
        base = (torch.arange(B, device=x.device) * N).view(-1, 1, 1)

        def neighbours(s: Tensor) -> tuple[Tensor, Tensor]:  # s: (B N, S) rows of every slot
            idx, valid = knn_dense(s.reshape(B, N, -1), self.k, mask, precise=True)
            return (idx + base).reshape(B * N, -1), valid.reshape(B * N, -1)

        h, outs = x, []
        for mlp, conv, norm in zip(self.mlps, self.convs, self.norms):
            ev_mean = masked_pool(h, mask, "mean").unsqueeze(1).expand(-1, N, -1)  # global exchange
            z = torch.cat([h, ev_mean], dim=-1)
            z = mlp(z, mask) if isinstance(mlp, MaskedMLP) else z * keep
            c, _ = conv(z.reshape(B * N, -1), neighbours)
            h = norm(c).reshape(B, N, -1) * keep
            outs.append(h)
        return self.padded_outputs(torch.cat(outs, dim=-1), mask, g)

    def _trunk(self, x: Tensor, pos: Tensor | None, lay: RaggedLayout, g: Tensor | None, neighbours
               ) -> dict[str, Tensor]:
        """Blocks, embedding, pooling and heads on ragged rows (``neighbours``: see :class:`GravNetConv`)."""
        if self.uses_pos:
            x = torch.cat([x, (pos / self.pos_scale_mm).to(x.dtype)], dim=-1)
        h, outs = x, []
        for mlp, conv, norm in zip(self.mlps, self.convs, self.norms):
            ev_mean = segment_pool(h, lay.batch, lay.n_events, "mean")[lay.batch]  # global exchange
            z = torch.cat([h, ev_mean], dim=-1)
            z = mlp(z, None) if isinstance(mlp, MaskedMLP) else z
            h, _ = conv(z, neighbours)
            h = norm(h)
            outs.append(h)
        return self.ragged_outputs(torch.cat(outs, dim=-1), lay, g)
