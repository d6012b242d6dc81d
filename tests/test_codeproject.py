"""CodeProject.AI's clients: the image under their field names, read as CodeProject.AI Server
reads it (the first file part, whatever its name), and the status routes they call. Requests
are built byte for byte the way those clients build them: the explorer page's submitRequest()
(src/server/wwwroot/assets/explorer.js: a browser FormData, `image1`, `image2`, ... and plain
form fields) and the .NET SDK (src/SDK/NET/API/ApiClient.cs: MultipartFormDataContent,
AddFile(path, name = "file"), AddParam as StringContent)."""
from __future__ import annotations

import socket

import pytest

from api import SERVICE_NAME, VERSION
from api.codeproject import PREFIXES, version_info
from app import MAX_FORM_PARTS
from tests.support import imaging
from tests.support.http import assert_error, make_app, multipart

STREET = imaging.jpeg(size=(320, 320), color=(90, 140, 200))
SMALL = imaging.jpeg(size=(64, 48), color=(10, 200, 10))
BROWSER_BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def explorer_form(images=(), parameters=()) -> tuple[str, bytes]:
    """explorer.js submitRequest(): `formData.append('image' + (i + 1), file)` for each image,
    then `formData.append(key, value)` for each parameter, encoded as Chromium encodes a
    FormData (a WebKitFormBoundary, quoted names, the file's own name and type)."""
    parts = [f'--{BROWSER_BOUNDARY}\r\nContent-Disposition: form-data; name="image{i + 1}"; '
             f'filename="photo{i + 1}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode() + data + b"\r\n"
             for i, data in enumerate(images)]
    parts += [f'--{BROWSER_BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
              for key, value in parameters]
    return (f"multipart/form-data; boundary={BROWSER_BOUNDARY}",
            b"".join(parts) + f"--{BROWSER_BOUNDARY}--\r\n".encode())


def dotnet_form(image: bytes, params=(), name="file") -> tuple[str, bytes]:
    """The .NET SDK's ServerRequestContent: MultipartFormDataContent (a quoted GUID boundary),
    AddFile's StreamContent under `name` with the file name (.NET writes the parameters unquoted,
    and filename* too; no Content-Type), AddParam's StringContent."""
    boundary = "8d3c1b7e-5f0a-4c52-9a4e-0f6b2d9c1a77"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name={name}; filename=street.jpg; "
             f"filename*=utf-8''street.jpg\r\n\r\n".encode() + image + b"\r\n"]
    parts += [f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: form-data; "
              f"name={key}\r\n\r\n{value}\r\n".encode() for key, value in params]
    return f'multipart/form-data; boundary="{boundary}"', b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path).test_client()


def send(client, path, form):
    content_type, body = form
    return client.post(path, data=body, content_type=content_type)


def with_image(client, path, image=STREET, **fields):
    return send(client, path, multipart(fields=fields, files={"image": ("frame.jpg", image)}))


def same_answer(one, other):
    """Equal but for the timings, which differ between two requests."""
    timings = ("inferenceMs", "processMs", "analysisRoundTripMs")
    strip = lambda response: {k: v for k, v in response.get_json().items() if k not in timings}  # noqa: E731
    assert one.status_code == other.status_code == 200
    assert strip(one) == strip(other)


# --- the image under CodeProject.AI's field names ---------------------------------------------

@pytest.mark.parametrize("path", ["/v1/vision/detection", "/v1/vision/custom/fake_detector", "/v1/vision/scene"])
def test_the_explorer_pages_image1_gets_the_answer_image_gets(client, path):
    same_answer(send(client, path, explorer_form([STREET])), with_image(client, path))


def test_the_explorers_parameters_are_read_as_form_fields(client):
    answer = send(client, "/v1/vision/detection", explorer_form([STREET], [("min_confidence", "0.05")]))
    same_answer(answer, with_image(client, "/v1/vision/detection", min_confidence="0.05"))
    assert [p["label"] for p in answer.get_json()["predictions"]] == ["dog", "cat", "cat"]


def test_the_dotnet_sdks_file_field_gets_the_answer_image_gets(client):
    same_answer(send(client, "/v1/vision/detection", dotnet_form(STREET)), with_image(client, "/v1/vision/detection"))
    answer = send(client, "/v1/vision/detection", dotnet_form(STREET, [("min_confidence", "0.5")]))
    assert [p["label"] for p in answer.get_json()["predictions"]] == ["dog"]


