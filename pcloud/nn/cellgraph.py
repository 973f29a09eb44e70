"""PointNet with message passing over the calorimeter's own cell adjacency ("cell-graph" model).

PointNet (Qi et al., CVPR 2017, arXiv:1612.00593) sees every point alone until the global pooling; DGCNN and GravNet
(:mod:`pcloud.nn.dgcnn`, :mod:`pcloud.nn.gravnet`) learn a neighbourhood by a kNN search in coordinate or feature
space, which costs an ``N x N`` distance block per cloud and layer. A calorimeter already has a neighbourhood: the
cells that touch a cell in its layer and the overlapping cells of the layers in front and behind (the "all3D"
neighbours of ATLAS topo-clustering, Eur. Phys. J. C 77 (2017) 490, sec. 4; :func:`pcloud.pflow.topocluster.
cell_neighbours`). This model passes messages along that fixed graph, restricted to the cells of the cloud
(:func:`pcloud.pflow.clouds.cloud_cell_graph`): the first ``graph_layers`` layers of the shared per-point MLP become

    h_i' = act(norm(W [h_i, mean_{j in N_r(i)} h_j, max_{j in N_r(i)} h_j for r in relations]))

with separate mean and max aggregators (GraphSAGE, Hamilton et al., NeurIPS 2017, arXiv:1706.02216, eq. 1 with the
mean and pooling aggregators) per relation ``r`` (relational graph convolution, Schlichtkrull et al., ESWC 2018,
arXiv:1703.06103): neighbours in the same layer, in the layer in front (smaller layer index) and in the layer behind.
Splitting by relation keeps the longitudinal direction that separates an early, compact electromagnetic shower from
a hadron that crosses the EM layers as a minimum-ionising particle. A point without neighbours in a relation gets
zeros there (track points have no cell neighbours and only see the cells through the pooled vector). The remaining
layers, pooling, event head and segmentation head are PointNet's.

Batch keys beyond PointNet's: ``"nbr"`` neighbour indices (ragged ``(P, K)``: flat point indices; padded
``(B, N, K)``: slots within the event) with -1 for none, and ``"layer"`` the calorimeter layer index per point
(ragged ``(P,)``, padded ``(B, N)``). :meth:`pcloud.pflow.learned.FocalTrackSegmenter.tensors` writes them for this
model from the clouds' ``cell_nbr`` field. Cost per graph layer: one gather and two segment reductions over the ``E``
edges (about 7 per cell in the ATLAS-like geometry), linear in the number of points.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import MaskedMLP
from .pointnet import PointNet
from .ragged import pad_point_outputs, padded_to_ragged

__all__ = ["CellGraphNet", "RELATIONS", "cell_graph_edges", "relational_aggregate"]

#: edge relations: neighbour in the same layer, in the layer in front (smaller index), in the layer behind
RELATIONS = ("same", "inner", "outer")


def cell_graph_edges(nbr: Tensor, layer: Tensor, n_rel: int = len(RELATIONS)) -> tuple[Tensor, Tensor, Tensor]:
    """Edge list of a ragged batch: ``nbr (P, K)`` flat neighbour indices (-1: none), ``layer (P,)`` ->
    ``(dst, rel, lengths)``: the neighbour of every edge, its relation (an index into :data:`RELATIONS`: 0 same
    layer, 1 the neighbour lies in front, 2 behind), with the edges sorted by (point, relation), and ``lengths
    (P * n_rel,)`` the number of edges of each (point, relation) segment. Messages flow from ``dst`` to the point
    that owns the segment."""
    if nbr.dim() != 2:
        raise ValueError(f"cell graph: 'nbr' must be (P, K) neighbour indices, found {tuple(nbr.shape)}")
    if layer.shape != (nbr.shape[0],):
        raise ValueError(f"cell graph: 'layer' must be (P,) = ({nbr.shape[0]},), found {tuple(layer.shape)}")
    P = nbr.shape[0]
    nbr = nbr.long()
    valid = nbr >= 0
    src = torch.arange(P, device=nbr.device).unsqueeze(1).expand_as(nbr)[valid]
    dst = nbr[valid]
    if dst.numel() and int(dst.max()) >= P:
        raise ValueError(f"cell graph: neighbour index {int(dst.max())} outside the batch's {P} points")
    d = layer.long()[dst] - layer.long()[src]
    rel = torch.where(d == 0, 0, torch.where(d < 0, 1, 2))
    seg = src * n_rel + rel
    order = torch.argsort(seg, stable=True)
    return dst[order], rel[order], torch.bincount(seg, minlength=P * n_rel)


def relational_aggregate(h: Tensor, dst: Tensor, lengths: Tensor, n_rel: int = len(RELATIONS)) -> Tensor:
    """``(P, C) -> (P, 2 * n_rel * C)``: per relation the mean and the max of ``h[dst]`` over the edges of each point
    (the sorted segments of :func:`cell_graph_edges`; zeros where a point has no neighbour in that relation),
    concatenated as [mean_0, max_0, mean_1, max_1, ...]. Segment reductions (``torch.segment_reduce``) over the
    sorted edges: about half the time of a scatter with ``amax`` for forward plus backward on CPU."""
    P, C = h.shape
    if lengths.shape != (P * n_rel,):
        raise ValueError(f"cell graph: lengths must be ({P * n_rel},), found {tuple(lengths.shape)}")
    msg = h.index_select(0, dst)
    s = torch.segment_reduce(msg, "sum", lengths=lengths, unsafe=True)
    mean = s / lengths.clamp_min(1).to(h.dtype).unsqueeze(1)
    mx = torch.segment_reduce(msg, "max", lengths=lengths, unsafe=True)
    mx = torch.where((lengths > 0).unsqueeze(1), mx, torch.zeros((), dtype=h.dtype, device=h.device))
    return torch.stack([mean, mx], dim=1).view(P, n_rel, 2, C).reshape(P, 2 * n_rel * C)


class CellGraphNet(PointNet):
    """PointNet whose first ``graph_layers`` shared layers aggregate over the cell graph (module docstring).

    Parameters as :class:`~pcloud.nn.pointnet.PointNet` (``channels``, ``pooling``, heads, ``norm``, ``act``,
    ``dropout``; no ``pos`` input: the graph carries the geometry), plus ``graph_layers``: how many of the shared
    layers pass messages (0 = plain PointNet; at most ``len(channels)``).
    """

    def __init__(self, in_channels: int, n_classes: int = 0, n_targets: int = 0, n_seg_classes: int = 0,
                 n_global: int = 0, energy_columns: Sequence[int] = (), g_scale: Sequence[float] | float | None = None,
                 energy_scale_gev: float = 100.0, channels: Sequence[int] = (64, 128, 128), graph_layers: int = 2,
                 pooling: str = "max", head_hidden: Sequence[int] = (256, 128),
                 seg_hidden: Sequence[int] = (256, 128), seg_soft: bool = False, norm: str | None = "batch",
                 act: str = "relu", dropout: float = 0.0):
        if not 0 <= int(graph_layers) <= len(channels):
            raise ValueError(f"CellGraphNet: graph_layers must be in [0, {len(channels)}], found {graph_layers}")
        super().__init__(in_channels, n_classes, n_targets, n_seg_classes, n_global, energy_columns, g_scale,
                         energy_scale_gev, channels=channels, pooling=pooling, head_hidden=head_hidden,
                         seg_hidden=seg_hidden, seg_soft=seg_soft, norm=norm, act=act, dropout=dropout)
        self.graph_layers = int(graph_layers)
        widths = [self.in_channels, *channels]
        n_in = [a * (1 + 2 * len(RELATIONS)) if i < self.graph_layers else a for i, a in enumerate(widths[:-1])]
        self.layers = nn.ModuleList(MaskedMLP([a, b], norm, act) for a, b in zip(n_in, widths[1:]))

    def forward(self, batch) -> dict[str, Tensor]:
        if self.is_ragged(batch):
            return self._forward_ragged(batch)
        x, _, mask, _ = self.unpack(batch)  # validates x / mask / g; the graph keys are checked on the ragged path
        return pad_point_outputs(self._forward_ragged(padded_to_ragged({**batch, "x": x, "mask": mask})), mask)

    def _shared_layers_ragged(self, x: Tensor, batch) -> tuple[Tensor, list[Tensor]]:
        if self.graph_layers:
            for key in ("nbr", "layer"):
                if batch.get(key) is None:
                    raise KeyError(f"CellGraphNet: batch has no {key!r} (cell graph, see pcloud.nn.cellgraph); keys "
                                   f"found: {sorted(batch)}")
            dst, _, lengths = cell_graph_edges(batch["nbr"], batch["layer"])
        h, local = x, []
        for i, layer in enumerate(self.layers):
            if i < self.graph_layers:
                h = torch.cat([h, relational_aggregate(h, dst, lengths)], dim=-1)
            h = layer(h, None)
            local.append(h)
        return h, local
