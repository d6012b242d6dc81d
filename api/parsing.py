"""Request parsing: where a request's images come from (multipart `image` parts, or JSON
`image_url`, `image_base64`, `images: [...]`) and its query parameters, with precise 400s.
Reading is separate from fetching and decoding, so a cached URL is never fetched and one bad
image in a batch stays one error entry."""
from __future__ import annotations

import base64
import binascii
import json
import re

import numpy as np
from flask import Request, request

from dataplane.sources import ImageSource
from errors import ApiError, InvalidImage, InvalidParameter, MalformedBody, MissingImage, UnsupportedMediaType

_DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
HOW_TO_SEND = ("Send a multipart/form-data file field named 'image' (curl -F image=@photo.jpg), "
               "or JSON {\"image_url\": \"https://...\"} or {\"image_base64\": \"...\"}.")
ONE_IMAGE_ONLY = "This route takes one image; send batches to /v2/classify or /v2/detect."
# DeepStack's and CodeProject.AI's routes: CodeProject.AI reads the first file part, whatever its
# name (its explorer page sends 'image1', its .NET client 'file').
HOW_TO_SEND_ANY_NAME = ("Send the image as a multipart/form-data file part: 'image' (curl -F image=@photo.jpg), "
                        "or under any other name ('image1', 'file'), of which the first file part is read.")
# Our JSON bodies nest 3 levels ({"images": [{...}]}); anything far deeper is hostile, and
# Python's parser would meet its recursion limit on it (RecursionError, which `silent` lets through).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_STEPS = np.zeros(256, dtype=np.int8)
_BRACKET_STEPS[[ord("["), ord("{")]] = 1
_BRACKET_STEPS[[ord("]"), ord("}")]] = -1
# Numeric parameters: [0-9], never \d (which matches every script's digits).
MAX_NUMBER_CHARS = 32
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")


# Booleans in query strings and in the environment (config.py reads its variables with these).
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f"})
BOOLEAN_HELP = "use one of true/false, 1/0, yes/no, on/off"


def parse_bool(text: str) -> bool | None:
    """True or False for the accepted spellings (any case, surrounding spaces ignored); None otherwise."""
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    return None


# --- images ----------------------------------------------------------------------------------

def read_sources(req: Request, *, max_images: int, any_file_name: bool = False) -> list[ImageSource]:
    """The request's images, at most `max_images` (1: a single-image route). `any_file_name`
    (the DeepStack / CodeProject.AI routes): without an `image` part, the first file part is the
    image whatever its name, as CodeProject.AI's server reads it (its clients send `image1` or
    `file`); file parts after it are ignored, as CodeProject.AI ignores them. `image` parts,
    where sent, are read as on every route (two of them on a single-image route are a 400)."""
    if req.mimetype == "multipart/form-data":
        uploads = req.files.getlist("image")
        if not uploads and any_file_name:
            uploads = first_file_part(req)
        if not uploads:
            raise MissingImage(HOW_TO_SEND_ANY_NAME if any_file_name else HOW_TO_SEND)
        _check_count(len(uploads), max_images)
        return [ImageSource.of_bytes(upload.read()) for upload in uploads]
    if req.mimetype == "application/json":
        body = parse_json(req.get_data(cache=True))
        if not isinstance(body, dict):
            raise InvalidParameter("The body is not a JSON object. " + HOW_TO_SEND)
        if "images" not in body:
            return [_json_item(body)]
        if max_images == 1:
            raise InvalidParameter(ONE_IMAGE_ONLY)
        items = body["images"]
        if not isinstance(items, list) or not items:
            raise InvalidParameter("'images' must be a non-empty list of {\"image_url\"} or {\"image_base64\"} objects.")
        _check_count(len(items), max_images)
        return [_json_item_or_error(item) for item in items]
    raise UnsupportedMediaType(HOW_TO_SEND)


def first_file_part(req: Request) -> list:
    """The body's first file part, whatever its name, as a one-item list ([] when it has none).
    werkzeug keeps a name's parts together, in order, and names in the order they first came,
    so the first part of the first name is the body's first file part."""
    for _name, upload in req.files.items(multi=True):
        return [upload]
    return []


def parse_json(data: bytes):
    """The body as JSON, or MalformedBody (400) for any body that is not one JSON document:
    too deep, invalid, not UTF-8/16/32, duplicate keys, NaN/Infinity, trailing garbage."""
    try:
        text = data.decode(json.detect_encoding(data))
    except (UnicodeDecodeError, LookupError):
        raise MalformedBody("The body is not valid JSON: it is not UTF-8 text.") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise MalformedBody(f"The body is not valid JSON for this API: it nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except RecursionError:  # a backstop: json_depth bounds nesting before parsing
        raise MalformedBody("The body is not valid JSON: it nests too deeply.") from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"The body is not valid JSON ({exc.msg} at character {exc.pos}).") from None
    except _Refused as exc:
        raise MalformedBody(f"The body is not valid JSON for this API: {exc}.") from None
    except ValueError:  # int() refusing a number of thousands of digits
        raise MalformedBody("The body is not valid JSON for this API: a number has too many digits.") from None


