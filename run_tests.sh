#!/usr/bin/env bash
# Creates or reuses .venv, installs the pinned requirements, runs the whole test suite.
# Extra arguments go to pytest (e.g. ./run_tests.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

.venv/bin/ruff check .

# pytest exits 5 when it collected no tests: that is a failure here, as is any non-zero code.
exec .venv/bin/python -m pytest "$@"
