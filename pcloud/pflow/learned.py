"""Learned particle-flow cell segmentation (JetPointNet, seed 002): per focal track and per whole event.

:class:`FocalTrackSegmenter` trains a point-cloud model (:class:`pcloud.nn.PointNet` or :class:`pcloud.nn.DGCNN`
with a segmentation head) on the per-track clouds of :func:`pcloud.pflow.clouds.track_clouds` and predicts, per
CELL point, the fraction of the cell's energy that belongs to the focal track.
:class:`ChargedFractionSegmenter` is the small whole-event variant on :func:`~pcloud.pflow.clouds.event_clouds`:
per cell, the fraction of its energy from particles that have a track (any track).
:class:`OracleSegmenter` returns the true fractions (an upper bound for the inference algorithms).

Targets (``target=``), derived through the schema label policy (:mod:`pcloud.core.schema`)
-------------------------------------------------------------------------------------------
* ``"soft"``: focal energy fraction ``f = e_focal / sum_k max(e_k, 0)`` (truth clipped at 0); 2-class output
  ``[1 - f, f]``, trained with cross-entropy against the fractions; predicted fraction = p(focal).
* ``"binary"``: ``f > binary_threshold`` (default 0.5, strict); 2 classes; predicted fraction = p(focal).
* ``"hard"``: the argmax truth particle mapped to 3 classes: 0 = focal track's particle, 1 = another particle with
  a track ("other charged"), 2 = neutral (particles without a track); predicted fraction = p(class 0).

**Noise-only cells** (no positive truth deposit): target "not focal" (``f = 0``, binary 0, hard class 2 =
neutral), consistent with :func:`pcloud.core.attribution.truth_attribution`, which leaves their energy neutral.

Losses (``loss=``), on CELL points only (track points and padding never count)
-----------------------------------------------------------------------------
* ``"energy_weighted"`` (default): cross-entropy weighted per cell by ``w = max(E_cell, 0)`` (GeV) and normalised
  per batch, ``L = sum_i w_i CE_i / sum_i w_i`` (:class:`pcloud.nn.losses.CellSegmentationLoss`). Cells with ``E <= 0``
  get weight 0: inference only ever attributes positive energy (:class:`~pcloud.core.attribution.Attribution`),
  so what is learnt is the energy that matters for particle flow, not the count of noise cells.
* ``"ce"``: unweighted mean cross-entropy over cells (every cell counts once; also through MultiTaskLoss).
* ``"focal"``: focal loss (Lin et al., "Focal Loss for Dense Object Detection", arXiv:1708.02002, eq. 4),
  ``FL = -sum_c y_c (1 - p_c)^gamma log p_c`` with ``gamma = 2`` (``y`` one-hot or the soft fractions), averaged
  over cells; ``"energy_weighted_focal"`` weights it by ``max(E, 0)`` like above.

Features (``features=``: names, a comma-separated string or ``"jetpointnet"``; :func:`~pcloud.data.point_features.feature_names`)
-------------------------------------------------------------------------------------------------------------------------------
Per-track default (:data:`DEFAULT_FEATURES`): the JetPointNet encoding (:data:`~pcloud.data.point_features.
JETPOINTNET_FEATURES`: type one-hot, ``delta_r``, normalised coordinates ``deta``, ``dphi`` relative to the focal track
at the point's layer, ``layer``, ``log_energy``, cell ``noise_sigma``, ``log_track_pt``, ``track_chi2_ndf``) plus the
cell neighbourhood (:data:`~pcloud.data.point_features.NEIGHBOUR_FEATURES`: log summed energy of the cell's
neighbours in its layer, in the layer in front and behind, and a local-maximum flag; :func:`pcloud.pflow.clouds.
neighbour_energy`). PointNet sees each point alone before the global pooling, so without them it cannot tell an
early, compact photon shower beside the track from the pion's own deposits; with them (3000 events, 12 epochs,
2 seeds) the energy of neutral cells given to a track fell from 7.9 % to 6.3 % (iterative inference) and the
energy-weighted accuracy rose by 0.017-0.026 (``datasets/PFLOW_RESULTS.md``).
A :class:`pcloud.data.normalise.Normaliser` is fitted on the training clouds only.

Truncation: clouds are padded with :func:`pcloud.data.batch.to_padded` and ``max_points``: tracks first, then the
highest-energy cells. Cells dropped by the truncation are predicted with fraction 0, i.e. neutral. They are the
lowest-energy cells of the cone, but not only noise: on the benchmark's events (topo-clustered cells within
DeltaR 0.2: median 245 points per track cloud) a cut at 256 points drops 9 % of the points, and removing it raised
PointNet's cell F1 by 0.016-0.025 (``datasets/PFLOW_RESULTS.md``). :class:`FocalTrackSegmenter` keeps every point by
default (``max_points=None``: each batch is padded to its largest cloud); the whole-event model keeps 512.
"""
from __future__ import annotations

import time
from pathlib import Path

import awkward as ak
import numpy as np
import torch
from torch import nn

from ..core.attribution import Attribution
from ..core.schema import PointType
from ..data.batch import POINT_TARGETS, CloudDataset, select_points, to_padded
from ..data.normalise import Normaliser
from ..data.point_features import JETPOINTNET_FEATURES, NEIGHBOUR_FEATURES, feature_columns, feature_names
from ..nn import build_model
from ..nn.losses import SEG_LOSSES, CellSegmentationLoss
from ..train.checkpoint import safe_load
from ..train.trainer import Trainer, select_device
from .clouds import cloud_track_rows, event_clouds, track_clouds
from .residual_clouds import track_clouds_with_residuals

__all__ = ["FocalTrackSegmenter", "ChargedFractionSegmenter", "OracleSegmenter", "SegmenterEnsemble",
           "DEFAULT_FEATURES", "EVENT_FEATURES", "remap_fraction", "cloud_cell_mask"]

DEFAULT_FEATURES = JETPOINTNET_FEATURES + NEIGHBOUR_FEATURES
EVENT_FEATURES = ["type_onehot", "dr_nearest_track", "deta", "dphi", "layer", "log_energy", "noise_sigma",
                  "log_track_pt", "track_chi2_ndf"]
