"""``pcloud bench singles``: sparse point-cloud models against dense CNNs and shower-shape baselines.

For every task of :mod:`pcloud.bench.singles.tasks` the same simulated showers are split by event number (seeded, saved as
``splits_<task>.json``) and every model is trained on the training split, early-stopped on the validation split and
measured on the test split:

* ID: ROC, AUC, background rejection 1/FPR (with binomial error) at the task's signal-efficiency working points,
  relative rejection change w.r.t. the shower-shape FCN (seed 004 Tables 3-4), accuracy vs energy and eta;
* energy (joint ID + energy tasks): bias and resolution vs true energy per particle type with the fit
  sigma/E = a/sqrt(E) (+) b (+) c/E;
* angles/position (regression task): MAE and RMSE per target;
* compute: trainable parameters, inference events/s and peak tensor memory for a batch of 128 test events,
  training time and time to reach a fixed validation loss (the loss every learned model of the task reaches).

A separate occupancy study measures inference cost of point vs dense models as the cell threshold (points per
event) and the ECAL granularity change (models untrained: cost does not depend on the weights).

Outputs in ``--out``: ``results.json``, ``report.md``, ``splits_<task>.json`` and PNG plots.
"""
from __future__ import annotations

from .config import SinglesConfig, config_from_dict
from .run import run_singles, run_task
from .tasks import TASKS, SinglesTask, build_dataset

__all__ = ["SinglesConfig", "config_from_dict", "run_singles", "run_task", "TASKS", "SinglesTask", "build_dataset"]
