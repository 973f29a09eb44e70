"""A small, model-agnostic training loop with checkpoints, resume and early stopping.

Data are either a dict of tensors with the event axis first (sliced into mini-batches here, the fast path for
datasets that fit in memory) or any re-iterable of batch dicts (e.g. a torch DataLoader over a streamed Parquet store).
The model maps a batch dict to a dict of outputs; ``loss_fn(outputs, batch) -> (loss, {name: float})``.

Checkpoints: ``run_dir/last.pt`` after every epoch (model, optimiser, epoch, best validation loss, the early-stopping
counter, history, training time, RNG states and the run's ``settings``) and ``run_dir/best.pt`` whenever the validation
loss improves. ``resume=True`` continues from ``last.pt`` exactly where the uninterrupted run would be (same RNG
states, same patience counter; a run that had already stopped early stays stopped), and refuses a checkpoint written
with other ``settings`` (naming the keys that differ), so a resumed run can never silently reuse models trained with
another seed or recipe. ``epochs`` and ``max_minutes`` are not settings: they may be raised to train longer.
Checkpoints are read with :func:`pcloud.train.checkpoint.safe_load` (tensors, numbers, strings, lists, dicts only).
Device: ``"auto"`` picks CUDA when available, else CPU. On CUDA the forward pass runs under bfloat16 autocast when
``amp`` is set; on CPU everything is float32.

Recipe (opt-in; the defaults keep the original behaviour: Adam at a constant learning rate, gradient-norm clipping
at 5, shuffled mini-batches):

* ``optimizer``: ``"adam"`` or ``"adamw"`` (decoupled weight decay, Loshchilov & Hutter, arXiv:1711.05101);
* ``schedule``: ``"constant"``, ``"cosine"`` (linear warm-up over the first ``warmup`` fraction of the planned steps,
  then a half cosine down to ``final_lr_ratio * lr``; Loshchilov & Hutter, arXiv:1608.03983) or ``"onecycle"``
  (Smith & Topin, arXiv:1708.07120, as ``torch.optim.lr_scheduler.OneCycleLR`` with cosine annealing: from
  ``lr / 25`` up to ``lr`` over the ``warmup`` fraction, then down to ``lr / 25 / 1e4``); :func:`lr_factor`. The
  factor depends only on the training progress ``p`` = optimiser steps / planned steps (``epochs`` x batches per
  epoch), so a resumed run follows the same schedule; with ``schedule_time=True`` and a ``max_minutes`` budget,
  ``p = max(p_steps, elapsed / budget)`` so that the schedule ends when the budget does;
* ``sample_weights`` (dict data only): per-event weights; each epoch draws as many events as there are, with
  replacement, with these probabilities (class-balanced or energy-weighted sampling;
  :func:`class_balanced_weights`).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..core.atomic import atomic_output
from .checkpoint import CheckpointError, safe_load


def select_device(name: str = "auto") -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
    return dev


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def n_events(data) -> int:
    if isinstance(data, dict):
        return int(next(iter(data.values())).shape[0])
    return sum(int(next(iter(b.values())).shape[0]) for b in data)


SCHEDULES = ("constant", "cosine", "onecycle")
OPTIMIZERS = ("adam", "adamw")


def _cos_interp(a: float, b: float, t: float) -> float:
    """From ``a`` at ``t = 0`` to ``b`` at ``t = 1`` along a half cosine."""
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def lr_factor(schedule: str, progress: float, warmup: float = 0.05, final_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at training ``progress`` in [0, 1] (module docstring).

    * ``"constant"``: 1;
    * ``"cosine"``: ``max(progress / warmup, 0.01)`` during the warm-up, then
      ``final_ratio + (1 - final_ratio) (1 + cos(pi (progress - warmup) / (1 - warmup))) / 2``;
    * ``"onecycle"``: cosine from ``1/25`` to 1 over the warm-up, then cosine from 1 to ``1/25/1e4``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1), found {warmup}")
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        if p < warmup:
            return max(p / warmup, 0.01)
        return _cos_interp(1.0, final_ratio, (p - warmup) / (1.0 - warmup))
    lo = 1.0 / 25.0
    if p < warmup:
        return _cos_interp(lo, 1.0, p / warmup)
    return _cos_interp(1.0, lo / 1e4, (p - warmup) / (1.0 - warmup))


def class_balanced_weights(labels) -> torch.Tensor:
    """Per-event sampling weights ``1 / count(label)`` (each class drawn equally often on average)."""
    lab = torch.as_tensor(labels).long().reshape(-1)
    if lab.numel() == 0:
        raise ValueError("class_balanced_weights: no labels")
    cnt = torch.bincount(lab - lab.min())
    return 1.0 / cnt[lab - lab.min()].double()


def iterate_batches(data, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                    weights: torch.Tensor | None = None) -> Iterable[dict]:
    """Mini-batches of a dict of tensors (or pass-through for an iterable of batches). ``weights`` (with
    ``shuffle``): draw the events with replacement with these probabilities."""
    if not isinstance(data, dict):
        yield from data
        return
    n = n_events(data)
    if shuffle and weights is not None:
        order = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield {k: v[idx] for k, v in data.items()}


def _set_epoch(data, epoch: int) -> None:
    """Tell a stream (or the dataset of a DataLoader) the epoch, for its shuffling."""
    target = getattr(data, "dataset", data)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    epochs_run: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    time_to_target_s: float | None = None   # wall time until the validation loss first reached ``target_val_loss``


def _use_progress(setting) -> bool:
    if setting == "auto":
        return sys.stdout.isatty() and not os.environ.get("CI")
    return bool(setting)


class Trainer:
    """Train ``model`` with Adam; see the module docstring."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, run_dir: str | Path | None = None,
                 epochs: int = 20, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
                 patience: int = 5, min_delta: float = 0.0, grad_clip: float | None = 5.0, amp: bool = True,
                 device: str = "auto", seed: int = 1, progress="auto", max_minutes: float | None = None,
                 target_val_loss: float | None = None, log: Callable[[str], None] | None = print,
                 settings: dict | None = None, optimizer: str = "adam", schedule: str = "constant",
                 warmup: float = 0.05, final_lr_ratio: float = 0.0, schedule_time: bool = False,
                 sample_weights=None, **_ignored):
        self.device = select_device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.run_dir = Path(run_dir) if run_dir else None
        self.epochs, self.batch_size, self.patience, self.min_delta = epochs, batch_size, patience, min_delta
        self.grad_clip, self.seed, self.max_minutes = grad_clip, seed, max_minutes
        self.amp = bool(amp) and self.device.type == "cuda"
        self.progress = _use_progress(progress)
        self.target_val_loss = target_val_loss
        self.log = log or (lambda s: None)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Trainer: optimizer must be one of {OPTIMIZERS}, found {optimizer!r}")
        lr_factor(schedule, 0.0, warmup, final_lr_ratio)  # validates the schedule settings
        opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.base_lr, self.schedule, self.warmup, self.final_lr_ratio = float(lr), schedule, float(warmup), \
            float(final_lr_ratio)
        self.schedule_time = bool(schedule_time)
        self.sample_weights = None if sample_weights is None else torch.as_tensor(sample_weights).double()
        if self.sample_weights is not None and (self.sample_weights.dim() != 1 or
                                                bool((self.sample_weights < 0).any()) or
                                                not float(self.sample_weights.sum()) > 0):
            raise ValueError("Trainer: sample_weights must be a 1-d tensor of non-negative weights, not all 0")
        self.steps_per_epoch: int | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.start_epoch = 0
        self.result = TrainResult()
        self.bad_epochs = 0
        self.finished = False
        self.seconds_before = 0.0
        #: context entered around each epoch's batch loop (distributed training: DDP's Join for uneven shards)
        self.batch_context = contextlib.nullcontext
        #: called with each epoch's history record (e.g. a scan's pruning); may raise to stop the run
        self.on_epoch = None
        # the run's identity: what a checkpoint must match to be resumed (JSON-like values only)
        self.settings = {"seed": int(seed), "batch_size": int(batch_size), "lr": float(lr),
                         "weight_decay": float(weight_decay), "patience": int(patience), "min_delta": float(min_delta),
                         "grad_clip": grad_clip, "model": type(model).__name__,
                         "n_params": int(sum(q.numel() for q in model.parameters())), **(settings or {})}
        # recipe settings enter the identity only when they differ from the defaults (older checkpoints resume)
        recipe = {"optimizer": (optimizer, "adam"), "schedule": (schedule, "constant"),
                  "sample_weights": (None if sample_weights is None else "custom", None)}
        if schedule != "constant":
            recipe.update(warmup=(float(warmup), None), final_lr_ratio=(float(final_lr_ratio), None),
                          schedule_time=(bool(schedule_time), None))
        self.settings.update({k: v for k, (v, default) in recipe.items() if v != default})

    # -------------------------------------------------------------------------------------------- checkpoints
    def _state(self, epoch: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                "best_val_loss": self.result.best_val_loss, "best_epoch": self.result.best_epoch,
                "history": self.result.history, "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "bad_epochs": self.bad_epochs, "finished": self.finished,
                "stopped_early": self.result.stopped_early, "seconds": self.seconds_before + self._elapsed(),
                "settings": self.settings}

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if getattr(self, "_t0", None) is not None else 0.0

    def save(self, name: str, epoch: int) -> Path | None:
        if self.run_dir is None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / name
        with atomic_output(path) as tmp:
            torch.save(self._state(epoch), tmp)
        return path

    def resume(self) -> bool:
        """Load ``run_dir/last.pt`` if present; returns True when a checkpoint was loaded."""
        if self.run_dir is None or not (self.run_dir / "last.pt").exists():
            return False
        st = safe_load(self.run_dir / "last.pt", map_location=self.device)
        saved = st.get("settings")
        if saved is None:
            raise CheckpointError(f"{self.run_dir / 'last.pt'}: a checkpoint without run settings (written by an "
                                  f"older pcloud); it cannot be checked against this run: start without --resume")
        diff = {k: (saved.get(k), v) for k, v in self.settings.items() if saved.get(k) != v}
        diff.update({k: (v, None) for k, v in saved.items() if k not in self.settings})
        if diff:
            text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(f"{self.run_dir / 'last.pt'}: resume refused: the checkpoint was written with "
                                  f"other settings ({text}); rerun with the original settings, or without --resume "
                                  f"(after removing {self.run_dir})")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.start_epoch = int(st["epoch"]) + 1
        self.result.best_val_loss = float(st["best_val_loss"])
        self.result.best_epoch = int(st["best_epoch"])
        self.result.history = list(st["history"])
        self.generator.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        self.bad_epochs = int(st["bad_epochs"])
        self.finished = bool(st["finished"])
        self.result.stopped_early = bool(st["stopped_early"])
        self.result.epochs_run = self.start_epoch
        self.seconds_before = float(st["seconds"])
        self.log(f"resumed from {self.run_dir / 'last.pt'} at epoch {self.start_epoch}")
        return True

    def load_best(self) -> None:
        if self.run_dir is not None and (self.run_dir / "best.pt").exists():
            st = safe_load(self.run_dir / "best.pt", map_location=self.device)
            self.model.load_state_dict(st["model"])
        elif getattr(self, "_best_state", None) is not None:
            self.model.load_state_dict(self._best_state)

    # -------------------------------------------------------------------------------------------- loops
    def _forward(self, batch: dict):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(batch)
        if self.amp:
            out = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}
        return out

    def evaluate_loss(self, data) -> tuple[float, dict]:
        self.model.eval()
        tot, n, logs = 0.0, 0, {}
        with torch.no_grad():
            for batch in iterate_batches(data, self.batch_size, shuffle=False):
                batch = to_device(batch, self.device)
                out = self._forward(batch)
                loss, parts = self.loss_fn(out, batch)
                b = int(next(iter(batch.values())).shape[0])
                tot += float(loss) * b
                n += b
                for k, v in parts.items():
                    logs[k] = logs.get(k, 0.0) + float(v) * b
        if n == 0:
            raise ValueError("evaluate_loss: validation data is empty")
        return tot / n, {k: v / n for k, v in logs.items()}

    def training_progress(self, epoch: int, step: int) -> float:
        """Training progress in [0, 1] at optimiser ``step`` of ``epoch`` (module docstring)."""
        if self.steps_per_epoch:
            p = (epoch * self.steps_per_epoch + step) / (self.epochs * self.steps_per_epoch)
        else:
            p = epoch / max(self.epochs, 1)
        if self.schedule_time and self.max_minutes:
            p = max(p, (self.seconds_before + self._elapsed()) / (60.0 * self.max_minutes))
        return min(p, 1.0)

    def _set_lr(self, epoch: int, step: int) -> None:
        if self.schedule == "constant":
            return
        f = lr_factor(self.schedule, self.training_progress(epoch, step), self.warmup, self.final_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * f

    def _train_epoch(self, batches, epoch: int) -> tuple[float, int]:
        """One pass of optimiser steps over ``batches``; returns the summed loss x events and the events."""
        tr_loss, tr_n = 0.0, 0
        step = 0
        for batch in batches:
            if int(next(iter(batch.values())).shape[0]) < 2:
                continue  # a 1-event remainder batch: batch norm cannot train on it (dropped, as drop_last)
            self._set_lr(epoch, step)
            step += 1
            batch = to_device(batch, self.device)
            out = self._forward(batch)
            loss, _ = self.loss_fn(out, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: training loss is {float(loss.detach())} (check inputs and lr)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            b = int(next(iter(batch.values())).shape[0])
            tr_loss += float(loss.detach()) * b
            tr_n += b
        return tr_loss, tr_n

    def fit(self, train, val, resume: bool = False) -> TrainResult:
        """Train on ``train`` with early stopping on ``val`` (dicts of tensors or re-iterables of batches; a stream
        with ``set_epoch`` (or a DataLoader over one) is told the epoch, so it can reshuffle)."""
        if isinstance(train, dict) and n_events(train) == 0:
            raise ValueError("Trainer.fit: training data is empty")
        seed_everything(self.seed)
        if resume:
            self.resume()
        t0 = self._t0 = time.perf_counter()
        self._best_state = None
        if isinstance(train, dict):
            self.steps_per_epoch = max(1, n_events(train) // self.batch_size
                                       + (1 if n_events(train) % self.batch_size >= 2 else 0))
        elif hasattr(train, "__len__"):
            try:
                self.steps_per_epoch = max(1, len(train))
            except TypeError:
                self.steps_per_epoch = None
        for epoch in range(self.start_epoch, self.epochs):
            if self.finished:  # a resumed run that had stopped early (or on its budget) stays stopped
                break
            self.model.train()
            _set_epoch(train, epoch)
            batches = iterate_batches(train, self.batch_size, shuffle=True, generator=self.generator,
                                      weights=self.sample_weights)
            if self.progress:
                from tqdm import tqdm

                batches = tqdm(batches, desc=f"epoch {epoch}", leave=False,
                               total=math.ceil(n_events(train) / self.batch_size) if isinstance(train, dict) else None)
            tr_loss, tr_n = 0.0, 0
            with self.batch_context():
                tr_loss, tr_n = self._train_epoch(batches, epoch)
            if tr_n == 0:
                raise ValueError("Trainer.fit: training data is empty (no batch of at least 2 events)")
            val_loss, parts = self.evaluate_loss(val)
            elapsed = self.seconds_before + time.perf_counter() - t0
            rec = {"epoch": epoch, "train_loss": tr_loss / max(tr_n, 1), "val_loss": val_loss, "seconds": elapsed,
                   "lr": float(self.optimizer.param_groups[0]["lr"]),
                   **{f"val_{k}": v for k, v in parts.items()}}
            self.result.history.append(rec)
            if self.on_epoch is not None:
                self.on_epoch(rec)
            if self.target_val_loss is not None and self.result.time_to_target_s is None \
                    and val_loss <= self.target_val_loss:
                self.result.time_to_target_s = elapsed
            improved = val_loss < self.result.best_val_loss - self.min_delta
            if improved:
                self.result.best_val_loss, self.result.best_epoch = val_loss, epoch
                self.bad_epochs = 0
                if self.run_dir is None:
                    self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    self.save("best.pt", epoch)
            else:
                self.bad_epochs += 1
            self.result.epochs_run = epoch + 1
            stop = None
            if self.bad_epochs >= self.patience:
                self.result.stopped_early = True
                stop = f"early stop: no improvement for {self.patience} epochs (best epoch {self.result.best_epoch})"
            elif self.max_minutes is not None and elapsed > 60 * self.max_minutes:
                stop = f"stopping: time budget of {self.max_minutes} min reached"
            self.finished = stop is not None
            self.save("last.pt", epoch)
            self.log(f"epoch {epoch}: train {rec['train_loss']:.4g}  val {val_loss:.4g}"
                     f"{'  *' if improved else ''}  ({elapsed:.1f} s)")
            if stop:
                self.log(stop)
                break
        self.result.seconds = self.seconds_before + time.perf_counter() - t0
        self.load_best()
        return self.result

    def predict(self, data) -> dict[str, np.ndarray]:
        """Concatenated model outputs (as numpy) over ``data`` in order."""
        self.model.eval()
        outs: dict[str, list] = {}
        with torch.no_grad():
            for batch in iterate_batches(data, self.batch_size, shuffle=False):
                out = self._forward(to_device(batch, self.device))
                for k, v in out.items():
                    if torch.is_tensor(v):
                        outs.setdefault(k, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}
