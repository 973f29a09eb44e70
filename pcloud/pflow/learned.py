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

Features (``features=``; JetPointNet point encoding, seed 002 backup "Data Representation")
------------------------------------------------------------------------------------------
Default: type one-hot, ``delta_r``, normalised coordinates (``deta``, ``dphi`` relative to the focal track at the
point's layer, ``layer``), ``log_energy``, cell ``noise_sigma``, ``log_track_pt``, ``track_chi2_ndf``.
A :class:`pcloud.data.normalise.Normaliser` is fitted on the training clouds only.

Truncation: clouds are padded with :func:`pcloud.data.batch.to_padded` and ``max_points`` (default 256): tracks
first, then the highest-energy cells. Cells dropped by the truncation are predicted with fraction 0 (they are the
lowest-energy cells of the cone, mostly noise).
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
from ..data.batch import POINT_TARGETS, select_points, to_padded
from ..data.normalise import Normaliser
from ..data.point_features import feature_columns, resolve_features
from ..nn import build_model
from ..nn.losses import SEG_LOSSES, CellSegmentationLoss
from ..train.checkpoint import safe_load
from ..train.trainer import Trainer, select_device
from .clouds import cloud_track_rows, event_clouds, track_clouds

__all__ = ["FocalTrackSegmenter", "ChargedFractionSegmenter", "OracleSegmenter", "DEFAULT_FEATURES",
           "EVENT_FEATURES"]

DEFAULT_FEATURES = ["type_onehot", "delta_r", "deta", "dphi", "layer", "log_energy", "noise_sigma", "log_track_pt",
                    "track_chi2_ndf"]
EVENT_FEATURES = ["type_onehot", "dr_nearest_track", "deta", "dphi", "layer", "log_energy", "noise_sigma",
                  "log_track_pt", "track_chi2_ndf"]
_SMALL = {"pointnet": dict(channels=(64, 128, 128), seg_hidden=(128, 64), head_hidden=()),
          "dgcnn": dict(k=16, edge_channels=(64, 64, 128), emb_dim=128, seg_hidden=(128, 64), head_hidden=())}


# ---------------------------------------------------------------------------------------------------- base
class _CellSegmenter:
    """Shared machinery: clouds -> padded tensors (+ kept-point index), model, training, prediction, persistence."""

    cloud_kind = "track"
    default_features = DEFAULT_FEATURES

    def __init__(self, model="pointnet", target="soft", loss="energy_weighted", max_points=256, features=None,
                 device="auto", seed=1, binary_threshold=0.5, gamma=2.0, **model_cfg):
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
        self.model_name, self.target, self.loss_name = model, target, loss
        self.max_points = None if max_points is None else int(max_points)
        self.features = list(features) if features is not None else list(self.default_features)
        resolve_features(self.features)
        self.device_name, self.seed = device, int(seed)
        self.binary_threshold, self.gamma = float(binary_threshold), float(gamma)
        self.model_cfg = {**_SMALL[model], **model_cfg}
        self.n_classes = 3 if target == "hard" else 2
        self.focal_class = 0 if target == "hard" else 1
        self.loss_fn = CellSegmentationLoss(loss, gamma)
        self.normaliser: Normaliser | None = None
        self.model: nn.Module | None = None
        self.history: list = []

    # ------------------------------------------------------------------ model
    def _build(self) -> nn.Module:
        torch.manual_seed(self.seed)
        cfg = dict(self.model_cfg)
        return build_model(self.model_name, in_channels=len(feature_columns(self.features)),
                           n_seg_classes=self.n_classes, **cfg)

    @property
    def n_params(self) -> int:
        if self.model is None:
            self.model = self._build()
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ data
    def make_clouds(self, events, geometry):
        raise NotImplementedError

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
        if with_targets:
            batch["y"] = self._targets(clouds, pad, sel, n)
        return batch, sel["idx"], sel["ev"][sel["idx"]] * n + sel["slot"]

    # ------------------------------------------------------------------ training
    def fit(self, train_events, val_events, geometry, epochs=10, batch_size=64, lr=1e-3, patience=3,
            max_minutes=None, log=print) -> dict:
        """Build clouds, fit the normaliser on the training clouds, train with early stopping on ``val_events``.

        Returns ``{"history", "best_epoch", "epochs_run", "seconds", "seconds_per_epoch", "n_train_clouds",
        "n_val_clouds", "n_params", "prep_seconds", "truncated_energy_fraction"}``.
        """
        t0 = time.perf_counter()
        tr = self.make_clouds(train_events, geometry)
        va = self.make_clouds(val_events, geometry)
        if len(tr) == 0 or len(va) == 0:
            raise ValueError(f"{type(self).__name__}.fit: no clouds (train {len(tr)}, val {len(va)}); "
                             "do the events have tracks reaching the calorimeter?")
        self.normaliser = Normaliser.fit(tr, self.features)
        dtr, _, _ = self.tensors(tr)
        dva, _, _ = self.tensors(va)
        e_all = float(np.clip(ak.to_numpy(ak.flatten(tr.points.energy)), 0, None).sum())
        e_kept = float(dtr["energy"].clamp_min(0).sum())
        prep = time.perf_counter() - t0
        self.model = self._build()
        trainer = Trainer(self.model, self.loss_fn, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                          max_minutes=max_minutes, device=self.device_name, seed=self.seed, progress=False, log=log)
        res = trainer.fit(dtr, dva)
        self.model = trainer.model
        self.history = res.history
        return {"history": res.history, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                "seconds": res.seconds, "seconds_per_epoch": res.seconds / max(res.epochs_run, 1),
                "n_train_clouds": len(tr), "n_val_clouds": len(va), "n_params": self.n_params,
                "prep_seconds": prep, "truncated_energy_fraction": 1.0 - e_kept / e_all if e_all > 0 else 0.0}

    def loss_on(self, events, geometry) -> float:
        """Mean loss of the trained model on the clouds of ``events`` (no gradient)."""
        batch, _, _ = self.tensors(self.make_clouds(events, geometry))
        dev = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            out = self.model({k: v.to(dev) for k, v in batch.items()})
            return float(self.loss_fn(out, {k: v.to(dev) for k, v in batch.items()})[0])

    # ------------------------------------------------------------------ prediction
    def predict_fraction(self, clouds, batch_size: int = 256) -> np.ndarray:
        """Predicted fraction in [0, 1] per CELL point of ``clouds`` (flattened in cloud order, cells only); cells
        dropped by ``max_points`` get 0."""
        if self.model is None or self.normaliser is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted; call fit() or load()")
        typ = ak.to_numpy(ak.flatten(clouds.points["type"], axis=1))
        out = np.zeros(typ.size, np.float64)
        dev = select_device(self.device_name)
        self.model.to(dev).eval()
        base = 0
        with torch.no_grad():
            for s in range(0, len(clouds), batch_size):
                chunk = clouds[s:s + batch_size]
                n_pts = int(ak.sum(ak.num(chunk.points, axis=1)))
                if n_pts == 0:
                    continue
                batch, idx, flat_slot = self.tensors(chunk, with_targets=False)
                res = self.model({k: v.to(dev) for k, v in batch.items()})
                p = torch.softmax(res["seg_logits"].float(), -1)[..., self.focal_class]
                out[base + idx] = p.reshape(-1).cpu().numpy().astype(np.float64)[flat_slot]
                base += n_pts
        return np.clip(out[typ == PointType.CELL], 0.0, 1.0)

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {"model": self.model_name, "target": self.target, "loss": self.loss_name,
                "max_points": self.max_points, "features": self.features, "device": self.device_name,
                "seed": self.seed, "binary_threshold": self.binary_threshold, "gamma": self.gamma,
                **self.model_cfg}

    def save(self, path) -> None:
        if self.model is None or self.normaliser is None:
            raise RuntimeError(f"{type(self).__name__}.save: nothing to save (not fitted)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"class": type(self).__name__, "config": self._config(),
                    "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
                    "normaliser": self.normaliser.to_dict(), "history": self.history}, path)

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
        return obj


