"""The application factory, and `python app.py`: the service under waitress."""
from __future__ import annotations

import io
import logging
import os
import sys

from flask import Flask

import frameworks
import memory
import middleware
from cache import ResultCache
from config import ConfigError, Settings
from errors import register_error_handlers
from fetch import Fetcher, FetchPolicy
from images import ImageLimits
from lifecycle import Lifecycle
from metrics import Metrics
from model_manager import ModelManager, ModelSlot
from report import UsageReport
from service import InferenceService

log = logging.getLogger("image_service")

# Multipart parts accepted per request: an image plus a few fields. Thousands of parts → 413.
MAX_FORM_PARTS = 64


class _Request(Flask.request_class):
    """Uploaded files stay in memory (the body is capped by MAX_UPLOAD_MB): werkzeug would
    spool every file part over 500 kB to a temporary file and read it back."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(settings: Settings | None = None, *, classifier=None, detector=None) -> Flask:
    """Build the app. `classifier`/`detector` replace the default models (tests' fakes).

    Raises ConfigError, listing every problem, when a configured model folder is malformed.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.request_class = _Request
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_UPLOAD_MB=settings.max_upload_mb,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.json.sort_keys = False

    frameworks.set_threads(settings.intra_op_threads, settings.inter_op_threads)
    models = _configured_models(settings, classifier, detector)
    needed = set().union(*(model.frameworks for _, model in models))
    manager = ModelManager(
        ModelSlot(task, model, needed_frameworks=needed, retry_seconds=settings.load_retry_seconds)
        for task, model in models
    )
    app.extensions["settings"] = settings
    app.extensions["model_manager"] = manager
    app.extensions["lifecycle"] = lifecycle = Lifecycle(
        settings.waitress_threads, settings.max_queue, settings.inference_timeout)
    app.extensions["metrics"] = metrics = Metrics(manager)
    app.extensions["report"] = report = UsageReport(settings.monitor_window, settings.report_top_n)
    app.extensions["inference"] = InferenceService(
        manager, ResultCache(settings.cache_maxsize, settings.cache_ttl), report,
        Fetcher(FetchPolicy(allow_hosts=settings.fetch_allow_hosts, timeout=settings.fetch_timeout,
                            max_bytes=settings.max_upload_bytes)),
        ImageLimits(settings.max_image_pixels, settings.max_image_side), metrics=metrics,
        call=lifecycle.call, max_batch_size=settings.max_batch_size,
        batch_timeout_ms=settings.batch_timeout_ms)

    import ops
    import routes
    app.register_blueprint(routes.bp)
    app.register_blueprint(ops.bp)
    register_error_handlers(app)
    middleware.install(app)

    if settings.preload_models:
        manager.preload_in_background()
    return app


def _configured_models(settings: Settings, classifier, detector) -> list[tuple[str, object]]:
    """(task, model) for every configured model, in order; users' folders validated now."""
    from classifiers import create_classifier
    from detectors import create_detector
    from models.custom_spec import SpecError

    models, problems = [], []
    for task, enabled, names, create, replacement, variable in (
        ("classification", settings.classification_enabled, settings.classification_models,
         create_classifier, classifier, "IMAGE_CLASSIFICATION_ENABLED"),
        ("detection", settings.detection_enabled, settings.detection_models,
         create_detector, detector, "OBJECT_DETECTION_ENABLED"),
    ):
        if not enabled:
            log.info("%s is disabled; set %s=true to enable it", task, variable)
            continue
        if replacement is not None:
            models.append((task, replacement))
            continue
        for name in names:
            try:
                model = create(name, settings.models_dir, settings.model_download)
                if hasattr(model, "validate"):
                    model.validate()
            except SpecError as exc:
                problems.extend(exc.problems)
                continue
            except Exception as exc:  # the runtime could not open the file at all
                problems.append(f"MODELS_DIR/{name}: 'file' could not be opened as a model "
                                f"({type(exc).__name__})")
                continue
            models.append((task, model))
    if problems:
        raise ConfigError(problems)
    return models


def main() -> int:
    prepare_process()
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from server import serve
    return serve(app, settings)


def prepare_process() -> None:
    """Process-wide set-up for serving, before any worker thread exists."""
    # TensorFlow's C++ start-up chatter (CPU feature notes) is not for operators.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    memory.limit_arenas(2)
    configure_logging()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The access log lines are JSON already: print them as they are.
    access = logging.getLogger("image_service.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False


if __name__ == "__main__":
    sys.exit(main())
