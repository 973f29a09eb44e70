#!/usr/bin/env bash
# `pcloud bench pflow` on a lent GPU machine (issue 11, item 6; results card: datasets/GPU_RESULTS.md section 6).
#
# Runs from the repository root without installing pcloud (PYTHONPATH=.), for a machine whose Python already holds
# torch, numpy, h5py, pyarrow and matplotlib; wheels of the rest (awkward, awkward-cpp, uproot, cramjam) are
# installed from $WHEELS (default .whl/) when that folder holds any. The benchmark writes into a scratch folder and the files worth
# keeping (report, results, learning curves, metrics vs DeltaR, the log, the GPU's name) are copied to $OUT, so a
# run stopped by its time limit (LIMIT seconds, default 520) still returns its log, which carries every model's
# epochs and test F1 / energy-weighted accuracy as they are measured. Extra arguments go to `bench pflow`, e.g.
#
#     OUT=out/gpu LIMIT=520 bash scripts/gpu_pflow.sh --models pointnet,gravnet --minutes pointnet=2,gravnet=2
#
# The large mode keeps every point of the track clouds and trains on the ragged path; on a GPU the ragged path is
# slower than padding for DGCNN, GravNet and the transformer (datasets/GPU_RESULTS.md section 2): add --no-ragged
# for those (the section-6 runs of 2026-11-26 were padded, cut at 256 points and without the cell-neighbourhood
# features: --no-ragged --max-points 256 --features jetpointnet).
set -u -o pipefail
OUT=${OUT:-out/gpu_pflow}
LIMIT=${LIMIT:-520}
WORK=${WORK:-/tmp/pcloud_gpu_pflow}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT" "$WORK"
source scripts/gpu_env.sh
timeout -s TERM "$LIMIT" python3 -c 'import sys; from pcloud.cli.main import main; sys.exit(main(sys.argv[1:]))' \
    bench pflow --large --device cuda --widths full --seeds 1 --no-event-model --out "$WORK/pflow" "$@" \
    2>&1 | tee "$OUT/log.txt"
rc=$?
for f in report.md results.json learning_curves.png metrics_vs_dr.png; do
    [ -f "$WORK/pflow/$f" ] && cp "$WORK/pflow/$f" "$OUT/"
done
echo "exit $rc" >> "$OUT/log.txt"
exit "$rc"
