# The set-up both GPU scripts share (scripts/gpu_pflow.sh, scripts/gpu_pflow_study.sh source it from the repository
# root, with OUT and WHEELS set): the wheels in $WHEELS (awkward, awkward-cpp, uproot, cramjam for the lent machine's
# Python) go to /tmp/site, pcloud is imported from the checkout (PYTHONPATH=.), Python's output is unbuffered, and
# $OUT/machine.txt records the GPU, its driver, the CPU count and the torch / numpy versions.
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  nproc; python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'; } \
    > "$OUT/machine.txt"
