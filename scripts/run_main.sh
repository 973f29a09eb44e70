#!/usr/bin/env bash
# Set up and run pcloud's main job on the embedded default (simulated) data. Output goes to ${OUT:-out/main}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-out/main}
.venv/bin/pcloud demo --out "$OUT"
