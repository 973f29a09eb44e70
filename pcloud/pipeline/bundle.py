"""Model bundles: everything needed to use a trained model later, loaded safely.

A bundle is a folder (the ``--out`` of ``pcloud train``) with

* ``bundle.json``: ``format`` (``"pcloud-model-bundle"``), ``bundle_version``, ``pcloud_version``, ``created``,
  ``task``, ``model`` (name, family, constructor arguments), ``data`` (features, ``max_points``, threshold,
  classes, per-section energy fields, selection, the CaloChallenge XML text if any), ``geometry``
  (:func:`pcloud.io.native.geometry_meta`), ``normaliser`` (feature means and standard deviations fitted on the
  training split), ``training`` (epochs, losses, splits) and ``weights`` (file name, byte size, SHA-256);
* ``weights.pt``: the model's ``state_dict`` (tensors only), read with ``torch.load(weights_only=True)``
  (:func:`pcloud.train.checkpoint.safe_load`): loading a bundle never unpickles arbitrary objects.

:func:`load_bundle` refuses, with one line naming the bundle: a folder without ``bundle.json``, unparsable JSON,
another format or bundle version, a bundle written by another pcloud minor version (models and preprocessing may
differ between versions; retrain, or load it with the version named in the message), weights whose size or
SHA-256 differ from the recorded ones (a corrupted or replaced file) and weights that do not fit the model.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..core.atomic import atomic_output
from ..data.normalise import Normaliser
from ..io.native import geometry_from_meta, geometry_meta
from ..train.checkpoint import CheckpointError, safe_load
from .batches import Batcher
from .models import build_from_spec, family

BUNDLE_FORMAT = "pcloud-model-bundle"
BUNDLE_VERSION = 1
BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"


class BundleError(ValueError):
    """A model bundle that cannot be used (one line naming the bundle and what is wrong)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _minor(version: str) -> tuple:
    return tuple(str(version).split(".")[:2])


@dataclass
class Bundle:
    """A loaded model bundle: the model (eval mode, CPU), its geometry, normaliser and recipe."""

    path: Path
    meta: dict
    model: torch.nn.Module
    geometry: object
    normaliser: Normaliser | None
    extra: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> list | None:
        return self.meta["data"].get("classes")

    @property
    def family(self) -> str:
        return self.meta["model"]["family"]

    def batcher(self) -> Batcher:
        """The batcher the model was trained with (same features, truncation, normaliser, global inputs)."""
        d = self.meta["data"]
        return Batcher(self.family, d["features"], d["max_points"], self.normaliser, self.geometry,
                       d["global_fields"])


def save_bundle(out, model: torch.nn.Module, task: str, model_name: str, model_kwargs: dict, data: dict, geometry,
                normaliser: Normaliser | None, training: dict) -> Path:
    """Write ``bundle.json`` and ``weights.pt`` into the folder ``out`` (atomically, weights first)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    with atomic_output(weights) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    meta = {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "pcloud_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "task": task,
            "model": {"name": model_name, "family": family(model_name), "kwargs": model_kwargs},
            "data": data, "geometry": geometry_meta(geometry),
            "normaliser": None if normaliser is None else normaliser.to_dict(), "training": training,
            "weights": {"file": WEIGHTS_FILE, "bytes": weights.stat().st_size, "sha256": _sha256(weights)}}
    with atomic_output(out / BUNDLE_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return out


def read_bundle_meta(path) -> dict:
    """``bundle.json`` of a bundle folder, checked for format, version and the keys every bundle has."""
    path = Path(path)
    f = path / BUNDLE_FILE if path.is_dir() else path
    if not f.is_file():
        raise BundleError(f"{path}: not a pcloud model bundle (no {BUNDLE_FILE}); give the --out folder of "
                          f"`pcloud train`")
    try:
        meta = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{f}: corrupted bundle: not readable JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{f}: expected format {BUNDLE_FORMAT!r}, found "
                          f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}")
    if meta.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(f"{f}: bundle version {meta.get('bundle_version')!r}, this pcloud reads version "
                          f"{BUNDLE_VERSION}")
    if _minor(meta.get("pcloud_version", "?")) != _minor(__version__):
        raise BundleError(f"{f}: made by pcloud {meta.get('pcloud_version')}, this is pcloud {__version__}; "
                          f"models and preprocessing may differ between versions: retrain, or use pcloud "
                          f"{meta.get('pcloud_version')}")
    missing = [k for k in ("task", "model", "data", "geometry", "weights") if k not in meta]
    if missing:
        raise BundleError(f"{f}: corrupted bundle: missing {missing}")
    return meta


def load_bundle(path, device: str = "cpu") -> Bundle:
    """Load a bundle folder (module docstring); the model comes back in eval mode on ``device``."""
    path = Path(path)
    meta = read_bundle_meta(path)
    folder = path if path.is_dir() else path.parent
    w = meta["weights"]
    wfile = folder / w["file"]
    if not wfile.is_file():
        raise BundleError(f"{folder}: corrupted bundle: weights file {w['file']} is missing")
    if wfile.stat().st_size != w.get("bytes") or _sha256(wfile) != w.get("sha256"):
        raise BundleError(f"{wfile}: corrupted bundle: the weights differ from the ones recorded in {BUNDLE_FILE} "
                          f"(size or SHA-256)")
    try:
        state = safe_load(wfile)
        geometry = geometry_from_meta(meta["geometry"], folder / BUNDLE_FILE)
        model = build_from_spec(meta["model"]["name"], meta["model"]["kwargs"], geometry)
        model.load_state_dict(state)
    except CheckpointError as err:
        raise BundleError(str(err)) from None
    except (RuntimeError, TypeError, KeyError, ValueError) as err:
        raise BundleError(f"{folder}: corrupted bundle: the weights do not fit model "
                          f"{meta['model'].get('name')!r} ({str(err).splitlines()[0][:200]})") from None
    nd = meta.get("normaliser")
    norm = None if nd is None else Normaliser(nd["features"], nd["mean"], nd["std"], nd.get("n_points", 0),
                                              nd.get("fitted_on", {}))
    model.eval().to(device)
    return Bundle(path=folder, meta=meta, model=model, geometry=geometry, normaliser=norm)
