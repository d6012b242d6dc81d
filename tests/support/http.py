"""Building requests and checking answers the way every HTTP-layer test does."""
from __future__ import annotations

import base64
import io
import re

from app import create_app
from config import Settings
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector

LEAKS = ("Traceback", "/secret", "0xdeadbeef", "<PIL", "object at", ".py\"")


def make_app(tmp_path, *, cache=None, fetcher=None, **settings):
    """Both features on, instant fake models, MODELS_DIR in tmp_path; `settings` override."""
    return create_app(Settings(classification_enabled=True, detection_enabled=True, models_dir=tmp_path, **settings),
                      classifier=FakeClassifier(), detector=FakeDetector(), cache=cache, fetcher=fetcher)


def upload(client, path, data, filename="photo.jpg", query="", content_type=None):
    """One multipart `image` part, as `curl -F image=@photo.jpg` sends it."""
    return client.post(f"{path}{query}", data={"image": (io.BytesIO(data), filename, content_type or "image/jpeg")},
                       content_type="multipart/form-data")


def multipart(fields: dict[str, str] | None = None, files=None,
              boundary: str = "testboundary7MA4YWxk") -> tuple[str, bytes]:
    """(content type, body) built in memory. `files` is {name: (filename, bytes)} or a list of
    (name, filename, bytes) when one name repeats (a batch of `image` parts)."""
    if isinstance(files, dict):
        files = [(name, filename, data) for name, (filename, data) in files.items()]
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode()
             + b"\r\n" for name, value in (fields or {}).items()]
    for name, filename, data in files or []:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode() + data + b"\r\n")
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def post_images(client, path, *images):
    content_type, body = multipart(files=[("image", f"{i}.jpg", data) for i, data in enumerate(images)])
    return client.post(path, data=body, content_type=content_type)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response, code, type_=None) -> dict:
    """The one JSON error shape, with the status, and nothing internal in it."""
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body["error"]) >= {"code", "type", "message"}
    assert body["error"]["code"] == code
    if type_:
        assert body["error"]["type"] == type_
    text = response.get_data(as_text=True)
    for leak in LEAKS:
        assert leak not in text
    return body


# Path parameters of every route, filled with what the fakes and Swagger UI have.
PATH_VALUES = {"model": "fake_detector", "name": "fake_classifier", "filename": "swagger-ui.css", "version": "1"}


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every registered route, its path parameters filled from PATH_VALUES:
    a route added later is walked by the tests that use this, without being listed anywhere."""
    routes = []
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for argument in rule.arguments:
            path = re.sub(rf"<(?:\w+:)?{argument}>", PATH_VALUES[argument], path)
        routes += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def call(client, method: str, path: str, image: bytes | None = None, **kwargs):
    """One request: a POST carries one multipart `image` part (every POST route takes one)."""
    if method != "POST":
        return client.open(path, method=method, **kwargs)
    content_type, body = multipart(files={"image": ("a.jpg", image if image is not None else imaging.jpeg())})
    return client.post(path, data=body, content_type=content_type, **kwargs)

