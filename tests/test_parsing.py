"""api/parsing.py directly, inside a bare Flask request context: where a request's images come
from (multipart parts, JSON image_url / image_base64 / images), the 4xx for each malformed
shape, source keys, and the query-parameter readers int_arg, float_arg, bool_arg, list_arg."""
from __future__ import annotations

import base64
import hashlib
import io
import json

import flask
import pytest

import errors
from api.parsing import bool_arg, float_arg, int_arg, list_arg, read_sources
from dataplane.sources import INVALID_KEY, KEY_SHAPE, ImageSource

URL = "https://images.example.com/cat.jpg"
PAYLOAD = bytes(range(256)) * 3


@pytest.fixture(scope="module")
def app():
    return flask.Flask(__name__)


def sha_key(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def url_key(url: str) -> str:
    """A URL's key is its hash: a client's text of up to 4,096 characters is never a key."""
    return "url:" + hashlib.sha256(url.encode()).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def multipart(app, *parts: bytes, field: str = "image"):
    files = [(io.BytesIO(part), f"image{i}.jpg") for i, part in enumerate(parts)]
    return app.test_request_context("/", method="POST", data={field: files}, content_type="multipart/form-data")


def sources_of_json(app, body, *, max_images: int = 8, content_type: str = "application/json"):
    data = json.dumps(body)  # `json=None` would send no body at all; "null" is what is meant
    with app.test_request_context("/", method="POST", data=data, content_type=content_type):
        return read_sources(flask.request, max_images=max_images)


def args(app, **query):
    return app.test_request_context("/", query_string=query)


# --- multipart -------------------------------------------------------------------------------

def test_multipart_one_image(app):
    with multipart(app, b"first image"):
        sources = read_sources(flask.request, max_images=1)
    assert len(sources) == 1
    assert sources[0].data == b"first image"
    assert sources[0].key == sha_key(b"first image")
    assert sources[0].url is None and sources[0].error is None


def test_multipart_several_images_keep_their_order(app):
    parts = [b"one", b"two", b"three"]
    with multipart(app, *parts):
        sources = read_sources(flask.request, max_images=3)
    assert [s.data for s in sources] == parts
    assert [s.key for s in sources] == [sha_key(p) for p in parts]


def test_multipart_without_image_part_is_missing_image(app):
    with app.test_request_context("/", method="POST", data={"other": "value"}, content_type="multipart/form-data"):
        with pytest.raises(errors.MissingImage) as caught:
            read_sources(flask.request, max_images=4)
    assert caught.value.code == 400
    with multipart(app, b"data", field="file"):
        with pytest.raises(errors.MissingImage):
            read_sources(flask.request, max_images=4)


def test_multipart_more_than_max_images_names_max_batch(app):
    with multipart(app, b"1", b"2", b"3"):
        with pytest.raises(errors.InvalidParameter) as caught:
            read_sources(flask.request, max_images=2)
    assert caught.value.code == 400
    assert "MAX_IMAGES_PER_REQUEST" in caught.value.message
    assert "2" in caught.value.message and "3" in caught.value.message


def test_multipart_several_images_on_a_single_image_route(app):
    with multipart(app, b"1", b"2"):
        with pytest.raises(errors.InvalidParameter) as caught:
            read_sources(flask.request, max_images=1)
    assert "one image" in caught.value.message
    assert "MAX_IMAGES_PER_REQUEST" not in caught.value.message


# --- JSON ------------------------------------------------------------------------------------

def test_json_image_url(app):
    [source] = sources_of_json(app, {"image_url": URL}, max_images=1)
    assert source.url == URL and source.key == url_key(URL)
    assert source.data is None and source.error is None


def test_json_content_type_with_charset(app):
    [source] = sources_of_json(app, {"image_url": URL}, content_type="application/json; charset=utf-8")
    assert source.url == URL


def test_json_image_base64_plain(app):
    [source] = sources_of_json(app, {"image_base64": b64(PAYLOAD)}, max_images=1)
    assert source.data == PAYLOAD
    assert source.key == sha_key(PAYLOAD)
    assert source.url is None


def test_json_image_base64_with_data_uri_and_newlines(app):
    encoded = b64(PAYLOAD)
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    for prefix in ("data:image/png;base64,", "DATA:image/jpeg;BASE64,", "data:;base64,"):
        [source] = sources_of_json(app, {"image_base64": prefix + wrapped + "\r\n"}, max_images=1)
        assert source.data == PAYLOAD, prefix
        assert source.key == sha_key(PAYLOAD)


@pytest.mark.parametrize("encoded", ["not base64!!", "abc", "data:image/png;base64,@@@@", "ab=c"])
def test_json_invalid_base64_is_invalid_image(app, encoded):
    with pytest.raises(errors.InvalidImage) as caught:
        sources_of_json(app, {"image_base64": encoded})
    assert caught.value.code == 400


def test_json_image_base64_not_a_string_is_invalid_image(app):
    with pytest.raises(errors.InvalidImage):
        sources_of_json(app, {"image_base64": 12345})


@pytest.mark.parametrize("body", [{}, {"image_url": URL, "image_base64": b64(b"x")}, {"other": 1}])
def test_json_both_or_neither_key_is_missing_image(app, body):
    with pytest.raises(errors.MissingImage) as caught:
        sources_of_json(app, body)
    assert caught.value.code == 400


@pytest.mark.parametrize("url", [123, "", "https://x/" + "a" * 5000])
def test_json_bad_image_url_is_invalid_parameter(app, url):
    with pytest.raises(errors.InvalidParameter):
        sources_of_json(app, {"image_url": url})


@pytest.mark.parametrize("body", [[{"image_url": URL}], "a string", 42, None])
def test_json_body_not_an_object_is_invalid_parameter(app, body):
    with pytest.raises(errors.InvalidParameter) as caught:
        sources_of_json(app, body)
    assert caught.value.code == 400


def test_malformed_json_body_is_bad_request(app):
    with app.test_request_context("/", method="POST", data="{not json", content_type="application/json"):
        with pytest.raises(errors.MalformedBody):
            read_sources(flask.request, max_images=8)


def test_json_images_list_with_one_bad_item(app):
    good_bytes = b"a good image"
    items = [{"image_url": URL}, {"image_base64": "%%% nope"}, {"image_base64": b64(good_bytes)},
             "not an object", {}]
    sources = sources_of_json(app, {"images": items}, max_images=8)
    assert len(sources) == 5

    assert sources[0].url == URL and sources[0].key == url_key(URL) and sources[0].error is None
    assert sources[2].data == good_bytes and sources[2].key == sha_key(good_bytes) and sources[2].error is None

    assert isinstance(sources[1].error, errors.InvalidImage)
    assert isinstance(sources[3].error, errors.InvalidParameter)
    assert isinstance(sources[4].error, errors.MissingImage)
    for bad in (sources[1], sources[3], sources[4]):
        assert bad.key == INVALID_KEY == "invalid"
        assert bad.data is None and bad.url is None


def test_json_images_on_a_single_image_route(app):
    with pytest.raises(errors.InvalidParameter) as caught:
        sources_of_json(app, {"images": [{"image_url": URL}]}, max_images=1)
    assert "one image" in caught.value.message


@pytest.mark.parametrize("images", [[], {"image_url": URL}, "x", None])
def test_json_images_not_a_non_empty_list(app, images):
    with pytest.raises(errors.InvalidParameter):
        sources_of_json(app, {"images": images}, max_images=8)


def test_json_images_more_than_max(app):
    with pytest.raises(errors.InvalidParameter) as caught:
        sources_of_json(app, {"images": [{"image_url": URL}] * 5}, max_images=4)
    assert "MAX_IMAGES_PER_REQUEST" in caught.value.message


@pytest.mark.parametrize("content_type", ["text/plain", "image/jpeg", "application/x-www-form-urlencoded"])
def test_other_content_type_is_unsupported_media_type(app, content_type):
    with app.test_request_context("/", method="POST", data=b"hello", content_type=content_type):
        with pytest.raises(errors.UnsupportedMediaType) as caught:
            read_sources(flask.request, max_images=8)
    assert caught.value.code == 415


def test_no_body_at_all_is_unsupported_media_type(app):
    with app.test_request_context("/", method="POST"):
        with pytest.raises(errors.UnsupportedMediaType):
            read_sources(flask.request, max_images=8)


# --- query parameters ------------------------------------------------------------------------

def read_int(app, value=None, default=5):
    query = {} if value is None else {"n": value}
    with args(app, **query):
        return int_arg("n", default=default, minimum=1, maximum=10)


def read_float(app, value=None, default=0.5):
    query = {} if value is None else {"t": value}
    with args(app, **query):
        return float_arg("t", default=default, minimum=0.0, maximum=1.0)


def test_int_arg_default_when_absent_or_empty(app):
    assert read_int(app) == 5
    assert read_int(app, "") == 5
    assert read_int(app, None, default=None) is None


@pytest.mark.parametrize("value, expected", [("1", 1), ("7", 7), ("10", 10), ("007", 7)])
def test_int_arg_accepts_whole_numbers_in_range(app, value, expected):
    result = read_int(app, value)
    assert result == expected and type(result) is int


# What Python's int() and float() take but a client never means: signs, spaces, separators,
# exponents, other scripts' digits (Arabic-Indic, fullwidth, Devanagari, superscript), and
# over-long spellings.
HOSTILE_NUMBERS = ["+3", " 3", "3 ", "\t3", "3\n", "1_0", "٣", "３", "३", "³", "1e0", "0x5", "5.0.0",
                   "0" * 40 + "5", "\u200b5"]


@pytest.mark.parametrize("value", ["abc", "nan", "1e309", "5.5", "0", "11", "-1", "1e3", "inf", "5.", "5.0",
                                   *HOSTILE_NUMBERS])
def test_int_arg_refuses(app, value):
    with pytest.raises(errors.InvalidParameter) as caught:
        read_int(app, value)
    assert caught.value.code == 400
    assert "'n'" in caught.value.message


def test_float_arg_default_when_absent_or_empty(app):
    assert read_float(app) == 0.5
    assert read_float(app, "") == 0.5


@pytest.mark.parametrize("value, expected", [("0", 0.0), ("0.25", 0.25), ("1", 1.0), (".5", 0.5), ("1.", 1.0),
                                             ("00.50", 0.5), ("0." + "0" * 29 + "1", 1e-30)])
def test_float_arg_accepts_numbers_in_range(app, value, expected):
    assert read_float(app, value) == expected


HOSTILE_DECIMALS = ["٠.٥", "０.５", "0.५", " 0.5", "0.5 ", "\u00a00.5", "0.5\n", "+0.5", "-0", "2.5e-1", "1e-400",
                    "5E-1", "0.5.", "..5", ".", "0,5", "0_5", "0x0.8p0", "½", "infinity", "0." + "0" * 40 + "1"]


@pytest.mark.parametrize("value", ["abc", "nan", "NaN", "1e309", "inf", "-inf", "-0.01", "1.5", *HOSTILE_DECIMALS])
def test_float_arg_refuses(app, value):
    with pytest.raises(errors.InvalidParameter) as caught:
        read_float(app, value)
    assert caught.value.code == 400
    assert "'t'" in caught.value.message


def test_a_minus_sign_only_where_the_range_has_negatives(app):
    with args(app, t="-0.5"):
        assert float_arg("t", default=0.0, minimum=-1.0, maximum=1.0) == -0.5
    for value in ("--0.5", "+0.5", "- 0.5", "-٠.٥"):
        with args(app, t=value):
            with pytest.raises(errors.InvalidParameter):
                float_arg("t", default=0.0, minimum=-1.0, maximum=1.0)


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("on", True), ("off", False), ("TRUE", True), ("False", False), ("YES", True), ("No", False),
    ("oN", True), ("OFF", False),
])
def test_bool_arg_accepted_spellings(app, value, expected):
    for default in (True, False):
        with args(app, flag=value):
            assert bool_arg("flag", default=default) is expected