# ---------------------------------------------------------------------------------------------------- per track
class FocalTrackSegmenter(_CellSegmenter):
    """Per-track cell segmentation (JetPointNet): fraction of each cell's energy belonging to the focal track.

    ``model``: "pointnet" or "dgcnn" (small defaults, override with ``**model_cfg``, e.g. ``channels=(32, 64)``);
    ``target``/``loss``: module docstring; ``dr_max``: cone of the clouds built by :meth:`fit`
    (:func:`~pcloud.pflow.clouds.track_clouds`); ``max_points``: truncation of :func:`~pcloud.data.batch.to_padded`.
    """

    cloud_kind = "track"
    default_features = DEFAULT_FEATURES

    def __init__(self, model="pointnet", target="soft", loss="energy_weighted", dr_max=0.2, max_points=256,
                 features=None, device="auto", seed=1, binary_threshold=0.5, gamma=2.0, **model_cfg):
        if not (np.isfinite(dr_max) and dr_max > 0):
            raise ValueError(f"FocalTrackSegmenter: dr_max must be > 0, found {dr_max!r}")
        self.dr_max = float(dr_max)
        super().__init__(model, target, loss, max_points, features, device, seed, binary_threshold, gamma,
                         **model_cfg)

    def _config(self) -> dict:
        return {**super()._config(), "dr_max": self.dr_max}

    def make_clouds(self, events, geometry):
        return track_clouds(events, geometry, dr_max=self.dr_max)

    def _targets(self, clouds, pad, sel, n) -> torch.Tensor:
        cell = (pad["type"] == int(PointType.CELL))
        if self.target == "soft":
            return torch.where(cell, pad["y_soft"], torch.zeros_like(pad["y_soft"]))
        if self.target == "binary":
            return torch.where(cell, pad["y_binary"], torch.full_like(pad["y_binary"], -1))
        return torch.from_numpy(hard3_labels(clouds, pad["y_hard"].numpy(), cell.numpy()))


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
        n_p = max(int(events.particles["event"].size), 1)
        key = h["cell"].astype(np.int64) * n_p + h["particle"]
        o = np.argsort(key, kind="stable")
        self._key, self._n_p = key[o], n_p
        ep = np.clip(h["energy_gev"], 0, None)
        self._e = ep[o]
        self._tot = np.bincount(h["cell"], ep, minlength=events.cells["event"].size)
        self.n_params = 0

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
