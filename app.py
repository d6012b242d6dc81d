"""The application factory, and `python app.py`: the service under waitress."""
from __future__ import annotations

import functools
import io
import logging
import os
import sqlite3
import sys

from flask import Flask

from api import middleware
from api.answers import FiniteJSONProvider
from api.errors import register_error_handlers
from config import ConfigError, Settings
from contract import FACE, Model
from dataplane.cache import ResultCache
from dataplane.face_store import FaceStore, SqliteFaceStore
from dataplane.faces import FaceRecognition
from dataplane.fetch import FailureLog, Fetcher, FetchPolicy
from dataplane.images import ImageLimits
from dataplane.pipeline import Pipeline
from dataplane.report import UsageReport
from dataplane.shared_cache import SharedResultCache
from dataplane.shared_report import SharedUsageReport
from dataplane.shared_store import SharedStore
from models.folder_spec import SpecError
from registry import TASKS, CallPolicy, ModelSlot, Registry, create_model
from runtimes import frameworks
from serving import memory, startup, workers
from serving.admission import Admission, TimeLimit
from serving.metrics import Metrics

log = logging.getLogger("image_service")

# Multipart parts accepted per request: an image plus a few fields. Thousands of parts → 413.
MAX_FORM_PARTS = 64


class _Request(Flask.request_class):
    """Uploaded files stay in memory (the body is capped by MAX_UPLOAD_MB): werkzeug would
    spool every file part over 500 kB to a temporary file and read it back."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(settings: Settings | None = None, *, classifier: Model | None = None, detector: Model | None = None,
               cache: ResultCache | None = None, fetcher: Fetcher | None = None, face: Model | None = None) -> Flask:
    """Build the app. `classifier`/`detector`/`face` replace the configured models, `cache` and
    `fetcher` the ones built from the settings (tests' fakes, clocks and resolvers).

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
    app.json = FiniteJSONProvider(app)   # never NaN or Infinity in an answer
    app.json.sort_keys = False

    models = configured_models(settings, {"classification": classifier, "detection": detector, FACE: face})
    admission = Admission(settings.inference_concurrency, settings.max_queue)
    time_limit = TimeLimit(settings.inference_concurrency, settings.inference_timeout)
    metrics = Metrics(workers.metrics_dir())
    policy = CallPolicy(limit=time_limit.run, observe=metrics.inference, on_batch_wait=admission.hand_back,
                        max_batch_size=settings.max_batch_size,
                        batch_timeout_ms=settings.batch_timeout_ms,
                        retry_seconds=settings.load_retry_seconds)
    # Every configured model's frameworks, imported together in the one order that works.
    prepare = functools.partial(frameworks.prepare, set().union(*(model.frameworks for model in models)),
                                settings.inference_options)
    registry = Registry(ModelSlot(model, prepare=prepare, policy=policy) for model in models)
    metrics.watch_models(registry)
    own_cache, report, shared_store = usage_stores(settings, metrics)
    if fetcher is None:
        fetcher = Fetcher(FetchPolicy(allow_hosts=settings.fetch_allow_hosts,
                                      timeout=settings.fetch_timeout, max_bytes=settings.max_upload_bytes),
                          failures=FailureLog(on_failure=metrics.image_url_failure))
    if cache is None:
        cache = own_cache
    pipeline = Pipeline(registry, cache, report, fetcher, ImageLimits(settings.max_image_pixels, settings.max_image_side),
                        metrics=metrics, after_images=memory.after_images)
    app.extensions.update(
        settings=settings, registry=registry, admission=admission, time_limit=time_limit,
        metrics=metrics, report=report, shared_store=shared_store, pipeline=pipeline,
        faces=face_recognition(settings, registry, pipeline))

    from api import codeproject, deepstack, faces, inference, open_inference, operations, page
    app.register_blueprint(inference.bp)
    app.register_blueprint(open_inference.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(deepstack.bp)
    app.register_blueprint(codeproject.bp)
    app.register_blueprint(faces.bp)
    app.register_blueprint(faces.v2)
    app.register_blueprint(page.bp)
    register_error_handlers(app)
    middleware.install(app)

    if settings.preload_models:
        registry.preload_in_background()
    return app


def usage_stores(settings: Settings, metrics: Metrics):
    """(result cache, usage report, shared store): in Redis when REDIS_URL is set, shared by
    every replica; otherwise in this process' memory, and no store (None)."""
    if not settings.redis_url:
        return (ResultCache(settings.cache_maxsize, settings.cache_ttl),
                UsageReport(settings.monitor_window, settings.report_top_n, settings.report_max_images), None)
    store = SharedStore(settings.redis_url, settings.redis_password, settings.cache_prefix,
                        on_error=metrics.shared_store_error)
    metrics.watch_shared_store(store)
    return (SharedResultCache(store, settings.cache_ttl, enabled=settings.cache_maxsize > 0),
            SharedUsageReport(store, settings.monitor_window, settings.report_top_n,
                              max_keys=settings.report_max_images), store)


def face_recognition(settings: Settings, registry: Registry, pipeline: Pipeline) -> FaceRecognition | None:
    """With FACE_ENABLED: the face model's recognition over its store, in PostgreSQL when
    DATABASE_URL is set (reached on first use), else SQLite in DATA_DIR (opened now: a folder it
    cannot write stops the start with a ConfigError)."""
    if not settings.models_for(FACE):
        return None
    model = registry.for_task(FACE).model
    store: FaceStore
    if settings.database_url:
        from dataplane.face_postgres import PostgresFaceStore
        store = PostgresFaceStore(settings.database_url, model.name, model.embedding_size)
    else:
        path = settings.data_dir / "faces.sqlite3"
        try:
            store = SqliteFaceStore(path, model.name, model.embedding_size)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError([f"DATA_DIR: the face store {path} cannot be opened for writing "
                               f"({type(exc).__name__}); give the service a writable DATA_DIR"]) from None
    return FaceRecognition(pipeline, store, model, settings.face_max_distance)


def configured_models(settings: Settings, replacements: dict[str, Model | None]) -> list[Model]:
    """Every configured model, in order, not loaded; model folders validated now (every
    problem raised together as a ConfigError). `replacements` stand in for a task's models."""
    models, problems = [], []
    for task in TASKS:
        names = settings.models_for(task)
        if not names:
            continue   # said at the start (serving.startup), with the variable that enables it
        if replacements.get(task) is not None:
            models.append(replacements[task])
        else:
            for name in names:
                try:
                    model = create_model(task, name, settings.models_dir, settings.model_download,
                                         settings.inference_options,
                                         allow_hosts=settings.fetch_allow_hosts)
                    model.validate()
                except SpecError as exc:
                    problems.extend(exc.problems)
                except Exception as exc:  # the runtime could not open the file at all
                    problems.append(f"MODELS_DIR/{name}: 'file' could not be opened as a model "
                                    f"({type(exc).__name__})")
                else:
                    models.append(model)
    if problems:
        raise ConfigError(problems)
    return models


def main() -> int:
    prepare_process()
    try:
        settings = Settings.from_env()
        startup.quiet_frameworks(settings)   # before any framework is imported
        if workers.this_worker() is None:   # once: the supervisor's, or the one process'
            startup.announce(settings)
            for notice in settings.notices:
                log.warning("configuration: %s", notice)
        if workers.should_supervise(settings):
            return workers.supervise(settings, [sys.executable, os.path.abspath(__file__)])
        app = create_app(settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return workers.EXIT_CONFIG
    from serving.server import serve
    return serve(app, settings)


def prepare_process() -> None:
    """Process-wide set-up for serving, before any worker thread exists."""
    memory.limit_arenas(2)
    configure_logging()


def configure_logging() -> None:
    worker = workers.this_worker()
    where = f" [{worker.label}]" if worker else ""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s")
    # The access log lines are JSON already: print them as they are.
    access = logging.getLogger("image_service.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False


if __name__ == "__main__":
    sys.exit(main())
