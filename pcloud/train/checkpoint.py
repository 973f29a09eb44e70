"""Loading checkpoints and model weights safely.

Every ``.pt`` file pcloud writes (trainer checkpoints, segmenters, model bundles) holds only tensors, numbers,
strings, lists and dicts. :func:`safe_load` reads them with ``torch.load(weights_only=True)``, which refuses any
other pickled object (a crafted file cannot run code on load), and turns the failures into one clear error that
names the file.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded safely (not found, truncated, or holding objects other
    than tensors, numbers, strings, lists and dicts)."""


def safe_load(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with errors that name the file and what was wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than tensors, numbers, "
                              f"strings, lists and dicts, which pcloud never writes ({first[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupted?): "
                              f"{first[:160]}") from None
