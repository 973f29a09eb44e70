#!/usr/bin/env bash
# The particle-flow study on a lent GPU machine (issue 11, items 4 and 6; results: datasets/GPU_RESULTS.md section 7).
#
# One event sample of the benchmark's generator (EVENTS, default the large mode's 8000, split 70/10/20 as there) is
# generated once; then one per-track model (MODEL, default the point transformer) at the model class's own widths is
# trained on every training event, once per loss in LOSSES (default ce and mixed; side by side, one process each),
# with the large mode's recipe on the GPU: every point of the topo-cell clouds, ragged batches of 128 clouds, the
# cell-neighbourhood point features, AdamW + warm-up + cosine timed to MINUTES, early stopping after 8 epochs without
# a better validation loss, the decision threshold chosen on the validation events. Each trained model is evaluated
# with iterative and common inference on the test events (`scripts/pflow_study.py curve`: F1 / E-acc overall and by
# cell significance, charged share, dense-track metrics) and saved, so `pflow_study.py errors` can take it apart on a
# CPU later.
#
# Runs from the repository root without installing pcloud (PYTHONPATH=.); wheels of awkward, awkward-cpp, uproot
# and cramjam are installed from $WHEELS (default .whl/) when that folder holds any. Everything stops after LIMIT
# seconds (default 540; MINUTES must leave about 2.5 min of it for the events, the clouds and the evaluation); what
# finished is in $OUT (records curve_<n>_s<seed>_<loss>.json, models model_<n>_s<seed>_<loss>.pt, log.txt,
# machine.txt).
#
#     OUT=out/gpu_study LIMIT=540 bash scripts/gpu_pflow_study.sh
#     DEVICE=cpu EVENTS=300 MINUTES=0.2 WIDTHS=light LIMIT=300 OUT=/tmp/s WORK=/tmp/w bash scripts/gpu_pflow_study.sh
#     (a CPU dry run; WORK keeps events.pkl and the records, which a later run with the same WORK reuses / skips)
#
# SEG_EXTRA adds FocalTrackSegmenter keywords (JSON members, no braces; a key it repeats, such as "loss", wins) and
# TAG_EXTRA a suffix to the record tags, e.g. a transformer wider and deeper than the full widths (dim 128, 4 layers)
# that also trains on the teacher-forced residual clouds:
#
#     SEG_EXTRA='"dim": 192, "n_layers": 6, "residual_clouds": true' TAG_EXTRA=_wide_res LOSSES=mixed \
#         OUT=out/gpu_study LIMIT=540 bash scripts/gpu_pflow_study.sh
set -u -o pipefail
OUT=${OUT:-out/gpu_study}
LIMIT=${LIMIT:-540}
EVENTS=${EVENTS:-8000}
WORK=${WORK:-/tmp/pcloud_gpu_study_$EVENTS}   # holds events.pkl (reused when there) and the records
WHEELS=${WHEELS:-.whl}
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-transformer}
WIDTHS=${WIDTHS:-full}
MINUTES=${MINUTES:-5}
LOSSES=${LOSSES:-ce,mixed}
SEEDS=${SEEDS:-1}
THREADS=${THREADS:-6}
SEG_EXTRA=${SEG_EXTRA:-}
TAG_EXTRA=${TAG_EXTRA:-}
START=$(date +%s)
mkdir -p "$OUT" "$WORK"
source scripts/gpu_env.sh
left() { local s=$(( LIMIT - ($(date +%s) - START) )); echo $(( s > 1 ? s : 1 )); }   # timeout 0 = none
{
    [ -f "$WORK/events.pkl" ] || timeout -s TERM "$(left)" python3 scripts/pflow_study.py events \
        --events "$EVENTS" --seed 1 --out "$WORK" || exit 1
    SEG_BASE='"cells": "topo", "threshold": "val", "max_points": null, "ragged": true, "energy_share": 0.5'
    FIT='{"epochs": 300, "batch_size": 128, "lr": 1e-3, "patience": 8, "optimizer": "adamw", "schedule": "cosine",
          "warmup": 0.05, "weight_decay": 1e-4, "schedule_time": true, "max_minutes": '"$MINUTES"'}'
    # the losses train side by side: each process alone leaves the GPU mostly idle (kernel launches bound it,
    # datasets/GPU_RESULTS.md section 2), and the machine has CPU cores for both processes' cloud building
    pids=()
    for loss in ${LOSSES//,/ }; do
        timeout -s TERM "$(left)" python3 scripts/pflow_study.py curve --device "$DEVICE" --threads "$THREADS" \
            --model "$MODEL" --sizes 1000000 --seeds "$SEEDS" --tag "_$loss$TAG_EXTRA" --save-models --out "$WORK" \
            --segmenter "{$SEG_BASE, \"loss\": \"$loss\", \"widths\": \"$WIDTHS\"${SEG_EXTRA:+, $SEG_EXTRA}}" \
            --fit "$FIT" 2>&1 \
            | sed -u "s/^/[$loss] /" &
        pids+=($!)
    done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done   # pipefail: a failed or timed-out training counts
    exit $failed
} 2>&1 | tee "$OUT/log.txt"
rc=$?
cp "$WORK"/curve_*.json "$WORK"/model_*.pt "$OUT/" 2>/dev/null
echo "exit $rc after $(( $(date +%s) - START )) s" | tee -a "$OUT/log.txt"
exit "$rc"
