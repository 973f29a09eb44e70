"""Fully-connected network on shower-shape variables (seed 004 §3.1.1).

The paper's network: five blocks ``Linear -> LeakyReLU -> Dropout -> BatchNorm`` of widths 512, 1024, 2048, 1024,
128 and a one-unit sigmoid output, trained with Adam (learning rate 1e-3) on the cross-entropy, batch size 128.
Its stated size, 4,873,985 trainable parameters for 20 inputs (5,121,793 for the 504 pixels, §3.1.2), is
reproduced exactly when the last (128-wide) block has no batch normalisation, which is therefore the default
(``batchnorm_last=False``). :data:`PAPER_WIDTHS` gives the paper's widths; the default widths are small for CPU.
LeakyReLU slope 0.3 is the Keras default (the paper used Keras and states no value); the dropout rate is not given
in the paper (default 0.2 here).

Inputs are standardised with the mean and standard deviation of the training set (``standardize=True``). Binary
problems use one logit (sigmoid, BCE) and multi-class ones K logits (softmax, cross-entropy); ``predict_proba``
always returns (N, K) columns ordered as ``classes_``.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ._common import check_fitted, check_xy

PAPER_WIDTHS = (512, 1024, 2048, 1024, 128)


class ShowerShapeFCN(nn.Module):
    """Blocks of Linear -> LeakyReLU -> Dropout -> BatchNorm1d (no batch norm in the last block by default), then a
    linear output of ``n_outputs`` logits."""

    def __init__(self, n_inputs: int, n_outputs: int = 1, widths=(64, 64, 32), dropout: float = 0.2,
                 negative_slope: float = 0.3, batchnorm_last: bool = False):
        super().__init__()
        if n_inputs < 1 or n_outputs < 1 or not widths:
            raise ValueError(f"ShowerShapeFCN: need n_inputs >= 1, n_outputs >= 1 and some widths; got {n_inputs}, "
                             f"{n_outputs}, {widths}")
        layers: list[nn.Module] = []
        prev = n_inputs
        for i, w in enumerate(widths):
            layers += [nn.Linear(prev, w), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
            if i < len(widths) - 1 or batchnorm_last:
                layers.append(nn.BatchNorm1d(w))
            prev = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_outputs)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.BatchNorm1d)):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers and not counted, as in Keras)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


class FCNClassifier:
    """Train/predict wrapper around :class:`ShowerShapeFCN` with the common baseline interface.

    Training: Adam (``lr``), mini-batches of ``batch_size`` shuffled with a seeded generator, up to ``epochs``
    epochs; with ``X_val``/``y_val`` early stopping on the validation loss (``patience`` epochs) restores the best
    weights. All random numbers (initialisation, shuffling, dropout) come from ``seed`` inside a forked torch RNG,
    so the global torch RNG is left untouched. ``history_`` holds per-epoch ``train_loss`` / ``val_loss``.
    """

    def __init__(self, widths=(64, 64, 32), dropout: float = 0.2, negative_slope: float = 0.3,
                 batchnorm_last: bool = False, lr: float = 1e-3, batch_size: int = 128, epochs: int = 30,
                 patience: int = 5, weight_decay: float = 0.0, standardize: bool = True, seed: int = 0,
                 device: str = "cpu"):
        self.widths = tuple(widths)
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.batchnorm_last = batchnorm_last
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.seed = seed
        self.device = torch.device(device)
        self.model_ = None

    # ------------------------------------------------------------------ helpers
    def _prep(self, X) -> torch.Tensor:
        X = (X - self.mean_) / self.scale_
        return torch.as_tensor(X, dtype=torch.float32, device=self.device)

    def _loss(self, logits, target):
        if self.n_outputs_ == 1:
            return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.float())
        return nn.functional.cross_entropy(logits, target)

    def _eval_loss(self, X, y) -> float:
        self.model_.eval()
        with torch.no_grad():
            tot = 0.0
            for a in range(0, X.shape[0], 4096):
                tot += float(self._loss(self.model_(X[a:a + 4096]), y[a:a + 4096])) * min(4096, X.shape[0] - a)
        return tot / X.shape[0]

    # ------------------------------------------------------------------ interface
    def fit(self, X_train, y_train, X_val=None, y_val=None) -> "FCNClassifier":
        X, y = check_xy(X_train, y_train, "FCNClassifier.fit")
        self.classes_, yi = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"FCNClassifier.fit: need at least 2 classes, found {self.classes_}")
        self.n_features_ = X.shape[1]
        self.n_outputs_ = 1 if self.classes_.size == 2 else int(self.classes_.size)
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Xt = self._prep(X)
        yt = torch.as_tensor(yi, dtype=torch.long, device=self.device)
        has_val = X_val is not None and y_val is not None
        if has_val:
            Xv, yv = check_xy(X_val, y_val, "FCNClassifier.fit (validation)", self.n_features_)
            yvi = np.searchsorted(self.classes_, yv)
            if not np.all(self.classes_[np.clip(yvi, 0, self.classes_.size - 1)] == yv):
                raise ValueError("FCNClassifier.fit: y_val holds labels absent from y_train")
            Xv, yv = self._prep(Xv), torch.as_tensor(yvi, dtype=torch.long, device=self.device)
        self.history_ = {"train_loss": [], "val_loss": []}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            self.model_ = ShowerShapeFCN(self.n_features_, self.n_outputs_, self.widths, self.dropout,
                                         self.negative_slope, self.batchnorm_last).to(self.device)
            opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            best, best_state, bad = np.inf, None, 0
            n = Xt.shape[0]
            for _ in range(self.epochs):
                self.model_.train()
                perm = torch.randperm(n, generator=gen).to(self.device)
                tot = 0.0
                for a in range(0, n, self.batch_size):
                    idx = perm[a:a + self.batch_size]
                    if idx.numel() < 2 and n >= 2:    # BatchNorm needs > 1 sample per batch
                        continue
                    opt.zero_grad()
                    loss = self._loss(self.model_(Xt[idx]), yt[idx])
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * idx.numel()
                self.history_["train_loss"].append(tot / n)
                if has_val:
                    vl = self._eval_loss(Xv, yv)
                    self.history_["val_loss"].append(vl)
                    if vl < best - 1e-7:
                        best, best_state, bad = vl, copy.deepcopy(self.model_.state_dict()), 0
                    else:
                        bad += 1
                        if bad >= self.patience:
                            break
            if best_state is not None:
                self.model_.load_state_dict(best_state)
        self.model_.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_fitted(self, "model_")
        Xt = self._prep(check_xy(X, None, "FCNClassifier.predict_proba", self.n_features_))
        self.model_.eval()
        with torch.no_grad():
            logits = torch.cat([self.model_(Xt[a:a + 4096]) for a in range(0, Xt.shape[0], 4096)]) \
                if Xt.shape[0] else torch.zeros(0, self.n_outputs_)
        if self.n_outputs_ == 1:
            p = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float64)
            return np.stack([1.0 - p, p], axis=1)
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def n_params(self) -> int:
        check_fitted(self, "model_")
        return count_parameters(self.model_)