def test_the_first_file_part_is_the_image_whatever_its_name_the_others_are_ignored(client):
    """CodeProject.AI's ProxyController passes every file part on in request order and its
    detection modules read files[0]: here too, the first one wins and the rest are ignored."""
    path = "/v1/vision/detection"
    first_small = send(client, path, multipart(files=[("image2", "b.jpg", SMALL), ("image1", "a.jpg", STREET),
                                                      ("image2", "c.jpg", STREET)]))
    same_answer(first_small, with_image(client, path, SMALL))
    for name in ("image1", "file", "upload", "photo"):
        same_answer(send(client, path, multipart(files={name: ("x.jpg", STREET)})), with_image(client, path))
    # Two images from the explorer: the first is read, as CodeProject.AI reads it.
    same_answer(send(client, path, explorer_form([SMALL, STREET])), with_image(client, path, SMALL))


def test_an_image_part_keeps_its_own_rules(client):
    """`image`, where sent, is the image (as before: DeepStack's field), and two of them on a
    single-image route are still refused."""
    path = "/v1/vision/detection"
    same_answer(send(client, path, multipart(files=[("image1", "a.jpg", SMALL), ("image", "b.jpg", STREET)])),
                with_image(client, path))
    body = send(client, path, multipart(files=[("image", "a.jpg", STREET), ("image", "b.jpg", STREET)])).get_json()
    assert body["success"] is False and body["code"] == 400 and "one image" in body["error"]


def test_no_file_part_says_which_names_are_read(client):
    response = send(client, "/v1/vision/detection", explorer_form([], [("min_confidence", "0.5")]))
    body = response.get_json()
    assert response.status_code == 400 and body["success"] is False
    assert "'image'" in body["error"] and "image1" in body["error"]


def test_other_routes_still_read_only_image(client):
    """The first-file rule is CodeProject.AI's, on its routes only: /v2 and v1 keep `image`."""
    content_type, body = multipart(files={"image1": ("a.jpg", STREET)})
    for path in ("/v2/detect", "/detect-objects", "/classify-image"):
        assert_error(client.post(path, data=body, content_type=content_type), 400)


def test_the_multipart_limits_hold_for_any_name(tmp_path):
    client = make_app(tmp_path, max_upload_mb=1).test_client()
    many = multipart(files=[(f"image{i}", "x.jpg", SMALL) for i in range(MAX_FORM_PARTS + 1)])
    assert send(client, "/v1/vision/detection", many).status_code == 413
    large = explorer_form([b"\xff" * (1 << 20)])
    assert send(client, "/v1/vision/detection", large).status_code == 413


def test_the_explorers_list_request_with_an_empty_form_lists_the_detectors(client):
    response = send(client, "/v1/vision/custom/list", explorer_form())
    assert response.status_code == 200 and response.get_json() == {
        "success": True, "models": ["fake_detector"], "code": 200}


# --- status routes -----------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["/v1/status", "/v1/server/status"])
@pytest.mark.parametrize("route", ["ping", "version"])
def test_ping_and_version_answer_this_services_version(client, prefix, route):
    """CodeProject.AI answers ping with its version (ServerStatusController.GetPing returns
    GetVersion()); its dashboard reads `message` as the version and `hostname`."""
    response = client.get(f"{prefix}/{route}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body == {"success": True, "message": VERSION, "version": version_info(), "server": SERVICE_NAME,
                    "code": 200, "hostname": socket.gethostname()}
    assert body["version"]["major"] == int(VERSION.split(".")[0])


def test_the_version_is_written_once(client):
    assert client.get("/openapi.json").get_json()["info"]["version"] == VERSION
    assert client.get("/v1/status/version").get_json()["message"] == VERSION
    assert f"{version_info()['major']}.{version_info()['minor']}.{version_info()['patch']}" == VERSION


@pytest.mark.parametrize("prefix", PREFIXES)
def test_updateavailable_says_the_latest_version_is_not_known(client, prefix):
    """No claim either way: CodeProject.AI's own answer when it cannot retrieve the latest
    version (success false, HTTP 200), with this service's version as `current`."""
    response = client.get(f"/v1{prefix}/updateavailable")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is False and body["updateAvailable"] is None and body["latest"] is None
    assert body["current"] == version_info() and "does not check for updates" in body["message"]


def test_module_lists_and_host_figures_are_not_invented(client):
    for path in ("/v1/status/analysis/list", "/v1/status/modules/list", "/v1/server/status/analysis/list",
                 "/v1/module/list/status", "/v1/server/status/system-status", "/v1/status/Paths"):
        assert_error(client.get(path), 404)


def test_status_routes_are_get_only_and_keyed_like_every_route(tmp_path):
    client = make_app(tmp_path).test_client()
    assert_error(client.post("/v1/status/ping"), 405)
    keyed = make_app(tmp_path, api_keys=("k1",)).test_client()
    assert_error(keyed.get("/v1/status/ping"), 401)
    assert keyed.get("/v1/status/ping", headers={"X-API-Key": "k1"}).status_code == 200
