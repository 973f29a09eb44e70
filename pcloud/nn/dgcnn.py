"""Dynamic Graph CNN for padded calorimeter point clouds (Wang et al., ACM TOG 2019, arXiv:1801.07829).

Stacked :class:`~pcloud.nn.edgeconv.EdgeConv` layers; the kNN graph is rebuilt before every layer in the
feature space of that layer's input ("dynamic" graph, paper Sec. 3.1): the first graph is built on the
coordinates ``pos`` (or on the input features ``x``), later ones on learned features. The outputs of all
EdgeConv layers are concatenated (skip connections), embedded by a shared MLP, pooled over the real points
(masked max and/or mean) and fed to the same heads as :class:`~pcloud.nn.pointnet.PointNet`
(:class:`~pcloud.nn.heads.GlobalHead`, :class:`~pcloud.nn.heads.SegHead`). kNN is the pure-torch
:func:`~pcloud.nn.knn.knn` (self excluded, padding never a neighbour).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .edgeconv import EdgeConv
from .heads import GlobalHead, PointCloudModel, SegHead
from .layers import MaskedMLP, exporting, pooled_dim, reset_children
from .knn import knn, knn_dense
from .ragged import ragged_knn

__all__ = ["DGCNN"]


class DGCNN(PointCloudModel):
    """DGCNN with classification / regression / energy-skip / segmentation heads.

    Parameters (those shared with :class:`~pcloud.nn.pointnet.PointNet` have the same meaning)
    ----------
    in_channels : per-point features ``F`` in ``batch["x"]``.
    k : neighbours per point.
    edge_channels : output width of each EdgeConv layer (DGCNN classification: 64, 64, 128, 256).
    edge_hidden : hidden widths inside each EdgeConv MLP (default none: one linear layer per EdgeConv).
    emb_dim : width of the shared MLP applied to the concatenated EdgeConv outputs before pooling.
    graph_on : "pos" (first kNN on ``batch["pos"]``, mm) or "x" (on the input features).
    dynamic : rebuild the graph in feature space before every layer (True) or reuse the first graph.
    use_pos : also concatenate ``pos / pos_scale_mm`` to the input features.
    aggr : EdgeConv aggregation, "max" or "mean".
    knn_block_size : query block of the kNN (memory bound ``B * block * N``); None = automatic.
    """

    def __init__(self, in_channels: int, n_classes: int = 0, n_targets: int = 0, n_seg_classes: int = 0,
                 n_global: int = 0, energy_columns: Sequence[int] = (), g_scale: Sequence[float] | float | None = None,
                 energy_scale_gev: float = 100.0, k: int = 16, edge_channels: Sequence[int] = (64, 64, 128),
                 edge_hidden: Sequence[int] = (), emb_dim: int = 256, graph_on: str = "pos", dynamic: bool = True,
                 use_pos: bool = False, pos_scale_mm: float = 1.0, aggr: str = "max", pooling: str = "max+mean",
                 head_hidden: Sequence[int] = (256, 128), seg_hidden: Sequence[int] = (256, 128),
                 seg_soft: bool = False, norm: str | None = "batch", act: str = "leaky_relu", dropout: float = 0.0,
                 knn_block_size: int | None = None):
        super().__init__()
        if graph_on not in ("pos", "x"):
            raise ValueError(f"DGCNN: graph_on must be 'pos' or 'x', found {graph_on!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"DGCNN: k must be a positive int, found {k!r}")
        if not edge_channels:
            raise ValueError("DGCNN: edge_channels must list at least one EdgeConv width")
        if pos_scale_mm <= 0:
            raise ValueError(f"DGCNN: pos_scale_mm must be > 0, found {pos_scale_mm}")
        self.in_channels, self.n_global = int(in_channels), int(n_global)
        self.uses_pos = bool(use_pos) or graph_on == "pos"
        self.use_pos, self.graph_on, self.dynamic = bool(use_pos), graph_on, bool(dynamic)
        self.k, self.pos_scale_mm, self.pooling, self.knn_block_size = k, float(pos_scale_mm), pooling, knn_block_size
        d_in = self.in_channels + (3 if use_pos else 0)
        if d_in < 1:
            raise ValueError(f"DGCNN: no input features (in_channels={in_channels}, use_pos={use_pos})")
        widths = [d_in, *edge_channels]
        self.convs = nn.ModuleList(EdgeConv(a, b, edge_hidden, aggr, norm, act)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.embed = MaskedMLP([sum(edge_channels), emb_dim], norm, act)
        d_pool = pooled_dim(emb_dim, pooling)
        self.head = GlobalHead(d_pool, n_classes, n_targets, n_global, g_scale, energy_columns, energy_scale_gev,
                               head_hidden, norm, act, dropout)
        self.seg = (SegHead(sum(edge_channels) + emb_dim, d_pool, n_seg_classes, seg_hidden, norm, act, dropout,
                            seg_soft) if n_seg_classes > 0 else None)

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, batch) -> dict[str, Tensor]:
        if self.is_ragged(batch):
            return self._forward_ragged(batch)
        x, pos, mask, g = self.unpack(batch)
        if self.use_pos:
            x = torch.cat([x, (pos / self.pos_scale_mm).to(x.dtype)], dim=-1)
        graph_feat = pos if self.graph_on == "pos" else x
        h, outs = x, []
        idx = valid = None
        for i, conv in enumerate(self.convs):
            if i == 0 or self.dynamic:
                feat = graph_feat if i == 0 else h
                if exporting():  # one (B, N, N) block, no shape-dependent Python (pcloud.nn.layers.export_friendly)
                    idx, valid = knn_dense(feat, self.k, mask, precise=True)
                else:  # eval: float64 ranking of learned features, as the exported graph (pcloud.nn.knn.sq_dist)
                    idx, valid = knn(feat, self.k, mask, self.knn_block_size, return_valid=True,
                                     precise=not self.training)
            h = conv(h, idx, mask, valid)
            outs.append(h)
        return self.padded_outputs(torch.cat(outs, dim=-1), mask, g)

    def _forward_ragged(self, batch) -> dict[str, Tensor]:
        """The ragged path (:mod:`pcloud.nn.ragged`): EdgeConvs on ``(P, C)`` rows, kNN per group of events of
        similar size (:func:`~pcloud.nn.ragged.ragged_knn`), segment pooling."""
        x, pos, lay, g = self.unpack_ragged(batch)
        if self.use_pos:
            x = torch.cat([x, (pos / self.pos_scale_mm).to(x.dtype)], dim=-1)
        graph_feat = pos if self.graph_on == "pos" else x
        h, outs = x, []
        nbr = valid = None
        for i, conv in enumerate(self.convs):
            if i == 0 or self.dynamic:
                nbr, valid = ragged_knn(graph_feat if i == 0 else h, lay, self.k, precise=not self.training)
            h = conv.forward_flat(h, nbr, valid)
            outs.append(h)
        return self.ragged_outputs(torch.cat(outs, dim=-1), lay, g)
