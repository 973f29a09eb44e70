#!/usr/bin/env bash
# Set up and run pcloud's main job on the embedded default (simulated) data: the quick singles benchmark
# (point-cloud vs dense vs shower-shape models on every task), written to ${OUT:-out/main}/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-out/main}
.venv/bin/pcloud bench singles --quick --out "$OUT"
echo "report: $OUT/report.md"
