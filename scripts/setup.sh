#!/usr/bin/env bash
# Create .venv (if needed) and install pcloud with its test extras. torch is pinned to the CPU build 2.13.0
# first, so that no later dependency resolution pulls a multi-GB CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
# pcloud serve: PyTriton without its numpy<2 pin (its dependencies come with the test/serve extras), and the
# numpy<2 environment of Triton's Python-backend stub (pcloud/serve/stubenv.py explains why)
.venv/bin/python -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
.venv/bin/python -m pcloud.serve.stubenv >/dev/null
