"""The application factory, and `python app.py`: the service under waitress."""
from __future__ import annotations

import logging
import os
import sys

from flask import Flask

from config import ConfigError, Settings
from errors import register_error_handlers
from model_manager import ModelManager, ModelSlot

log = logging.getLogger("image_service")

# Multipart parts accepted per request: an image plus a few fields. Thousands of parts → 413.
MAX_FORM_PARTS = 64


def create_app(settings: Settings | None = None, *, classifier=None, detector=None) -> Flask:
    """Build the app. `classifier`/`detector` replace the configured models (tests' fakes)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_UPLOAD_MB=settings.max_upload_mb,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False

    models = {}
    if settings.classification_enabled:
        if classifier is None:
            from classifiers import create_classifier
            classifier = create_classifier(settings.classification_model, settings.models_dir,
                                           settings.model_download)
        models["classification"] = classifier
    else:
        log.info("image classification is disabled; set IMAGE_CLASSIFICATION_ENABLED=true "
                 "to enable it")
    if settings.detection_enabled:
        if detector is None:
            from detectors import create_detector
            detector = create_detector(settings.detection_model, settings.models_dir,
                                       settings.model_download)
        models["detection"] = detector
    else:
        log.info("object detection is disabled; set OBJECT_DETECTION_ENABLED=true to enable it")

    needed = set().union(*(m.frameworks for m in models.values())) if models else set()
    manager = ModelManager(
        ModelSlot(task, model, needed_frameworks=needed,
                  retry_seconds=settings.load_retry_seconds)
        for task, model in models.items()
    )
    app.extensions["settings"] = settings
    app.extensions["model_manager"] = manager

    from routes import bp
    app.register_blueprint(bp)
    register_error_handlers(app)

    if settings.preload_models:
        manager.preload_in_background()
    return app


def main() -> int:
    # TensorFlow's C++ start-up chatter (CPU feature notes) is not for operators.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    app = create_app(settings)
    import waitress

    log.info("serving on port %d with %d threads", settings.port, settings.waitress_threads)
    waitress.serve(
        app,
        host="0.0.0.0",
        port=settings.port,
        threads=settings.waitress_threads,
        # Flask answers oversized bodies with a JSON 413; waitress' own cap is a backstop.
        max_request_body_size=settings.max_upload_bytes * 2 + 1024 * 1024,
        ident="image-classification-service",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
