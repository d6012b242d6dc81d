from __future__ import annotations

import os

import pytest

from config import Settings
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.paths import SHARED


def _multipart_in_memory():
    """Flask's test client encodes a multipart body over 500 KB into a temporary file that
    nothing closes (werkzeug.test.stream_encode_multipart; the builder closes only the parts):
    whichever later test the garbage collector runs in then fails on "unclosed file" (warnings
    are errors here). The tests' bodies are at most a few MB: keep them in memory."""
    import werkzeug.test

    encode = werkzeug.test.stream_encode_multipart

    def in_memory(values, use_tempfile=True, threshold=1024 * 500, boundary=None):
        return encode(values, use_tempfile=False, threshold=threshold, boundary=boundary)

    werkzeug.test.stream_encode_multipart = in_memory


_multipart_in_memory()


def pytest_collection_modifyitems(config, items):
    # In CI a missing ../shared is a failure, never a silent skip.
    if os.environ.get("CI", "").lower() == "true" and not SHARED.is_dir():
        raise pytest.UsageError(f"CI=true but {SHARED} is missing")


@pytest.fixture
def settings(tmp_path):
    return Settings(classification_enabled=True, detection_enabled=True,
                    models_dir=tmp_path / "models", model_download=False)


@pytest.fixture
def classifier():
    return FakeClassifier()


@pytest.fixture
def detector():
    return FakeDetector()


@pytest.fixture
def app(settings, classifier, detector):
    from app import create_app
    return create_app(settings, classifier=classifier, detector=detector)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """`random_weights(*names)`: the one session MODELS_DIR of official weight files with real
    architectures and random weights, holding at least those models' (each written the first
    time a test asks for it, so a module that needs two models does not wait for all seven)."""
    from bench.random_weights import write_weights
    from models.builtins import CATALOG

    models_dir = tmp_path_factory.mktemp("models")

    def holding(*names: str):
        for name in names:
            if not CATALOG[name].path(models_dir).exists():
                write_weights(name, models_dir)
        return models_dir
    return holding


@pytest.fixture(scope="session")
def random_models_dir(random_weights):
    """A MODELS_DIR holding all seven official weight files, real architectures, random weights."""
    from models.builtins import CATALOG

    return random_weights(*CATALOG)
