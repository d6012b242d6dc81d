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
wanted=$(cat requirements.txt requirements-serving.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

# tests/test_redis.py starts a real redis-server on a free loopback port: Debian's package
# (no maintained PyPI package ships the server). CI runs as root; elsewhere those tests skip.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    echo "run_tests.sh: redis-server is missing and cannot be installed here; the Redis tests skip" >&2
  fi
fi

# tests/test_face_store.py starts a real PostgreSQL server (the face store of several replicas) on a
# free loopback port: Debian's package, as for redis-server. Elsewhere those tests skip.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "run_tests.sh: PostgreSQL is missing and cannot be installed here; the PostgreSQL face store tests skip" >&2
  fi
fi

# tests/test_page_browser.py drives the page at / in headless Chromium: Debian's package, as for
# redis-server (Playwright's own browser download is not reachable here). Elsewhere those tests skip.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "run_tests.sh: chromium is missing and cannot be installed here; the browser tests skip" >&2
  fi
fi

# The inference engine that tests/test_remote_engines.py starts (KServe's model server) lives in
# its own virtualenv: its pins clash with the service's.
engine_stamp=.venv-engine/.requirements.sha256
engine_wanted=$(sha256sum requirements-engine.txt | cut -d' ' -f1)
if [ "$(cat "$engine_stamp" 2>/dev/null)" != "$engine_wanted" ]; then
  "$PYTHON" -m venv .venv-engine
  .venv-engine/bin/python -m pip install --quiet --upgrade pip
  .venv-engine/bin/python -m pip install --quiet -r requirements-engine.txt
  echo "$engine_wanted" > "$engine_stamp"
fi

# The serving-only install (requirements-serving.txt: OpenVINO, no TensorFlow, no torch) in a
# virtualenv of its own: tests/test_lean.py serves the converted models with it.
serving_stamp=.venv-serving/.requirements.sha256
serving_wanted=$(sha256sum requirements-serving.txt | cut -d' ' -f1)
if [ "$(cat "$serving_stamp" 2>/dev/null)" != "$serving_wanted" ]; then
  "$PYTHON" -m venv .venv-serving
  .venv-serving/bin/python -m pip install --quiet --upgrade pip
  .venv-serving/bin/python -m pip install --quiet -r requirements-serving.txt
  echo "$serving_wanted" > "$serving_stamp"
fi

# The Open Inference Protocol clients that tests/test_open_inference.py drives (tritonclient[http])
# live in their own virtualenv too: tritonclient pins ml-dtypes<=0.5.4, which the engine's clashes with.
clients_stamp=.venv-clients/.requirements.sha256
clients_wanted=$(sha256sum requirements-clients.txt | cut -d' ' -f1)
if [ "$(cat "$clients_stamp" 2>/dev/null)" != "$clients_wanted" ]; then
  "$PYTHON" -m venv .venv-clients
  .venv-clients/bin/python -m pip install --quiet --upgrade pip
  .venv-clients/bin/python -m pip install --quiet -r requirements-clients.txt
  echo "$clients_wanted" > "$clients_stamp"
fi

.venv/bin/ruff check .

# pytest exits 5 when it collected no tests: that is a failure here, as is any non-zero code.
exec .venv/bin/python -m pytest "$@"
