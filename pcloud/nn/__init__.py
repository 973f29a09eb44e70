"""Neural networks for calorimeter point clouds: pure-torch kNN, EdgeConv, PointNet, DGCNN, a point transformer with
pairwise attention bias (:mod:`~pcloud.nn.transformer`), GravNet (:mod:`~pcloud.nn.gravnet`), a PointNet that passes
messages over the calorimeter's cell graph (:mod:`~pcloud.nn.cellgraph`), shared heads (joint ID + energy regression
with the energy skip connection, segmentation) and the model registry.

Inputs are padded batches ``{"x": (B, N, F), "pos": (B, N, 3) mm, "mask": (B, N) bool, "g": (B, G)}``;
or ragged batches ``{"x": (P, F), "pos": (P, 3), "batch": (P,), "g": (B, G)}`` (:mod:`~pcloud.nn.ragged`);
models return dicts of outputs (``"logits"``, ``"energy"`` GeV, ``"regression"``, ``"seg_logits"``, ...).
"""
from .cellgraph import CellGraphNet
from .dgcnn import DGCNN
from .gravnet import GravNet, GravNetConv
from .edgeconv import EdgeConv
from .heads import GlobalHead, PointCloudModel, SegHead
from .layers import MaskedMLP, masked_pool
from .losses import MultiTaskLoss
from .knn import knn, knn_graph
from .pointnet import PointNet, TNet
from .ragged import padded_to_ragged, ragged_knn, segment_pool
from .transformer import PointTransformer
from .registry import MODEL_REGISTRY, build_model, list_models, register_model

__all__ = ["knn", "knn_graph", "EdgeConv", "PointNet", "TNet", "DGCNN", "PointTransformer", "GravNet", "GravNetConv",
           "CellGraphNet", "padded_to_ragged", "ragged_knn", "segment_pool", "GlobalHead", "SegHead", "MaskedMLP",
           "MultiTaskLoss", "PointCloudModel", "masked_pool", "MODEL_REGISTRY", "build_model", "list_models",
           "register_model"]
