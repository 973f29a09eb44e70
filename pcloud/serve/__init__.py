"""Serving pcloud's model bundles with NVIDIA Triton (PyTriton): ``pcloud serve``, :class:`Client`.

Modules: :mod:`~pcloud.serve.server` (Triton through PyTriton), :mod:`~pcloud.serve.handlers` (the model functions
and the request layout), :mod:`~pcloud.serve.checks` (row-by-row checks), :mod:`~pcloud.serve.client` (KServe v2
client), :mod:`~pcloud.serve.stubenv` (the environment of Triton's Python-backend stub). Needs the ``serve``
extra (README, "Serving").
"""
from __future__ import annotations

__all__ = ["Client", "Server"]


def __getattr__(name):
    if name == "Client":
        from .client import Client

        return Client
    if name == "Server":
        from .server import Server

        return Server
    raise AttributeError(name)
