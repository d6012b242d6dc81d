"""Cross-origin requests (CORS_ORIGINS, api.middleware.allow_origins): off by default, on for
'*' or listed origins, preflights answered without a key, API keys still required on the call
itself, never credentials, Vary: Origin. Requests carry the headers a browser sends: Origin on
every cross-origin call; Access-Control-Request-Method/-Headers on a preflight (OPTIONS)."""
from __future__ import annotations

import pytest

from config import ConfigError, Settings
from tests.support import imaging
from tests.support.http import assert_error, every_route, make_app, upload

PAGE = "https://dashboard.example"
OTHER = "https://evil.example"
ACAO, ACAC = "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"


def preflight(client, path, origin=PAGE, method="POST", headers="content-type, x-api-key"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def cors_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_off_by_default_no_cors_header_anywhere(tmp_path):
    assert Settings.from_env({}).cors_origins == ()
    client = make_app(tmp_path).test_client()
    for response in (client.get("/health", headers={"Origin": PAGE}), preflight(client, "/v2/detect"),
                     upload(client, "/v2/detect", imaging.jpeg()), client.get("/nope", headers={"Origin": PAGE})):
        assert cors_headers(response) == {} and "Origin" not in response.headers.get("Vary", "")


def test_the_wildcard_answers_every_origin_with_a_plain_star(tmp_path):
    client = make_app(tmp_path, cors_origins=("*",)).test_client()
    for origin in (PAGE, OTHER, "http://localhost:3000"):
        response = client.get("/health", headers={"Origin": origin})
        assert response.status_code == 200 and response.headers[ACAO] == "*"
        assert ACAC not in response.headers and "Origin" in response.vary
    # A request without Origin is not a cross-origin one: nothing to say.
    plain = client.get("/health")
    assert ACAO not in plain.headers and "Origin" in plain.vary


def test_a_preflight_is_answered_with_what_the_api_takes(tmp_path):
    client = make_app(tmp_path, cors_origins=(PAGE,)).test_client()
    response = preflight(client, "/v2/detect", headers="Content-Type, X-API-Key, Authorization")
    assert response.status_code == 200 and response.data == b""
    assert response.headers[ACAO] == PAGE and ACAC not in response.headers
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert {h.lower() for h in response.headers["Access-Control-Allow-Headers"].split(", ")} == \
        {"content-type", "x-api-key", "authorization"}
    assert response.headers["Access-Control-Max-Age"] == "600"
    # A header the API never reads is not allowed: the browser then refuses to send the call.
    odd = preflight(client, "/v2/detect", headers="x-api-key, x-debug")
    assert odd.headers["Access-Control-Allow-Headers"].lower() == "x-api-key"
    # Chrome's Private Network Access: a public page may not reach this (private) service.
    private = client.options("/v2/detect", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Private-Network": "true"})
    assert private.headers["Access-Control-Allow-Private-Network"] == "false"


def test_listed_origins_only_each_compared_whole(tmp_path):
    client = make_app(tmp_path, cors_origins=(PAGE, "http://[::1]:8080")).test_client()
    assert client.get("/health", headers={"Origin": "HTTPS://Dashboard.Example"}).headers[ACAO] == \
        "HTTPS://Dashboard.Example"   # origins compare without regard to case; the browser's spelling is echoed
    assert client.get("/health", headers={"Origin": "http://[::1]:8080"}).headers[ACAO] == "http://[::1]:8080"
    for origin in (OTHER, PAGE + ".evil.example", PAGE + ":8443", "http://dashboard.example", "null",
                   "http://[::1]:80800"):
        response = client.get("/health", headers={"Origin": origin})
        assert response.status_code == 200 and cors_headers(response) == {}, origin   # served; unreadable
        assert "Origin" in response.vary
        assert cors_headers(preflight(client, "/v2/detect", origin=origin)) == {}, origin


def test_api_keys_are_still_required_but_never_for_a_preflight(tmp_path):
    client = make_app(tmp_path, cors_origins=(PAGE,), api_keys=("k1",)).test_client()
    answer = preflight(client, "/v2/detect")
    assert answer.status_code == 200 and answer.headers[ACAO] == PAGE
    refused = client.post("/v2/detect", headers={"Origin": PAGE})
    assert_error(refused, 401)
    assert refused.headers[ACAO] == PAGE   # the page can read why
    allowed = client.post("/v2/detect", data={"image": (imaging.jpeg_file(), "a.jpg")},
                          headers={"Origin": PAGE, "X-API-Key": "k1"}, content_type="multipart/form-data")
    assert allowed.status_code == 200 and allowed.headers[ACAO] == PAGE
    assert {"X-Request-ID", "Server-Timing"} <= set(allowed.headers["Access-Control-Expose-Headers"].split(", "))
    # A GET or POST cannot pass for a preflight: only Flask's own OPTIONS answer skips the key.
    assert_error(client.get("/models", headers={"Origin": PAGE, "Access-Control-Request-Method": "GET"}), 401)
    assert_error(client.options("/nope", headers={"Origin": PAGE}), 401)


def test_every_route_leaves_options_to_flask(tmp_path):
    """The key check skips OPTIONS only where Flask answers it (no route runs): no route may
    take OPTIONS itself."""
    app = make_app(tmp_path, api_keys=("k1",), cors_origins=("*",))
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        assert rule.provide_automatic_options, rule.rule
    for method, path in every_route(app):
        response = client.options(path, headers={"Origin": PAGE, "Access-Control-Request-Method": method})
        assert response.status_code == 200 and response.data == b"" and response.headers[ACAO] == "*", path


@pytest.mark.parametrize("origins", [("*",), (PAGE,)])
def test_credentialed_requests_are_never_allowed(tmp_path, origins):
    """A browser sends cookies or HTTP authentication cross-origin, and lets the page read the
    answer, only when it says Access-Control-Allow-Credentials: true. No answer says it: keys
    travel in headers the page sets, which CORS allows without credentials."""
    client = make_app(tmp_path, cors_origins=origins, api_keys=("k1",)).test_client()
    credentialed = {"Origin": PAGE, "Cookie": "session=abc", "X-API-Key": "k1"}
    for response in (client.get("/models", headers=credentialed), preflight(client, "/models", method="GET"),
                     client.get("/models", headers={"Origin": PAGE, "Authorization": "Basic dXNlcjpwYXNz"})):
        assert ACAC not in response.headers
        assert response.headers[ACAO] == ("*" if origins == ("*",) else PAGE)


def test_error_answers_and_security_headers_keep_their_shape(tmp_path):
    client = make_app(tmp_path, cors_origins=(PAGE,), max_upload_mb=1).test_client()
    for response in (client.get("/nope", headers={"Origin": PAGE}),
                     client.post("/v2/detect", data=b"\0" * (2 << 20), headers={"Origin": PAGE},
                                 content_type="application/octet-stream"),
                     client.post("/v1/vision/detection", headers={"Origin": PAGE})):
        assert response.status_code >= 400 and response.headers[ACAO] == PAGE
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_origins_are_checked_at_start():
    settings = Settings.from_env({"CORS_ORIGINS": "https://Dashboard.Example, http://10.0.0.5:8123"})
    assert settings.cors_origins == ("https://dashboard.example", "http://10.0.0.5:8123")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CORS_ORIGINS": "*, https://a.example, null, https://a.example/, dashboard.example, "
                                           "ftp://a.example, https://a.example:70000"})
    problems = info.value.problems
    assert len(problems) == 6 and all(p.startswith("CORS_ORIGINS") for p in problems)
    assert "give it alone" in problems[0] and "sandboxed" in problems[1] and "without a path" in problems[2]
    with pytest.raises(ConfigError, match="twice"):
        Settings.from_env({"CORS_ORIGINS": "https://a.example,HTTPS://A.example"})
