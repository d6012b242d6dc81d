#!/usr/bin/env bash
# Creates or reuses the virtualenvs, installs the pinned requirements, runs the whole test suite
# but the benchmarks' own runs (pytest -m bench, by hand: docs/testing.md).
# Extra arguments go to pytest (e.g. ./run_tests.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

# virtualenv DIR REQUIREMENTS...: DIR made if missing, the requirements files installed into it
# whenever their contents change (a digest kept in DIR).
virtualenv() {
  local dir=$1 wanted
  shift
  wanted=$(cat "$@" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet $(printf -- '-r %s ' "$@")
    echo "$wanted" > "$dir/.requirements.sha256"
  fi
}

# debian_package COMMAND-OR-PATH PACKAGE WHAT: Debian's PACKAGE installed where COMMAND-OR-PATH
# is missing and this runs as root (CI does); elsewhere the tests that need it skip.
debian_package() {
  if ! command -v "$1" >/dev/null 2>&1 && ! ls $1 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    else
      echo "run_tests.sh: $2 is missing and cannot be installed here; $3 skip" >&2
    fi
  fi
}

virtualenv .venv requirements.txt requirements-serving.txt requirements-dev.txt

# tests/test_redis.py starts a real redis-server on a free loopback port: Debian's package
# (no maintained PyPI package ships the server). CI runs as root; elsewhere those tests skip.
debian_package redis-server redis-server "the Redis tests"

# tests/test_face_store.py starts a real PostgreSQL server (the face store of several replicas) on a
# free loopback port: Debian's package, as for redis-server. Elsewhere those tests skip.
debian_package '/usr/lib/postgresql/*/bin/initdb' postgresql "the PostgreSQL face store tests"

# tests/test_page_browser.py drives the page at / in headless Chromium: Debian's package, as for
# redis-server (Playwright's own browser download is not reachable here). Elsewhere those tests skip.
debian_package /usr/bin/chromium chromium "the browser tests"

# The inference engine that tests/test_remote_engines.py starts (KServe's model server) lives in
# its own virtualenv: its pins clash with the service's.
virtualenv .venv-engine requirements-engine.txt

# The serving-only install (requirements-serving.txt: OpenVINO, no TensorFlow, no torch) in a
# virtualenv of its own: tests/test_lean.py serves the converted models with it.
virtualenv .venv-serving requirements-serving.txt

# The Open Inference Protocol clients that tests/test_open_inference.py drives (tritonclient[http])
# live in their own virtualenv too: tritonclient pins ml-dtypes<=0.5.4, which the engine's clashes with.
virtualenv .venv-clients requirements-clients.txt

.venv/bin/ruff check .

# pytest exits 5 when it collected no tests: that is a failure here, as is any non-zero code.
exec .venv/bin/python -m pytest "$@"
