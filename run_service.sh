#!/usr/bin/env bash
# Sets up .venv with the pinned requirements and starts the service under waitress with both
# features on their default models (mobilenet, yolo). Missing weights are downloaded into
# MODELS_DIR on first use where there is internet. Any variable set in the environment wins.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.runtime-requirements.sha256
wanted=$(cat requirements.txt requirements-serving.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$wanted" > "$stamp"
fi

export IMAGE_CLASSIFICATION_ENABLED=${IMAGE_CLASSIFICATION_ENABLED:-true}
export OBJECT_DETECTION_ENABLED=${OBJECT_DETECTION_ENABLED:-true}
exec .venv/bin/python app.py
