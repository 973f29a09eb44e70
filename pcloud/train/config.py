"""Training configuration: one YAML/TOML file plus ``key=value`` overrides from the command line.

A config is a nested dict. ``load_config(path, overrides=["train.lr=3e-4", "model.k=16"])`` reads the file,
applies the overrides (values parsed as YAML scalars, so ``true``, ``1e-3``, ``[1,2]`` work) and returns the dict.
Unknown top-level sections are kept (so a task can carry its own settings); a key path that crosses a non-dict value
is an error that names the key.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

DEFAULTS: dict = {
    "seed": 1,
    "device": "auto",
    "train": {
        "epochs": 20,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "patience": 5,          # early stopping: epochs without validation improvement
        "min_delta": 0.0,       # improvement smaller than this does not count
        "grad_clip": 5.0,
        "amp": True,            # mixed precision (bfloat16 autocast) on CUDA only
        "progress": "auto",     # tqdm bars when stdout is a terminal and CI is unset
        "max_minutes": None,    # wall-clock budget per training run
    },
    "split": {"fractions": [0.7, 0.15, 0.15], "seed": 12345},
}


def deep_update(base: dict, upd: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _parse_scalar(raw: str):
    """YAML scalar, except that numbers like ``3e-4`` (a string in YAML 1.1) become floats."""
    if not raw.strip():
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(cfg: dict, text: str) -> dict:
    """Apply one ``a.b.c=value`` override in place and return ``cfg``."""
    if "=" not in text:
        raise ValueError(f"config override {text!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"config override {text!r}: empty key")
    value = _parse_scalar(raw)
    node = cfg
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"config override {text!r}: {'.'.join(parts[:i + 1])} is {nxt!r}, not a section")
        node = nxt
    node[parts[-1]] = value
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None,
                defaults: bool = True) -> dict:
    """Config from :data:`DEFAULTS` (unless ``defaults=False``), ``base``, the file and the overrides, in that order."""
    cfg = deep_update(DEFAULTS if defaults else {}, base or {})
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path}: expected a mapping at top level, found {type(data).__name__}")
        cfg = deep_update(cfg, data)
    for o in overrides or []:
        apply_override(cfg, o)
    return cfg