_SMALL = {"pointnet": dict(channels=(64, 128, 128), seg_hidden=(128, 64), head_hidden=()),
          "dgcnn": dict(k=16, edge_channels=(64, 64, 128), emb_dim=128, seg_hidden=(128, 64), head_hidden=()),
          "transformer": dict(dim=64, n_heads=4, n_layers=3, ffn_mult=2, pair_hidden=16, seg_hidden=(64,),
                              head_hidden=()),
          "gravnet": dict(blocks=3, dense=(64,), out_dims=48, space_dims=4, prop_dims=22, k=16, emb_dim=128,
                          seg_hidden=(128, 64), head_hidden=()),
          "cellgraph": dict(channels=(64, 128, 128), graph_layers=2, seg_hidden=(128, 64), head_hidden=())}
#: the model classes' own (GPU-sized) widths, chosen with ``widths="full"``: PointNet / DGCNN / GravNet at their
#: constructors' defaults, the transformer at the size the GPU check uses (scripts/gpu_check.py); no pooled head
_FULL = {"pointnet": dict(channels=(64, 128, 256), seg_hidden=(256, 128), head_hidden=()),
         "dgcnn": dict(k=16, edge_channels=(64, 64, 128), emb_dim=256, seg_hidden=(256, 128), head_hidden=()),
         "transformer": dict(dim=128, n_heads=8, n_layers=4, ffn_mult=2, pair_hidden=16, seg_hidden=(256, 128),
                             head_hidden=()),
         "gravnet": dict(blocks=4, dense=(64, 64), out_dims=48, space_dims=4, prop_dims=22, k=16, emb_dim=128,
                         seg_hidden=(256, 128), head_hidden=()),
         "cellgraph": dict(channels=(64, 128, 256), graph_layers=2, seg_hidden=(256, 128), head_hidden=())}
#: lighter DGCNN / transformer / GravNet (PointNet as "small") for runs bounded by a few CPU minutes per model
#: (``bench pflow --quick`` / ``--medium``, ``pcloud train --task pflow`` with ``model.small``)
_LIGHT = {"pointnet": dict(_SMALL["pointnet"]),
          "dgcnn": {**_SMALL["dgcnn"], "k": 8, "edge_channels": (32, 32, 64), "emb_dim": 64},
          "transformer": {**_SMALL["transformer"], "dim": 32, "n_heads": 4, "n_layers": 2, "pair_hidden": 8},
          "gravnet": {**_SMALL["gravnet"], "blocks": 2, "dense": (64,), "out_dims": 32, "k": 12},
          "cellgraph": dict(_SMALL["cellgraph"])}
#: width sets of the segmenters: "light", "small" (CPU-sized, the default) and "full"
WIDTHS = {"light": _LIGHT, "small": _SMALL, "full": _FULL}
#: candidate decision thresholds of :meth:`_CellSegmenter.choose_threshold` (0.5 among them)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.701, 0.025), 3)
#: columns of :meth:`_CellSegmenter.threshold_counts`
THRESHOLD_COUNT_COLUMNS = ("tp", "fp", "fn", "energy_correct_gev", "energy_gev", "n_pred_charged", "n_cells",
                           "n_true_charged")


def _check_threshold_metric(metric: str) -> None:
    if metric not in ("f1", "ewa", "f1+ewa"):
        raise ValueError(f"choose_threshold: metric must be 'f1', 'ewa' or 'f1+ewa', found {metric!r}")


#: cell populations of the clouds: every cell in the cone, or the topo-clustered cells with E > 0 (the MLTree cell
#: population and the cells the benchmark's metrics evaluate)
CELL_SELECTIONS = ("all", "topo")


def cloud_cell_mask(events, geometry, cells: str = "topo"):
    """Cells allowed in the clouds: None for ``"all"``; for ``"topo"`` the cells of a 4/2/0 topo-cluster (on the
    measured energies) with measured E > 0."""
    if cells not in CELL_SELECTIONS:
        raise ValueError(f"cells must be one of {CELL_SELECTIONS}, found {cells!r}")
    if cells == "all":
        return None
    from .topocluster import clustered_cell_mask

    return clustered_cell_mask(events, geometry) & (np.asarray(events.cells["energy_gev"]) > 0)


def cell_graph_slots(clouds, sel: dict, n: int, where: str = "cell graph") -> tuple[torch.Tensor, torch.Tensor]:
    """The cell graph of padded ``clouds`` for :class:`pcloud.nn.cellgraph.CellGraphNet`: ``nbr (B, n, K)`` int16, the
    slots of each kept point's kept neighbours (the clouds' ``cell_nbr`` field, indices within the cloud) with -1
    for none, ``K`` the largest number of neighbours; and ``layer (B, n)`` int16. ``sel``: the
    :func:`~pcloud.data.batch.select_points` selection that laid out the padded batch."""
    if "cell_nbr" not in ak.fields(clouds.points):
        raise ValueError(f"{where}: the model reads the cell graph, but the clouds have no 'cell_nbr' field; build "
                         "them with pcloud.pflow.clouds.track_clouds(..., cell_graph=True)")
    counts, ev, idx, slot = sel["counts"], sel["ev"], sel["idx"], sel["slot"]
    B = counts.size
    if n >= np.iinfo(np.int16).max:
        raise ValueError(f"{where}: {n} points per cloud do not fit the int16 neighbour slots (at most "
                         f"{np.iinfo(np.int16).max - 1}); cut the clouds with max_points")
    start = np.concatenate([[0], np.cumsum(counts)])[:-1]
    n_nbr = ak.to_numpy(ak.flatten(ak.num(clouds.points.cell_nbr, axis=2), axis=1)).astype(np.int64)
    local = ak.to_numpy(ak.flatten(clouds.points.cell_nbr, axis=None)).astype(np.int64)
    pos = np.full(ev.size, -1, np.int64)  # slot of every flat point, -1 when not kept
    pos[idx] = slot
    owner = np.repeat(np.arange(ev.size), n_nbr)
    tgt = start[ev[owner]] + local
    if local.size and (local.min() < 0 or np.any(local >= counts[ev[owner]])):
        raise ValueError(f"{where}: 'cell_nbr' holds indices outside their cloud")
    keep = (pos[owner] >= 0) & (pos[tgt] >= 0)
    owner, tgt = owner[keep], tgt[keep]
    rank = np.arange(owner.size) - np.searchsorted(owner, owner)  # position among the owner's kept neighbours
    K = int(rank.max()) + 1 if rank.size else 1
    nbr = np.full((B, max(n, 1), K), -1, np.int16)
    nbr[ev[owner], pos[owner], rank] = pos[tgt]
    layer = np.zeros((B, max(n, 1)), np.int16)
    lay = ak.to_numpy(ak.flatten(clouds.points.layer, axis=1)).astype(np.int16)
    layer[ev[idx], slot] = lay[idx]
    return torch.from_numpy(nbr[:, :n]), torch.from_numpy(layer[:, :n])


