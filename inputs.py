"""Where a request's images come from: multipart `image` parts, or JSON `image_url`,
`image_base64`, or `images: [...]`. Reading is separate from fetching and decoding, so a
cached URL is never fetched and one bad image in a batch stays one error entry."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re

from flask import Request

from errors import ApiError, InvalidImage, InvalidParameter, MissingImage, UnsupportedMediaType

_DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
HOW_TO_SEND = ("Send a multipart/form-data file field named 'image' (curl -F image=@photo.jpg), "
               "or JSON {\"image_url\": \"https://...\"} or {\"image_base64\": \"...\"}.")


@dataclasses.dataclass
class ImageSource:
    key: str                       # "sha256:<hex>" of the bytes, or the URL itself
    url: str | None = None
    data: bytes | None = None
    error: ApiError | None = None  # this item could not even be read

    @classmethod
    def of_bytes(cls, data: bytes) -> "ImageSource":
        return cls(key="sha256:" + hashlib.sha256(data).hexdigest(), data=data)


def read_sources(request: Request, *, batch: bool, max_batch: int) -> list[ImageSource]:
    if request.mimetype == "multipart/form-data":
        uploads = request.files.getlist("image")
        if not uploads:
            raise MissingImage(HOW_TO_SEND)
        _check_count(len(uploads), batch, max_batch)
        return [ImageSource.of_bytes(upload.read()) for upload in uploads]
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidParameter("The body is not a JSON object. " + HOW_TO_SEND)
        if "images" in body:
            if not batch:
                raise InvalidParameter("This route takes one image; send batches to /v2/classify or /v2/detect.")
            items = body["images"]
            if not isinstance(items, list) or not items:
                raise InvalidParameter("'images' must be a non-empty list of {\"image_url\"} or {\"image_base64\"} objects.")
            _check_count(len(items), batch, max_batch)
            return [_json_item(item, strict=False) for item in items]
        return [_json_item(body, strict=True)]
    raise UnsupportedMediaType(HOW_TO_SEND)


def _check_count(count: int, batch: bool, max_batch: int) -> None:
    if count > 1 and not batch:
        raise InvalidParameter("This route takes one image; send batches to /v2/classify or /v2/detect.")
    if count > max_batch:
        raise InvalidParameter(f"At most {max_batch} images per request (MAX_BATCH); this one has {count}.")


def _json_item(item, *, strict: bool) -> ImageSource:
    try:
        if not isinstance(item, dict):
            raise InvalidParameter("Each image must be an object with 'image_url' or 'image_base64'.")
        url, encoded = item.get("image_url"), item.get("image_base64")
        if (url is None) == (encoded is None):
            raise MissingImage("Give exactly one of 'image_url' or 'image_base64'. " + HOW_TO_SEND)
        if url is not None:
            if not isinstance(url, str) or not url or len(url) > 4096:
                raise InvalidParameter("'image_url' must be a URL string of at most 4096 characters.")
            return ImageSource(key=url, url=url)
        if not isinstance(encoded, str):
            raise InvalidImage("'image_base64' must be a string.")
        try:
            data = base64.b64decode(_DATA_URI.sub("", "".join(encoded.split())), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImage("'image_base64' is not valid base64.") from None
        return ImageSource.of_bytes(data)
    except ApiError as err:
        if strict:
            raise
        return ImageSource(key="invalid", error=err)
