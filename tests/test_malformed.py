"""Every place a client's bytes reach a parser, fed what breaks parsers: JSON nested 50,000
deep, invalid or wrongly encoded JSON, broken multipart headers, hostile query strings,
base64 and data: URIs, EXIF and image headers that loop or overflow. The answer is always one
of our JSON 4xx errors (or a 200), never a 500, and nothing is logged with a traceback."""
from __future__ import annotations

import io
import logging
import struct

import pytest
from PIL import Image

from api.parsing import MAX_JSON_DEPTH, json_depth, parse_json
from errors import MalformedBody
from tests.support import imaging
from tests.support.http import assert_error, b64, multipart, upload

JSON_ROUTES = ("/classify-image", "/detect-objects", "/v2/classify", "/v2/detect")
DEEP = {
    "arrays": b"[" * 50_000 + b"]" * 50_000,
    "objects": b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    "unclosed": b"[" * 40_000,
    "inside images": b'{"images": [' + b"[" * 40_000 + b"]" * 40_000 + b"]}",
}
MALFORMED = {
    "truncated": b'{"image_url": "http://x',
    "trailing garbage": b'{"image_url": "http://example.com/a.jpg"} trailing',
    "duplicate keys": b'{"image_url": "http://example.com/a.jpg", "image_url": "http://example.com/b.jpg"}',
    "NaN": b'{"image_base64": NaN}',
    "Infinity": b'{"images": [Infinity]}',
    "huge integer": b'{"image_base64": ' + b"9" * 5000 + b"}",
    "invalid utf-8": b'{"image_url": "\xff\xfe\xfa"}',
    "lone surrogate escape is fine, the value is not": b'{"image_base64": "\\ud800"}',
    "empty body": b"",
    "whitespace": b"   \n ",
    "NUL": b"\x00" * 64,
}


@pytest.fixture
def no_tracebacks(caplog):
    """Fails the test if anything was logged with a traceback or at ERROR level."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


def post_json(client, path, body: bytes, content_type="application/json"):
    return client.post(path, data=body, content_type=content_type)


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("shape", list(DEEP))
def test_deep_json_is_400_bad_request_on_every_route(client, no_tracebacks, route, shape):
    body = assert_error(post_json(client, route, DEEP[shape]), 400, "bad_request")
    assert str(MAX_JSON_DEPTH) in body["error"]["message"] or "not valid JSON" in body["error"]["message"]


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_json_is_a_clear_400(client, no_tracebacks, route, case):
    response = post_json(client, route, MALFORMED[case])
    assert response.status_code == 400, (case, response.get_data(as_text=True))
    assert_error(response, 400)


def test_utf16_and_utf32_json_are_read(client, no_tracebacks):
    body = ('{"image_base64": "%s"}' % b64(imaging.jpeg())).encode("utf-16")
    assert post_json(client, "/classify-image", body, "application/json; charset=utf-16").status_code == 200
    body = ('{"image_base64": "%s"}' % b64(imaging.jpeg())).encode("utf-32")
    assert post_json(client, "/classify-image", body).status_code == 200


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth('{"a": "[[[[{{{{\\"[[[["}') == 1
    assert json_depth("[[1], [[2]]]") == 3
    assert json_depth("") == 0
    with pytest.raises(MalformedBody):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) == parse_json(b"[" * MAX_JSON_DEPTH
                                                                                   + b"]" * MAX_JSON_DEPTH)


def test_error_messages_name_the_problem_without_python_internals(client):
    message = assert_error(post_json(client, "/v2/classify", MALFORMED["huge integer"]), 400)["error"]["message"]
    assert "too many digits" in message and "sys." not in message
    message = assert_error(post_json(client, "/v2/classify", MALFORMED["duplicate keys"]), 400)["error"]["message"]
    assert "twice" in message


# --- multipart ---------------------------------------------------------------------------------

MULTIPART = {
    "no boundary": ("multipart/form-data", b"--x\r\n\r\n--x--"),
    "boundary of 5000 characters": ("multipart/form-data; boundary=" + "b" * 5000, b"--" + b"b" * 5000 + b"--\r\n"),
    "header line of 200 kB": ("multipart/form-data; boundary=zz",
                              b"--zz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + b"a" * 200_000
                              + b"\"\r\n\r\nxx\r\n--zz--\r\n"),
    "invalid utf-8 in headers": ("multipart/form-data; boundary=zz",
                                 b"--zz\r\nContent-Disposition: form-data; name=\"im\xffage\"; filename=\"\xfe\xff\"\r\n"
                                 b"Content-Type: \xff\r\n\r\nxx\r\n--zz--\r\n"),
    "no blank line after headers": ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data"),
    "nested multipart part": ("multipart/form-data; boundary=zz",
                              b"--zz\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Type: multipart/mixed;"
                              b" boundary=yy\r\n\r\n--yy\r\n\r\nx\r\n--yy--\r\n--zz--\r\n"),
    "charset utf-7": ("multipart/form-data; boundary=zz; charset=utf-7",
                      b"--zz\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n+AGEAYgBj-\r\n--zz--\r\n"),
    "unknown charset": ("multipart/form-data; boundary=zz; charset=x-nonsense",
                        b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--zz--\r\n"),
}


@pytest.mark.parametrize("case", list(MULTIPART))
def test_broken_multipart_is_4xx(client, no_tracebacks, case):
    content_type, body = MULTIPART[case]
    for route in JSON_ROUTES:
        response = client.post(route, data=body, content_type=content_type)
        assert 400 <= response.status_code < 500, (case, route, response.status_code)
        assert_error(response, response.status_code)


# --- query strings -----------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "?top_k=%ff%fe", "?top_k=%", "?top_k=%zz", "?model=%00", "?model=" + "m" * 10_000,
    "?" + "&".join(f"p{i}=1" for i in range(5000)), "?top_k=" + "9" * 5000, "?top_k=1e309",
    "?min_probability=nan", "?min_score=-0", "?classes=" + ",".join(["dog"] * 5000), "?annotate=%ff",
    "?max_detections=0x10", "?top_k=\u0661",
])
def test_hostile_query_strings(client, no_tracebacks, query):
    for route in JSON_ROUTES:
        response = upload(client, route, imaging.jpeg(), query=query)
        assert response.status_code in (200, 400, 404, 414), (route, query, response.status_code)
        if response.status_code != 200:
            assert_error(response, response.status_code)


# --- base64 and data: URIs ---------------------------------------------------------------------

@pytest.mark.parametrize("encoded", [
    "data:;base64,", "data:image/jpeg;base64,", "data:" + "x" * 10_000 + ";base64," + b64(imaging.jpeg()),
    "=" * 1000, "QQ", "Q===", "\u00e9\u00e9\u00e9\u00e9", "\x00" * 100, "data:image/png;base64,%%%%",
    b64(b"\xff\xd8\xff" + b"\x00" * 5000),
])
def test_hostile_base64(client, no_tracebacks, encoded):
    for route in JSON_ROUTES:
        response = client.post(route, json={"image_base64": encoded})
        assert response.status_code in (200, 400, 413, 415), (route, encoded[:30], response.status_code)
        if response.status_code != 200:
            assert_error(response, response.status_code)


# --- EXIF and image headers --------------------------------------------------------------------

def _jpeg_with_raw_exif(exif: bytes) -> bytes:
    return imaging.encode(imaging.solid(size=(16, 16)), "JPEG", exif=exif)


def _tiff_ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """A little-endian TIFF header + one IFD whose entries are (tag, type, count, value/offset)."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")[:4]
    return b"II*\x00" + struct.pack("<I", 8) + body + struct.pack("<I", next_ifd)


