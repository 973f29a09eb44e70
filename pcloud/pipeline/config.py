"""The recipe of ``pcloud train``: data, split, model and training settings in one declarative config.

The defaults live in ``pcloud/configs/train.yaml`` (documented there); a user file and ``--set KEY=VALUE`` overrides
are applied on top (:func:`pcloud.train.config.load_config`). :func:`run_config` checks the keys and values and
returns a :class:`RunConfig`; an unknown key or a bad value is an error naming the key.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..nn.losses import SEG_LOSSES
from ..train.config import load_config
from .models import MODEL_NAMES

TASKS = ("id", "energy", "id+energy", "pflow")
DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "configs" / "train.yaml"
_SECTIONS = {"task", "seed", "device", "data", "split", "model", "train"}


@dataclass
class RunConfig:
    task: str
    seed: int
    device: str
    data: dict
    split: dict
    model: dict
    train: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _positive_int(v, key):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"config {key}: expected a positive integer, found {v!r}")
    return v


def _check_known(d: dict, known: set, where: str):
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"config: unknown key(s) {[f'{where}.{k}' for k in unknown]}; known: "
                         f"{sorted(f'{where}.{k}' for k in known)}")


def run_config(path=None, overrides=(), **cli) -> RunConfig:
    """The recipe from the defaults, the file ``path``, the ``--set`` overrides and the command-line values
    ``cli`` (``data`` specs are appended to ``data.files``; ``task``, ``model``, ``epochs``, ``device``, ``seed``
    replace their keys when not None)."""
    base = load_config(DEFAULTS_FILE, defaults=False)
    cfg = load_config(path, list(overrides or []), base=base, defaults=False)
    _check_known(cfg, _SECTIONS, "<top>")
    defaults = load_config(DEFAULTS_FILE, defaults=False)
    for sec in ("data", "split", "model", "train"):
        if not isinstance(cfg.get(sec), dict):
            raise ValueError(f"config {sec}: expected a section (mapping), found {cfg.get(sec)!r}")
        _check_known(cfg[sec], set(defaults[sec]), sec)
    if cli.get("data"):
        cfg["data"]["files"] = list(cfg["data"].get("files") or []) + list(cli["data"])
    for key, target in (("task", ("task",)), ("model", ("model", "name")), ("epochs", ("train", "epochs")),
                        ("device", ("device",)), ("seed", ("seed",)), ("xml", ("data", "xml"))):
        if cli.get(key) is not None:
            node = cfg
            for p in target[:-1]:
                node = node[p]
            node[target[-1]] = cli[key]
    return _validated(cfg)


def _validated(cfg: dict) -> RunConfig:
    if cfg["task"] not in TASKS:
        raise ValueError(f"config task: expected one of {TASKS}, found {cfg['task']!r}")
    if cfg["model"]["name"] not in MODEL_NAMES:
        raise ValueError(f"config model.name: unknown model {cfg['model']['name']!r}; known: {', '.join(MODEL_NAMES)}")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise ValueError(f"config device: expected auto, cpu or cuda, found {cfg['device']!r}")
    d, t = cfg["data"], cfg["train"]
    if not d.get("files"):
        raise ValueError("no input data: give --data FILE[:LABEL] (or data.files in the config)")
    if not (isinstance(d["threshold_mev"], (int, float)) and math.isfinite(d["threshold_mev"])
            and d["threshold_mev"] >= 0):
        raise ValueError(f"config data.threshold_mev: expected a finite value >= 0, found {d['threshold_mev']!r}")
    for key in ("max_points", "chunk_events"):
        _positive_int(d[key], f"data.{key}")
    for key in ("epochs", "batch_size", "shuffle_buffer"):
        _positive_int(t[key], f"train.{key}")
    if not isinstance(t["workers"], int) or t["workers"] < 0:
        raise ValueError(f"config train.workers: expected an integer >= 0, found {t['workers']!r}")
    if not (isinstance(t["lr"], (int, float)) and t["lr"] > 0):
        raise ValueError(f"config train.lr: expected a positive number, found {t['lr']!r}")
    if t.get("optimizer", "adam") not in ("adam", "adamw"):
        raise ValueError(f"config train.optimizer: expected adam or adamw, found {t['optimizer']!r}")
    if t.get("schedule", "constant") not in ("constant", "cosine", "onecycle"):
        raise ValueError(f"config train.schedule: expected constant, cosine or onecycle, found {t['schedule']!r}")
    for key, lo, hi in (("warmup", 0.0, 1.0), ("weight_decay", 0.0, math.inf)):
        v = t.get(key, 0.0)
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and lo <= v < hi):
            raise ValueError(f"config train.{key}: expected a number in [{lo:g}, {hi:g}), found {v!r}")
    mp = d.get("pflow_max_points", 0)
    if isinstance(mp, bool) or not isinstance(mp, int) or mp < 0:
        raise ValueError(f"config data.pflow_max_points: expected an integer >= 0 (0: every point), found {mp!r}")
    if d.get("pflow_cells", "topo") not in ("topo", "all"):
        raise ValueError(f"config data.pflow_cells: expected topo or all, found {d['pflow_cells']!r}")
    if t.get("pflow_loss", "ce") not in SEG_LOSSES:
        raise ValueError(f"config train.pflow_loss: expected one of {', '.join(SEG_LOSSES)}, found "
                         f"{t['pflow_loss']!r}")
    share = t.get("pflow_energy_share", 0.5)
    if isinstance(share, bool) or not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
        raise ValueError(f"config train.pflow_energy_share: expected a number in [0, 1], found {share!r}")
    if t.get("pflow_ragged", "auto") not in ("auto", True, False):
        raise ValueError(f"config train.pflow_ragged: expected auto, true or false, found {t['pflow_ragged']!r}")
    thr = t.get("pflow_threshold", "val")
    if not (thr is None or thr == "val" or (isinstance(thr, (int, float)) and not isinstance(thr, bool)
                                           and 0.0 < thr < 1.0)):
        raise ValueError(f"config train.pflow_threshold: expected val, a number in (0, 1) or null, found {thr!r}")
    fr = cfg["split"]["fractions"]
    if not isinstance(fr, dict) or not {"train", "val", "test"} <= set(fr):
        raise ValueError(f"config split.fractions: expected {{train, val, test}} fractions, found {fr!r}")
    if isinstance(cfg["seed"], bool) or not isinstance(cfg["seed"], int) or cfg["seed"] < 0:
        raise ValueError(f"config seed: expected an integer >= 0, found {cfg['seed']!r}")
    if not isinstance(d["selection"], dict):
        raise ValueError(f"config data.selection: expected {{field: [min, max]}}, found {d['selection']!r}")
    return RunConfig(task=cfg["task"], seed=cfg["seed"], device=cfg["device"], data=d, split=cfg["split"],
                     model=cfg["model"], train=t)