class _StoredCollate:
    """Batches of stored clouds -> the segmenter's training tensors (a class, not a lambda, so that DataLoader
    workers can pickle it)."""

    def __init__(self, seg):
        self.seg = seg

    def __call__(self, clouds) -> dict:
        return self.seg.tensors(clouds)[0]


def remap_fraction(p: np.ndarray, threshold: float | None) -> np.ndarray:
    """Move the decision point of a predicted fraction from 0.5 to ``threshold``: piecewise linear and monotone,
    ``0 -> 0``, ``threshold -> 0.5``, ``1 -> 1`` (None or 0.5: unchanged). A cell whose fraction exceeds the threshold
    then carries the larger share, so the hard label (dominant share) follows the threshold chosen on the
    validation split while the soft shares stay ordered."""
    if threshold is None or threshold == 0.5:
        return p
    t = float(threshold)
    return np.where(p < t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1.0 - t))


class RaggedAdapter(nn.Module):
    """Runs a point model on the ragged path (:mod:`pcloud.nn.ragged`) from padded batches: converts the batch,
    calls the model and puts per-point outputs back into (B, N, ...) with zeros at padding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        from ..nn.ragged import pad_point_outputs, padded_to_ragged

        return pad_point_outputs(self.model(padded_to_ragged(batch)), batch["mask"])


# ---------------------------------------------------------------------------------------------------- base
class _CellSegmenter:
    """Shared machinery: clouds -> padded tensors (+ kept-point index), model, training, prediction, persistence."""

    cloud_kind = "track"
    default_features = DEFAULT_FEATURES

    def __init__(self, model="pointnet", target="soft", loss="energy_weighted", max_points=256, features=None,
                 device="auto", seed=1, binary_threshold=0.5, gamma=2.0, *, cells="all", threshold=None,
                 threshold_metric="f1+ewa", energy_share=0.5, ragged=False, widths="small", **model_cfg):
        if widths not in WIDTHS:
            raise ValueError(f"{type(self).__name__}: widths must be one of {sorted(WIDTHS)}, found {widths!r}")
        if model not in _SMALL:
            raise ValueError(f"{type(self).__name__}: model must be one of {sorted(_SMALL)}, found {model!r}")
        if target not in POINT_TARGETS:
            raise ValueError(f"{type(self).__name__}: target must be one of {POINT_TARGETS}, found {target!r}")
        if loss not in SEG_LOSSES:
            raise ValueError(f"{type(self).__name__}: loss must be one of {SEG_LOSSES}, found {loss!r}")
        if not 0.0 <= binary_threshold < 1.0:
            raise ValueError(f"{type(self).__name__}: binary_threshold must be in [0, 1), found {binary_threshold}")
        if max_points is not None and int(max_points) < 1:
            raise ValueError(f"{type(self).__name__}: max_points must be positive or None, found {max_points}")
        if cells not in CELL_SELECTIONS:
            raise ValueError(f"{type(self).__name__}: cells must be one of {CELL_SELECTIONS}, found {cells!r}")
        if not (threshold is None or threshold == "val" or (isinstance(threshold, (int, float))
                                                           and 0.0 < float(threshold) < 1.0)):
            raise ValueError(f"{type(self).__name__}: threshold must be None, 'val' or a number in (0, 1), found "
                             f"{threshold!r}")
        self.model_name, self.target, self.loss_name = model, target, loss
        self.cells, self.ragged, self.energy_share = cells, bool(ragged), float(energy_share)
        #: decision threshold of the predicted fraction as asked (None, "val": chosen on the validation split by
        #: fit(), or a number) and as applied (``threshold``: None or a number)
        self.threshold_spec = threshold if threshold in (None, "val") else float(threshold)
        self.threshold = None if threshold in (None, "val") else float(threshold)
        self.threshold_info: dict = {}
        self.threshold_metric = threshold_metric
        self.max_points = None if max_points is None else int(max_points)
        self.features = feature_names(self.default_features if features is None else features)
        self.device_name, self.seed = device, int(seed)
        self.binary_threshold, self.gamma = float(binary_threshold), float(gamma)
        self.widths = widths
        self.model_cfg = {**WIDTHS[widths][model], **model_cfg}
        self.n_classes = 3 if target == "hard" else 2
        self.focal_class = 0 if target == "hard" else 1
        self.loss_fn = CellSegmentationLoss(loss, gamma, energy_share)
        self.normaliser: Normaliser | None = None
        self.model: nn.Module | None = None
        self.history: list = []

    # ------------------------------------------------------------------ model
    def _build(self) -> nn.Module:
        torch.manual_seed(self.seed)
        cfg = dict(self.model_cfg)
        if self.model_name == "transformer":  # columns of the pairwise features dlayer / dlogE
            cols = feature_columns(self.features)
            for key, name in (("layer_col", "layer"), ("energy_col", "log_energy")):
                if key not in cfg and name in cols:
                    cfg[key] = cols.index(name)
            names = [p for p in cfg.get("pair_features", ("dr", "dist", "dlayer", "dlogE"))
                     if (p != "dlayer" or "layer_col" in cfg) and (p != "dlogE" or "energy_col" in cfg)]
            cfg["pair_features"] = tuple(names)
        return build_model(self.model_name, in_channels=len(feature_columns(self.features)),
                           n_seg_classes=self.n_classes, **cfg)

    @property
    def n_params(self) -> int:
        if self.model is None:
            self.model = self._build()
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ data
    @property
    def needs_cell_graph(self) -> bool:
        """The model reads the clouds' cell graph (``track_clouds(..., cell_graph=True)``,
        :mod:`pcloud.nn.cellgraph`)."""
        return self.model_name == "cellgraph" and int(self.model_cfg.get("graph_layers", 1)) > 0

    def make_clouds(self, events, geometry):
        raise NotImplementedError

    def make_train_clouds(self, events, geometry):
        """The clouds :meth:`fit` trains on (default: :meth:`make_clouds`)."""
        return self.make_clouds(events, geometry)

    def _targets(self, clouds, pad, sel, n) -> torch.Tensor:
        raise NotImplementedError

    def tensors(self, clouds, with_targets: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
        """Padded model inputs of ``clouds`` (and ``"y"``), plus the flat point index and (cloud, slot) of every kept
        point: ``(batch, kept_flat_index, kept_cloud * N + slot)``."""
        if self.normaliser is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted (no normaliser); call fit() or load()")
        targets = ("hard",) if (with_targets and self.target == "hard") else \
            ((self.target,) if with_targets and self.cloud_kind == "track" else ())
        pad = to_padded(clouds, self.features, max_points=self.max_points, sort_by="energy", targets=targets,
                        binary_threshold=self.binary_threshold, normaliser=self.normaliser)
        sel = select_points(clouds, self.max_points, "energy")  # the selection to_padded made (same arguments)
        n = pad["x"].shape[1]
        batch = {"x": pad["x"], "pos": pad["pos"], "mask": pad["mask"], "energy": pad["energy"],
                 "cell_mask": pad["type"] == int(PointType.CELL)}
        if self.needs_cell_graph:
            batch["nbr"], batch["layer"] = cell_graph_slots(clouds, sel, n, type(self).__name__)
        if with_targets:
            batch["y"] = self._targets(clouds, pad, sel, n)
        return batch, sel["idx"], sel["ev"][sel["idx"]] * n + sel["slot"]

    def kept_energy(self, clouds, kept=None) -> tuple[float, float]:
        """Energy (GeV, points with E > 0) of ``clouds`` and the part of it in the points that the ``max_points``
        truncation keeps (the selection :meth:`tensors` makes; ``kept``: its flat point indices when already
        known); their ratio is reported as ``truncated_energy_fraction``."""
        e = np.clip(ak.to_numpy(ak.flatten(clouds.points.energy)).astype(np.float64), 0, None)
        if kept is None:
            kept = select_points(clouds, self.max_points, "energy")["idx"]
        return float(e.sum()), float(e[kept].sum())

    # ------------------------------------------------------------------ training
    def fit(self, train_events, val_events, geometry, epochs=10, batch_size=64, lr=1e-3, patience=3,
            max_minutes=None, log=print, optimizer="adam", schedule="constant", warmup=0.05, weight_decay=0.0,
            schedule_time=False) -> dict:
        """Build clouds, fit the normaliser on the training clouds, train with early stopping on ``val_events``
        (recipe arguments as :class:`pcloud.train.trainer.Trainer`); with ``threshold="val"`` choose the decision
        threshold on the validation clouds afterwards (:meth:`choose_threshold`).

        Returns ``{"history", "best_epoch", "epochs_run", "seconds", "seconds_per_epoch", "n_train_clouds",
        "n_val_clouds", "n_params", "prep_seconds", "truncated_energy_fraction", "threshold"}``.
        """
        t0 = time.perf_counter()
        tr = self.make_train_clouds(train_events, geometry)
        va = self.make_clouds(val_events, geometry)
        if len(tr) == 0 or len(va) == 0:
            raise ValueError(f"{type(self).__name__}.fit: no clouds (train {len(tr)}, val {len(va)}); "
                             "do the events have tracks reaching the calorimeter?")
        self.normaliser = Normaliser.fit(tr, self.features)
        dtr, kept, _ = self.tensors(tr)
        dva, _, _ = self.tensors(va)
        e_all, e_kept = self.kept_energy(tr, kept)
        info = self._train(dtr, dva, time.perf_counter() - t0, epochs, batch_size, lr, patience, max_minutes, log,
                           optimizer, schedule, warmup, weight_decay, schedule_time)
        if self.threshold_spec == "val":
            self.choose_threshold(val_events, geometry, self.threshold_metric)
        return {**info, "n_train_clouds": len(tr), "n_val_clouds": len(va),
                "truncated_energy_fraction": 1.0 - e_kept / e_all if e_all > 0 else 0.0,
                "threshold": self.threshold, "threshold_info": dict(self.threshold_info)}

    def fit_stores(self, train, val, epochs=10, batch_size=64, lr=1e-3, patience=3, max_minutes=None, log=print,
                   optimizer="adam", schedule="constant", warmup=0.05, weight_decay=0.0, schedule_time=False,
                   shuffle_buffer: int | None = None) -> dict:
        """:meth:`fit` on clouds already made and stored (:class:`pcloud.io.native.NativeStore` of
        :meth:`make_clouds` output, e.g. written chunk by chunk from files larger than memory): the normaliser is
        fitted in one streamed pass, training and validation read the stores in row groups (training shuffled in a
        buffer of ``shuffle_buffer`` clouds), so memory does not grow with the number of clouds. The decision
        threshold ``"val"`` needs the validation events and is only available in :meth:`fit`."""
        if self.threshold_spec == "val":
            raise ValueError(f"{type(self).__name__}.fit_stores: threshold='val' is chosen on the validation events; "
                             "use fit() or give a number")
        if getattr(self, "residual_clouds", False):
            raise ValueError(f"{type(self).__name__}.fit_stores: residual_clouds=True needs the events (the truth "
                             "shares of the earlier tracks); use fit(), or store residual_track_clouds() output too")
        if train.n_events == 0 or val.n_events == 0:
            raise ValueError(f"{type(self).__name__}.fit_stores: no clouds (train {train.n_events}, val "
                             f"{val.n_events}); do the events have tracks reaching the calorimeter?")
        t0 = time.perf_counter()
        energy = np.zeros(2)

        def counted(chunks):  # one pass: the normaliser's, adding up the energy kept by the truncation on the way
            for c in chunks:
                energy[:] += self.kept_energy(c)
                yield c

        self.normaliser = Normaliser.fit(counted(train.chunks()), self.features)
        e_all, e_kept = (float(v) for v in energy)
        collate = _StoredCollate(self)
        dtr = CloudDataset(train, batch_size=batch_size, collate=collate, shuffle=True, seed=self.seed,
                           shuffle_buffer=shuffle_buffer)
        dva = CloudDataset(val, batch_size=batch_size, collate=collate)
        info = self._train(dtr, dva, time.perf_counter() - t0, epochs, batch_size, lr, patience, max_minutes, log,
                           optimizer, schedule, warmup, weight_decay, schedule_time)
        return {**info, "n_train_clouds": int(train.n_events), "n_val_clouds": int(val.n_events),
                "truncated_energy_fraction": 1.0 - e_kept / e_all if e_all > 0 else 0.0,
                "threshold": self.threshold, "threshold_info": dict(self.threshold_info)}

    def _train(self, dtr, dva, prep: float, epochs, batch_size, lr, patience, max_minutes, log, optimizer, schedule,
               warmup, weight_decay, schedule_time) -> dict:
        """Build the model and train it on ``dtr`` (tensors or a stream of batches) with early stopping on ``dva``."""
        self.model = self._build()
        net = RaggedAdapter(self.model) if self.ragged else self.model
        trainer = Trainer(net, self.loss_fn, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                          max_minutes=max_minutes, device=self.device_name, seed=self.seed, progress=False, log=log,
                          optimizer=optimizer, schedule=schedule, warmup=warmup, weight_decay=weight_decay,
                          schedule_time=schedule_time)
        res = trainer.fit(dtr, dva)
        self.model = trainer.model.model if self.ragged else trainer.model
        self.history = res.history
        return {"history": res.history, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                "seconds": res.seconds, "seconds_per_epoch": res.seconds / max(res.epochs_run, 1),
                "n_params": self.n_params, "prep_seconds": prep}

    def _net(self) -> nn.Module:
        return RaggedAdapter(self.model) if self.ragged else self.model

    def choose_threshold(self, val_events, geometry, metric: str = "f1+ewa", cell_mask=None) -> float:
        """Choose the decision threshold of the predicted fraction on validation *events*: predict every track's
        cloud of the untouched events once (common inference), then for each candidate threshold on a grid
        (:data:`THRESHOLD_GRID`, 0.05 to 0.70) remap the fractions (:func:`remap_fraction`), attribute as
        :func:`pcloud.pflow.inference.common_inference` does and score the hard cell labels (dominant share) against
        the truth on the evaluated cells (topo-clustered, E > 0, as the benchmark): ``metric`` "f1" (charged vs
        neutral), "ewa" (energy-weighted accuracy) or "f1+ewa" (their sum, the default: both are goals). The chosen
        value is stored in ``threshold`` (applied by :meth:`predict_fraction`) and reported in ``threshold_info``
        with the scores at 0.5 and at the choice. For events read in chunks, add up :meth:`threshold_counts` of the
        chunks and call :meth:`threshold_from_counts` (the same choice)."""
        _check_threshold_metric(metric)
        return self.threshold_from_counts(self.threshold_counts(val_events, geometry, cell_mask), metric)

    def threshold_counts(self, val_events, geometry, cell_mask=None) -> np.ndarray:
        """Additive counts behind :meth:`choose_threshold`, one row per threshold of :data:`THRESHOLD_GRID`:
        columns :data:`THRESHOLD_COUNT_COLUMNS` (true / false positives and false negatives of charged cells,
        energy of the correctly labelled cells and of all evaluated cells in GeV, cells predicted charged, evaluated
        cells, truly charged cells). Sums over chunks of events equal the counts of all events at once."""
        from ..core.attribution import truth_attribution
        from .clouds import cloud_cell_rows
        from .inference import _merge, _reaching_tracks
        from .topocluster import clustered_cell_mask

        e = np.asarray(val_events.cells["energy_gev"], np.float64)
        e_pos = np.clip(e, 0, None)
        ev_mask = (clustered_cell_mask(val_events, geometry) if cell_mask is None else np.asarray(cell_mask, bool)) \
            & (e > 0)
        lab_t = truth_attribution(val_events).dominant_track(e.size, e)[ev_mask]
        w = e[ev_mask]
        ct = lab_t >= 0
        out = np.zeros((THRESHOLD_GRID.size, len(THRESHOLD_COUNT_COLUMNS)))
        out[:, 4], out[:, 6], out[:, 7] = w.sum(), ev_mask.sum(), ct.sum()
        rows = _reaching_tracks(val_events)
        if rows.size == 0:  # no track: every cell neutral whatever the threshold
            out[:, 2], out[:, 3] = ct.sum(), w[~ct].sum()
            return out
        old = self.threshold
        self.threshold = None
        try:
            clouds = track_clouds(val_events, geometry, dr_max=self.dr_max, tracks=rows,
                                  cell_mask=self.cloud_cell_mask(val_events, geometry),
                                  cell_graph=self.needs_cell_graph)
            raw = self.predict_fraction(clouds, raw=True)
        finally:
            self.threshold = old
        crow, trow = cloud_cell_rows(clouds), cloud_track_rows(clouds)
        n_tracks = val_events.tracks["event"].size
        for i, t in enumerate(THRESHOLD_GRID):
            f = remap_fraction(raw, float(t))
            claim = np.bincount(crow, f, minlength=e.size)
            a = _merge(crow, trow, f / np.maximum(claim, 1.0)[crow] * e_pos[crow], n_tracks, "val")
            lab_p = a.dominant_track(e.size, e)[ev_mask]
            cp = lab_p >= 0
            out[i, :4] = np.sum(ct & cp), np.sum(~ct & cp), np.sum(ct & ~cp), w[lab_t == lab_p].sum()
            out[i, 5] = cp.sum()
        return out

    def threshold_from_counts(self, counts, metric: str = "f1+ewa") -> float:
        """Set ``threshold`` (and ``threshold_info``) from summed :meth:`threshold_counts`: the grid value with the
        best ``metric``, ties going to the value nearest 0.5."""
        _check_threshold_metric(metric)
        c = np.asarray(counts, np.float64)
        if c.shape != (THRESHOLD_GRID.size, len(THRESHOLD_COUNT_COLUMNS)):
            raise ValueError(f"threshold_from_counts: expected counts of shape "
                             f"{(THRESHOLD_GRID.size, len(THRESHOLD_COUNT_COLUMNS))}, found {c.shape}")

        def score(row):
            tp, fp, fn, e_ok, e_all, n_pred, n_cells, _ = row
            f1 = float(2 * tp / max(2 * tp + fp + fn, 1))
            ewa = float(e_ok / max(e_all, 1e-12))
            return {"f1": f1, "ewa": ewa, "f1+ewa": f1 + ewa, "charged_share": float(n_pred / max(n_cells, 1))}

        scores = {float(t): score(row) for t, row in zip(THRESHOLD_GRID, c)}
        best = max(scores, key=lambda t: (scores[t][metric], -abs(t - 0.5)))
        self.threshold = float(best)
        self.threshold_info = {"chosen_on": "val", "metric": f"{metric} (common inference on the validation events, "
                               "topo-clustered cells with E > 0)", "threshold": float(best),
                               "val": scores[best], "val_at_0.5": scores[0.5],
                               "charged_share_true": float(c[0, 7] / max(c[0, 6], 1)), "n_cells": int(c[0, 6]),
                               "grid": {str(t): v for t, v in scores.items()}}
        return self.threshold

    # ------------------------------------------------------------------ prediction
    def predict_fraction(self, clouds, batch_size: int = 256, raw: bool = False) -> np.ndarray:
        """Predicted fraction in [0, 1] per CELL point of ``clouds`` (flattened in cloud order, cells only); cells
        dropped by ``max_points`` get 0. With a decision ``threshold`` the fractions are remapped so that it becomes
        the 0.5 point (:func:`remap_fraction`); ``raw=True`` returns p(focal) unchanged."""
        if self.model is None or self.normaliser is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted; call fit() or load()")
        typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
        out = np.zeros(typ.size, np.float64)
        dev = select_device(self.device_name)
        net = self._net().to(dev).eval()
        base = 0
        with torch.no_grad():
            for s in range(0, len(clouds), batch_size):
                chunk = clouds[s:s + batch_size]
                n_pts = int(ak.sum(ak.num(chunk.points, axis=1)))
                if n_pts == 0:
                    continue
                batch, idx, flat_slot = self.tensors(chunk, with_targets=False)
                res = net({k: v.to(dev) for k, v in batch.items()})
                p = torch.softmax(res["seg_logits"].float(), -1)[..., self.focal_class]
                out[base + idx] = p.reshape(-1).cpu().numpy().astype(np.float64)[flat_slot]
                base += n_pts
        f = np.clip(out[typ == PointType.CELL], 0.0, 1.0)
        if not raw and isinstance(self.threshold, float):
            f = remap_fraction(f, self.threshold)
        return f

    def cloud_cell_mask(self, events, geometry):
        """The cells this segmenter's clouds hold (None: all; see :data:`CELL_SELECTIONS`); the inference functions
        of :mod:`pcloud.pflow.inference` build their clouds with it."""
        return cloud_cell_mask(events, geometry, self.cells)

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {"model": self.model_name, "target": self.target, "loss": self.loss_name,
                "max_points": self.max_points, "features": self.features, "device": self.device_name,
                "seed": self.seed, "binary_threshold": self.binary_threshold, "gamma": self.gamma,
                "cells": self.cells, "threshold": self.threshold, "threshold_metric": self.threshold_metric,
                "energy_share": self.energy_share, "ragged": self.ragged, "widths": self.widths, **self.model_cfg}

    def save(self, path) -> None:
        if self.model is None or self.normaliser is None:
            raise RuntimeError(f"{type(self).__name__}.save: nothing to save (not fitted)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"class": type(self).__name__, "config": self._config(),
                    "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
                    "normaliser": self.normaliser.to_dict(), "history": self.history,
                    "threshold_info": self.threshold_info}, path)

    @classmethod
    def load(cls, path, device: str | None = None):
        st = safe_load(path, map_location="cpu")
        if not isinstance(st, dict) or "config" not in st or "state_dict" not in st:
            raise ValueError(f"{path}: expected a saved {cls.__name__} (keys config, state_dict, normaliser), found "
                             f"{sorted(st) if isinstance(st, dict) else type(st).__name__}")
        if st.get("class") != cls.__name__:
            raise ValueError(f"{path}: holds a {st.get('class')!r}, not a {cls.__name__}")
        cfg = dict(st["config"])
        if device is not None:
            cfg["device"] = device
        obj = cls(**cfg)
        obj.model = obj._build()
        obj.model.load_state_dict(st["state_dict"])
        nd = st["normaliser"]
        obj.normaliser = Normaliser(nd["features"], nd["mean"], nd["std"], nd.get("n_points", 0),
                                    nd.get("fitted_on", {}))
        obj.history = st.get("history", [])
        obj.threshold_info = dict(st.get("threshold_info") or {})
        return obj


# ---------------------------------------------------------------------------------------------------- per track
class FocalTrackSegmenter(_CellSegmenter):
    """Per-track cell segmentation (JetPointNet): fraction of each cell's energy belonging to the focal track.

    ``model``: "pointnet", "dgcnn", "transformer", "gravnet" or "cellgraph" (:mod:`pcloud.nn.cellgraph`: PointNet
    with message passing over the calorimeter's cell graph, which the clouds then carry); CPU-sized widths by
    default (``widths="full"`` takes the model classes' own, GPU-sized ones, ``"light"`` narrower local models:
    :data:`WIDTHS`; override single entries with ``**model_cfg``, e.g. ``channels=(32, 64)``);
    ``target``/``loss``: module docstring; ``dr_max``: cone of the clouds built by :meth:`fit`
    (:func:`~pcloud.pflow.clouds.track_clouds`); ``max_points``: truncation of :func:`~pcloud.data.batch.to_padded`
    (default None: every point of the cloud).
    """

    cloud_kind = "track"
    default_features = DEFAULT_FEATURES

    def __init__(self, model="pointnet", target="soft", loss="energy_weighted", dr_max=0.2, max_points=None,
                 features=None, device="auto", seed=1, binary_threshold=0.5, gamma=2.0, residual_clouds=False,
                 **model_cfg):
        if not (np.isfinite(dr_max) and dr_max > 0):
            raise ValueError(f"FocalTrackSegmenter: dr_max must be > 0, found {dr_max!r}")
        self.dr_max = float(dr_max)
        #: also train on the residual clouds of the tracks after the first (pcloud.pflow.residual_clouds)
        self.residual_clouds = bool(residual_clouds)
        super().__init__(model, target, loss, max_points, features, device, seed, binary_threshold, gamma,
                         **model_cfg)

    def _config(self) -> dict:
        return {**super()._config(), "dr_max": self.dr_max, "residual_clouds": self.residual_clouds}

    def _cloud_kwargs(self, events, geometry) -> dict:
        return {"dr_max": self.dr_max, "cell_mask": self.cloud_cell_mask(events, geometry),
                "cell_graph": self.needs_cell_graph}

    def make_clouds(self, events, geometry):
        return track_clouds(events, geometry, **self._cloud_kwargs(events, geometry))

    def make_train_clouds(self, events, geometry):
        """The training clouds: :meth:`make_clouds`, and with ``residual_clouds`` also the clouds of every track
        after an event's first with the true shares of the higher-pT tracks removed (teacher forcing of iterative
        inference, :func:`~pcloud.pflow.residual_clouds.residual_track_clouds`)."""
        if not self.residual_clouds:
            return self.make_clouds(events, geometry)
        return track_clouds_with_residuals(events, geometry, **self._cloud_kwargs(events, geometry))

    def _targets(self, clouds, pad, sel, n) -> torch.Tensor:
        cell = (pad["type"] == int(PointType.CELL))
        if self.target == "soft":
            return torch.where(cell, pad["y_soft"], torch.zeros_like(pad["y_soft"]))
        if self.target == "binary":
            return torch.where(cell, pad["y_binary"], torch.full_like(pad["y_binary"], -1))
        return torch.from_numpy(hard3_labels(clouds, pad["y_hard"].numpy(), cell.numpy()))


class SegmenterEnsemble:
    """The mean predicted fraction of several trained :class:`FocalTrackSegmenter` (e.g. one per training seed) as one
    segmenter for :mod:`pcloud.pflow.inference`: the members' raw p(focal) are averaged, then remapped by the
    ensemble's own decision threshold (:meth:`choose_threshold`, as :meth:`FocalTrackSegmenter.choose_threshold`, on
    validation events). The members must build the same clouds (same ``dr_max`` and cell selection)."""

    def __init__(self, members, threshold=None):
        members = list(members)
        if not members:
            raise ValueError("SegmenterEnsemble: no members")
        if len({(m.dr_max, m.cells) for m in members}) != 1:
            raise ValueError("SegmenterEnsemble: members build different clouds (dr_max / cells differ)")
        self.members, self.dr_max, self.cells = members, members[0].dr_max, members[0].cells
        self.threshold = None if threshold is None else float(threshold)
        self.threshold_info: dict = {}
        self.threshold_metric = members[0].threshold_metric
        self.n_params = sum(m.n_params for m in members)

    def cloud_cell_mask(self, events, geometry):
        return self.members[0].cloud_cell_mask(events, geometry)

    @property
    def needs_cell_graph(self) -> bool:
        return any(getattr(m, "needs_cell_graph", False) for m in self.members)

    def predict_fraction(self, clouds, raw: bool = False) -> np.ndarray:
        f = np.mean([m.predict_fraction(clouds, raw=True) for m in self.members], axis=0)
        return f if raw or self.threshold is None else remap_fraction(f, self.threshold)

    choose_threshold = FocalTrackSegmenter.choose_threshold
    threshold_counts = FocalTrackSegmenter.threshold_counts
    threshold_from_counts = FocalTrackSegmenter.threshold_from_counts


def hard3_labels(clouds, y_hard: np.ndarray, cell_mask: np.ndarray) -> np.ndarray:
    """(B, N) 3-class labels from (B, N) hard truth indices (``to_padded`` ``y_hard``): 0 focal particle, 1 another
    particle with a track, 2 neutral (no track, or noise-only cell); -1 on non-cell points."""
    b = len(clouds)
    cnt = ak.to_numpy(ak.num(clouds.particles, axis=1)).astype(np.int64)
    off = np.concatenate([[0], np.cumsum(cnt)])
    has_track = ak.to_numpy(ak.flatten(clouds.particles.track_index, axis=1)) >= 0
    focal = ak.to_numpy(clouds.focal_truth_index).astype(np.int64)
    y = np.asarray(y_hard, np.int64)
    bi = np.broadcast_to(np.arange(b)[:, None], y.shape)
    valid = (y >= 0) & (y < cnt[bi])
    ht = np.zeros(y.shape, bool)
    ht[valid] = has_track[(off[bi] + y)[valid]]
    lab = np.where(y == focal[:, None], 0, np.where(valid & ht, 1, 2))
    return np.where(cell_mask, lab, -1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------- whole event
class ChargedFractionSegmenter(_CellSegmenter):
    """Whole-event model: per cell, the fraction of its energy from particles that have a track (soft target
    ``charged_fraction`` of :func:`~pcloud.pflow.clouds.event_clouds`; ``target="binary"`` thresholds it).
    Small by default (PointNet 32-64-64, ``max_points=512`` highest-energy points per event)."""

    cloud_kind = "event"
    default_features = EVENT_FEATURES

    def __init__(self, model="pointnet", target="soft", loss="energy_weighted", max_points=512, features=None,
                 device="auto", seed=1, binary_threshold=0.5, gamma=2.0, **model_cfg):
        if target == "hard":
            raise ValueError("ChargedFractionSegmenter: target must be 'soft' or 'binary' (no focal track)")
        if model_cfg.get("threshold") == "val":
            raise ValueError("ChargedFractionSegmenter: threshold='val' is chosen with per-track inference; give a "
                             "number or None")
        if model == "cellgraph":
            raise ValueError("ChargedFractionSegmenter: model 'cellgraph' needs the per-track clouds' cell graph; the "
                             "whole-event clouds have none (use pointnet, dgcnn, transformer or gravnet)")
        if model == "pointnet":
            model_cfg = {"channels": (32, 64, 64), "seg_hidden": (64, 32), **model_cfg}
        super().__init__(model, target, loss, max_points, features, device, seed, binary_threshold, gamma,
                         **model_cfg)

    def make_clouds(self, events, geometry):
        return event_clouds(events, geometry)

    def _targets(self, clouds, pad, sel, n) -> torch.Tensor:
        f = ak.to_numpy(ak.flatten(clouds.points["charged_fraction"], axis=1)).astype(np.float32)
        typ = sel["typ"]
        y = np.zeros(len(clouds) * n, np.float32)
        idx = sel["idx"]
        y[sel["ev"][idx] * n + sel["slot"]] = np.where(typ[idx] == PointType.CELL, f[idx], 0.0)
        y = y.reshape(len(clouds), n)
        if self.target == "binary":
            lab = (y > self.binary_threshold).astype(np.int64)
            return torch.from_numpy(np.where((pad["type"] == int(PointType.CELL)).numpy(), lab, -1))
        return torch.from_numpy(y)

    def attribute(self, events, geometry, clouds=None) -> Attribution:
        """Charged energy ``f * max(E, 0)`` of every cell given to the nearest track at the cell's layer (cells
        with no track in their layer stay neutral)."""
        clouds = event_clouds(events, geometry) if clouds is None else clouds
        f = self.predict_fraction(clouds)
        typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
        cell = typ == PointType.CELL
        crow = ak.to_numpy(ak.flatten(clouds.points["cell_row"], axis=1))[cell]
        trow = ak.to_numpy(ak.flatten(clouds.points["nearest_track_row"], axis=1))[cell]
        e = f * np.clip(np.asarray(events.cells["energy_gev"], np.float64)[crow], 0, None)
        keep = (trow >= 0) & (e > 0)
        return Attribution(crow[keep], trow[keep], e[keep], method="charged_fraction")


# ---------------------------------------------------------------------------------------------------- oracle
class OracleSegmenter:
    """Stand-in segmenter that knows the truth of ``events``: ``predict_fraction`` returns, per CELL point, the
    fraction of the cell's *current* energy (the cloud's ``energy``) that truly belongs to the focal track.

    The focal track's true share of a cell is ``s = f_true * max(E_measured, 0)`` with ``f_true`` its fraction of
    the clipped truth deposits (as in :func:`pcloud.core.attribution.truth_attribution`); the returned fraction is
    ``min(s / E_current, 1)`` (``f_true`` where the energy is untouched, 0 for ``E_current <= 0``). So common
    inference and iterative inference with subtraction both reproduce the truth attribution inside the cone.
    ``binary=True`` returns ``f_true > threshold`` instead (the best a binary classifier can do).
    """

    def __init__(self, events, binary: bool = False, threshold: float = 0.5):
        self.events, self.binary, self.threshold = events, bool(binary), float(threshold)
        h = events.hits
        ep = np.clip(h["energy_gev"], 0, None)
        self._index(h["cell"], h["particle"], ep, np.bincount(h["cell"], ep, minlength=events.cells["event"].size))
        self.n_params = 0

    @classmethod
    def from_shares(cls, events, cell_row, particle_row, share, binary: bool = False, threshold: float = 0.5):
        """An oracle whose ``f_true`` of (cell row, particle row) is ``share`` (a fraction of the cell, pairs absent:
        0) instead of the true deposits' fraction, e.g. the votes of :mod:`pcloud.pflow.kinematic_oracle`."""
        self = cls.__new__(cls)
        self.events, self.binary, self.threshold, self.n_params = events, bool(binary), float(threshold), 0
        share = np.asarray(share, np.float64)
        cell_row, particle_row = np.asarray(cell_row, np.int64), np.asarray(particle_row, np.int64)
        if not (share.ndim == cell_row.ndim == particle_row.ndim == 1 and share.size == cell_row.size ==
                particle_row.size):
            raise ValueError(f"OracleSegmenter.from_shares: cell_row, particle_row and share must be 1-d of one "
                             f"length, found shapes {cell_row.shape}, {particle_row.shape}, {share.shape}")
        n_p, n_c = int(events.particles["event"].size), int(events.cells["event"].size)
        if share.size and (particle_row.min() < 0 or particle_row.max() >= n_p or cell_row.min() < 0
                           or cell_row.max() >= n_c):
            raise ValueError(f"OracleSegmenter.from_shares: rows out of range (cells [0, {n_c}), particles "
                             f"[0, {n_p}))")
        if share.size and (share.min() < 0 or share.max() > 1 + 1e-12):
            raise ValueError(f"OracleSegmenter.from_shares: shares must lie in [0, 1], found [{share.min()}, "
                             f"{share.max()}]")
        self._index(cell_row, particle_row, share, np.ones(events.cells["event"].size))
        return self

    def _index(self, cell_row, particle_row, energy, total):
        """Sorted look-up of (cell row, particle row) -> energy, and the per-cell totals that normalise it."""
        n_p = max(int(self.events.particles["event"].size), 1)
        key = np.asarray(cell_row, np.int64) * n_p + np.asarray(particle_row, np.int64)
        o = np.argsort(key, kind="stable")
        self._key, self._n_p, self._e, self._tot = key[o], n_p, np.asarray(energy, np.float64)[o], total

    def true_fraction(self, cell_row: np.ndarray, particle_row: np.ndarray) -> np.ndarray:
        """``f_true`` of (cell row, global particle row) pairs (float64)."""
        q = np.asarray(cell_row, np.int64) * self._n_p + np.asarray(particle_row, np.int64)
        i = np.clip(np.searchsorted(self._key, q), 0, max(self._key.size - 1, 0))
        e = np.where((self._key.size > 0) & (self._key[i] == q), self._e[i], 0.0) if self._key.size else \
            np.zeros(q.size)
        tot = self._tot[cell_row]
        return np.divide(e, tot, out=np.zeros(q.size), where=tot > 0)

    def predict_fraction(self, clouds) -> np.ndarray:
        typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
        cell = typ == PointType.CELL
        crow = ak.to_numpy(ak.flatten(clouds.points["cell_row"], axis=1))[cell].astype(np.int64)
        e_cur = ak.to_numpy(ak.flatten(clouds.points["energy"], axis=1))[cell].astype(np.float64)
        trow = cloud_track_rows(clouds)
        f = self.true_fraction(crow, self.events.tracks["particle"][trow])
        if self.binary:
            return (f > self.threshold).astype(np.float64)
        e0 = np.asarray(self.events.cells["energy_gev"], np.float64)[crow]
        share = f * np.clip(e0, 0, None)
        frac = np.where(e_cur == e0, f, np.divide(share, e_cur, out=np.zeros(f.size), where=e_cur > 0))
        return np.clip(frac, 0.0, 1.0)
