"""The Python environment of Triton's Python-backend stub, kept apart from pcloud's own.

PyTriton runs each model through Triton's Python backend: a stub process (``triton_python_backend_stub``, shipped
in the ``nvidia-pytriton`` wheel) embeds the interpreter's ``libpython`` and exchanges tensors with the process
that calls :meth:`pytriton.triton.Triton.bind`. The stub takes its ``sys.path`` from the first ``python3`` on its
``PATH``, which PyTriton sets to the running environment's ``bin`` (its ``get_triton_python_backend_python_env``).
Measured here with PyTriton 0.7.0 / tritonserver 2.51: the stub's array conversion needs NumPy < 2 (with NumPy
2.x every output arrives empty: "output tensor shape does not match size of output"), while pcloud needs NumPy 2
(pyarrow >= 20 refuses NumPy 1.x). So, when the running NumPy is 2.x, the stub gets its own small environment:

* a virtual environment without pip (``python -m venv --without-pip``) holding only ``numpy<2``, and a ``.pth``
  file that appends pcloud's site-packages (PyTriton, pyzmq... come from there, after the stub's NumPy);
* its location: ``$PCLOUD_TRITON_STUB_ENV`` or ``<sys.prefix>/pcloud-triton-stub``; made by
  ``python -m pcloud.serve.stubenv`` (which ``scripts/setup.sh`` runs; it asks the package index for
  ``numpy<2`` once).

The stub also loads ``libpython`` through ``LD_LIBRARY_PATH``: :func:`prepare_environment` adds the
interpreter's ``LIBDIR`` (``sysconfig.get_config_var("LIBDIR")``), without which the model fails to load.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig

ENV_VAR = "PCLOUD_TRITON_STUB_ENV"
STUB_NUMPY = "numpy>=1.26,<2"


def stub_env_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get(ENV_VAR) or pathlib.Path(sys.prefix) / "pcloud-triton-stub")


def needs_stub_env() -> bool:
    import numpy

    return int(numpy.__version__.split(".")[0]) >= 2


def _site_packages(env: pathlib.Path) -> pathlib.Path:
    return env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def stub_env_ready(env: pathlib.Path | None = None) -> bool:
    env = env or stub_env_dir()
    site = _site_packages(env)
    return (env / "bin" / "python3").exists() and any(site.glob("numpy-1.*.dist-info"))


def create_stub_env(env: pathlib.Path | None = None, log=print) -> pathlib.Path:
    """Make the stub environment (module docstring); a no-op when it is there already."""
    env = env or stub_env_dir()
    if stub_env_ready(env):
        return env
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", "--clear", str(env)], check=True)
    site = _site_packages(env)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    STUB_NUMPY], check=True)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-pcloud-site.pth").write_text("\n".join(sorted(ours)) + "\n")
    log(f"Triton stub environment (NumPy < 2 for the Python-backend stub): {env}")
    return env


def prepare_environment() -> pathlib.Path | None:
    """Before PyTriton starts tritonserver: ``LD_LIBRARY_PATH`` gets the interpreter's ``LIBDIR`` and, under
    NumPy 2, the stub is pointed at the stub environment (raises with the command that makes it when it is
    missing). Returns the stub environment used, or None."""
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir and libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])
    if not needs_stub_env():
        return None
    env = stub_env_dir()
    if not stub_env_ready(env):
        raise RuntimeError(f"pcloud serve: Triton's Python-backend stub needs NumPy < 2 and its environment {env} is "
                           f"missing; make it once with: {sys.executable} -m pcloud.serve.stubenv")
    import pytriton.server.triton_server as triton_server

    # the one place PyTriton chooses the stub's environment (it puts <env>/bin first on the server's PATH)
    triton_server.get_triton_python_backend_python_env = lambda: env
    return env


if __name__ == "__main__":
    if needs_stub_env():
        print(create_stub_env())
    else:
        print("NumPy < 2 in this environment: the Triton stub uses it directly; nothing to do")
