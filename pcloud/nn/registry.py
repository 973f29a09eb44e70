"""Model registry: a plain dict ``name -> builder`` so that training configs can say ``model: {name: dgcnn, ...}``.

Built-in point-cloud models ("pointnet", "dgcnn") register themselves when this module is imported. Other
packages (e.g. the dense CNN baselines in ``pcloud.nn.dense``) register theirs with :func:`register_model`,
either directly (``register_model("cnn3d", CNN3D)``) or as a decorator, or expose a ``DENSE_MODELS`` /
``MODELS`` dict ``name -> class``; ``pcloud.nn.dense`` is imported lazily the first time an unknown name is
looked up, so its models are found without an explicit import (``build_model("cnn3d", geometry=geo, ...)``).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

__all__ = ["MODEL_REGISTRY", "register_model", "build_model", "list_models"]

MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PLUGIN_MODULES = ("pcloud.nn.dense",)
_plugins_loaded = False


def register_model(name: str, builder: Callable[..., nn.Module] | None = None, *, overwrite: bool = False):
    """Register ``builder(**cfg) -> nn.Module`` under ``name``; usable as ``@register_model("name")``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_model: name must be a non-empty string, found {name!r}")

    def _register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(fn):
            raise TypeError(f"register_model({name!r}): builder must be callable, found {type(fn).__name__}")
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name] is not fn and not overwrite:
            raise ValueError(f"register_model: a model named {name!r} is already registered "
                             f"({MODEL_REGISTRY[name]!r}); pass overwrite=True to replace it")
        MODEL_REGISTRY[name] = fn
        return fn

    return _register if builder is None else _register(builder)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for mod in _PLUGIN_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as err:  # the plugin package itself is absent: fine; anything else: raise
            if err.name != mod:
                raise
            continue
        # a plugin may also expose its own name -> class table instead of calling register_model
        for table in ("DENSE_MODELS", "MODELS"):
            for name, builder in getattr(module, table, {}).items():
                MODEL_REGISTRY.setdefault(name, builder)


def list_models() -> list[str]:
    """Sorted names of all registered models (built-in and plugins)."""
    _load_plugins()
    return sorted(MODEL_REGISTRY)


def build_model(name: str, **cfg) -> nn.Module:
    """Instantiate the model registered as ``name`` with keyword configuration ``cfg``."""
    if name not in MODEL_REGISTRY:
        _load_plugins()
    if name not in MODEL_REGISTRY:
        raise KeyError(f"build_model: unknown model {name!r}; registered models: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](**cfg)


def _register_builtins() -> None:
    from .cellgraph import CellGraphNet
    from .dgcnn import DGCNN
    from .gravnet import GravNet
    from .pointnet import PointNet
    from .transformer import PointTransformer

    register_model("pointnet", PointNet)
    register_model("dgcnn", DGCNN)
    register_model("transformer", PointTransformer)
    register_model("gravnet", GravNet)
    register_model("cellgraph", CellGraphNet)


_register_builtins()