def json_depth(text: str) -> int:
    """The deepest bracket nesting outside string literals, in linear time without recursion."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    if not skeleton:
        return 0
    steps = _BRACKET_STEPS[np.frombuffer(skeleton, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


class _Refused(ValueError):
    """JSON that Python would accept but this API does not."""


def _unique_keys(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Refused("a key appears twice in one object")
    return dict(pairs)


def _no_constants(name: str):
    raise _Refused(f"{name} is not a JSON number")


def _check_count(count: int, max_images: int) -> None:
    if count > 1 and max_images == 1:
        raise InvalidParameter(ONE_IMAGE_ONLY)
    if count > max_images:
        raise InvalidParameter(f"At most {max_images} images per request (MAX_IMAGES_PER_REQUEST); this one has {count}.")


def _json_item_or_error(item) -> ImageSource:
    """A batch item: a bad one is that image's error entry, not a failed batch."""
    try:
        return _json_item(item)
    except ApiError as err:
        return ImageSource.failed(err)


def _json_item(item) -> ImageSource:
    if not isinstance(item, dict):
        raise InvalidParameter("Each image must be an object with 'image_url' or 'image_base64'.")
    url, encoded = item.get("image_url"), item.get("image_base64")
    if (url is None) == (encoded is None):
        raise MissingImage("Give exactly one of 'image_url' or 'image_base64'. " + HOW_TO_SEND)
    if url is not None:
        if not isinstance(url, str) or not url or len(url) > 4096:
            raise InvalidParameter("'image_url' must be a URL string of at most 4096 characters.")
        return ImageSource.of_url(url)
    if not isinstance(encoded, str):
        raise InvalidImage("'image_base64' must be a string.")
    return ImageSource.of_bytes(base64_image(encoded, "'image_base64'"))


def base64_image(encoded: str, field: str) -> bytes:
    """An image sent as base64 text (a `data:` URI prefix and whitespace allowed); `field` names it."""
    try:
        return base64.b64decode(_DATA_URI.sub("", "".join(encoded.split())), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{field} is not valid base64.") from None


# --- query parameters ------------------------------------------------------------------------

def int_arg(name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    return _number_arg(name, True, default, minimum, maximum)


def float_arg(name: str, *, default: float, minimum: float, maximum: float, source=None) -> float:
    """`source`: where the value is read (default: the query string; DeepStack clients send form fields)."""
    return _number_arg(name, False, default, minimum, maximum, source)


def _number_arg(name: str, whole: bool, default, minimum, maximum, source=None):
    """Only plain ASCII decimal is read (see plain_number); anything else is a 400 naming the field."""
    raw = (request.args if source is None else source).get(name)
    if raw is None or raw == "":
        return default
    if not plain_number(raw, whole=whole, negative=minimum < 0):
        kind = "a whole number" if whole else "a number"
        written = "ASCII digits only" if whole else "ASCII digits and at most one decimal point, e.g. 0.5"
        raise InvalidParameter(f"'{name}' must be {kind} from {minimum:g} to {maximum:g}, written as {written} "
                               f"(no exponent, spaces or other signs; at most {MAX_NUMBER_CHARS} characters).")
    value = int(raw) if whole else float(raw)
    if not minimum <= value <= maximum:
        raise InvalidParameter(f"'{name}' must be from {minimum:g} to {maximum:g}.")
    return value


def plain_number(raw: str, *, whole: bool, negative: bool = False) -> bool:
    """Whether `raw` is a number as a person writes one: ASCII digits with at most one decimal
    point (none for whole numbers), a leading '-' only where the range has negatives, nothing
    else. Python's int() and float() also take other scripts' digits (٠.٥, ０.５), surrounding
    spaces, '+', '_', exponents and inf/nan, and 1e-400 silently becomes 0: none of them is a
    threshold a client means to send."""
    if len(raw) > MAX_NUMBER_CHARS:
        return False
    if negative and raw.startswith("-"):
        raw = raw[1:]
    return (_WHOLE if whole else _DECIMAL).fullmatch(raw) is not None


def bool_arg(name: str, *, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = parse_bool(raw)
    if value is None:
        raise InvalidParameter(f"'{name}' must be true or false.")
    return value


def list_arg(name: str) -> frozenset[str] | None:
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())
