"""The naive baseline: a minimal Flask app on the same models, as the services this one
replaces were built: `model.predict` per request, no batching, no compiled function.

    BENCH_MODEL=mobilenet MODELS_DIR=... PORT=... python -m bench.naive_app
"""
from __future__ import annotations

import io
import os
import sys

from runtimes import frameworks


def build(model_name: str, models_dir: str):
    from models.builtins import CATALOG
    from registry import TASKS

    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    path = str(CATALOG[model_name].path(models_dir))
    if model_name in TASKS["classification"].builtins:
        import importlib

        import numpy as np
        from PIL import Image

        from models.builtins import BUILTINS
        spec = BUILTINS[model_name].architecture
        module = importlib.import_module(f"keras.applications.{spec['module']}")
        model = getattr(module, spec["constructor"])(weights=path)

        def run(data: bytes):
            img = Image.open(io.BytesIO(data)).convert("RGB").resize((spec["side"], spec["side"]))
            x = module.preprocess_input(np.expand_dims(np.asarray(img, dtype=np.float32), 0))
            probabilities = model.predict(x, verbose=0)[0]
            return [[str(i), float(probabilities[i])] for i in probabilities.argsort()[::-1][:5]]
        return run
    import threading

    import numpy as np
    from imageai.Detection import ObjectDetection
    from PIL import Image

    from models.builtins import BUILTINS
    detector = ObjectDetection()
    getattr(detector, f"setModelTypeAs{BUILTINS[model_name].architecture['model_type']}")()
    detector.setModelPath(path)
    detector.loadModel()
    lock = threading.Lock()

    def run(data: bytes):
        bgr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1].copy()
        with lock:
            _, found = detector.detectObjectsFromImage(input_image=bgr, output_type="array",
                                                       minimum_percentage_probability=30)
        return found
    return run


def main() -> int:
    import waitress
    from flask import Flask, jsonify, request

    run = build(os.environ["BENCH_MODEL"], os.environ["MODELS_DIR"])
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        return jsonify(run(request.files["image"].read()))

    @app.get("/ready")
    def ready():
        return "ok"

    waitress.serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads=4, _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