def test_bool_arg_default_when_absent_or_empty(app):
    with args(app):
        assert bool_arg("flag") is False
        assert bool_arg("flag", default=True) is True
    with args(app, flag=""):
        assert bool_arg("flag", default=True) is True


@pytest.mark.parametrize("value", ["maybe", "2", "truthy", "yess"])
def test_bool_arg_refuses_other_words(app, value):
    with args(app, flag=value):
        with pytest.raises(errors.InvalidParameter) as caught:
            bool_arg("flag")
    assert caught.value.code == 400
    assert "'flag'" in caught.value.message


def test_list_arg_splits_and_strips(app):
    with args(app, labels=" dog, cat ,,bird "):
        assert list_arg("labels") == frozenset({"dog", "cat", "bird"})
    with args(app, labels="dog"):
        assert list_arg("labels") == frozenset({"dog"})


def test_list_arg_none_when_absent_or_blank(app):
    with args(app):
        assert list_arg("labels") is None
    for blank in ("", "   "):
        with args(app, labels=blank):
            assert list_arg("labels") is None


def test_a_url_key_is_a_short_hash_whatever_the_url_holds():
    for url in (URL, "http://x/" + "a" * 4000, "http://x/\ud800 lone surrogate", "http://x/猫"):
        assert KEY_SHAPE.fullmatch(ImageSource.of_url(url).key)
