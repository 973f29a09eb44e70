#!/usr/bin/env bash
# Set up and run the test suite. pytest's exit code 5 ("no tests collected") is turned into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