EXIF = {
    "IFD pointing to itself": b"Exif\0\0" + _tiff_ifd([(0x8769, 4, 1, struct.pack("<I", 8))], next_ifd=8),
    "count of 2**31 entries": b"Exif\0\0" + _tiff_ifd([(0x010F, 2, 2**31, struct.pack("<I", 100))]),
    "orientation 65535": b"Exif\0\0" + _tiff_ifd([(0x0112, 3, 1, struct.pack("<H", 65535))]),
    "orientation of wrong type": b"Exif\0\0" + _tiff_ifd([(0x0112, 2, 40, struct.pack("<I", 26))]),
    "offset past the end": b"Exif\0\0" + _tiff_ifd([(0x8825, 4, 1, struct.pack("<I", 2**31))]),
    "truncated header": b"Exif\0\0II*\x00",
    "big-endian garbage": b"Exif\0\0MM\x00*" + b"\xff" * 64,
}


@pytest.mark.parametrize("case", list(EXIF))
def test_hostile_exif_never_escapes(client, no_tracebacks, case):
    response = upload(client, "/v2/classify", _jpeg_with_raw_exif(EXIF[case]))
    assert response.status_code in (200, 400), (case, response.status_code)
    if response.status_code == 400:
        assert_error(response, 400, "invalid_image")


def _png(ihdr: bytes, extra: bytes = b"") -> bytes:
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IEND", b"")


HEADERS = {
    "PNG with zero width": _png(struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0)),
    "PNG with bit depth 99": _png(struct.pack(">IIBBBBB", 10, 10, 99, 2, 0, 0, 0)),
    "PNG with 2**31-1 sides": _png(struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 2, 0, 0, 0)),
    "PNG with a short IHDR": _png(b"\x00\x00"),
    "BMP with negative sizes": b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, -2**31,
                                                                                         -2**31, 1, 24, 0, 0, 0, 0, 0, 0),
    "BMP with a huge header size": b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<I", 2**31) + b"\0" * 40,
    "GIF with a bad LZW code size": b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00,\x00\x00\x00\x00\x0a\x00\x0a\x00\x00\x0c"
                                    b"\x02\x00\x00;",
    "TIFF with an IFD loop": _tiff_ifd([(256, 3, 1, struct.pack("<H", 4)), (257, 3, 1, struct.pack("<H", 4))],
                                       next_ifd=8),
    "WEBP header only": b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00\x00\x00\x00\x00",
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_hostile_image_headers_are_4xx(client, no_tracebacks, case):
    response = upload(client, "/v2/classify", HEADERS[case])
    assert response.status_code in (400, 413, 415), (case, response.status_code, response.get_data(as_text=True))
    assert_error(response, response.status_code)


def test_the_service_answers_normally_after_all_of_it(client):
    assert upload(client, "/classify-image", imaging.jpeg()).status_code == 200
    content_type, body = multipart(files={"image": ("a.jpg", imaging.jpeg())})
    assert client.post("/v2/detect", data=body, content_type=content_type).status_code == 200
    assert Image.open(io.BytesIO(imaging.jpeg())).size == (32, 24)
