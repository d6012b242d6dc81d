"""The data plane's input: one image to process, as bytes, a URL, or the error that kept it
from being read (so one bad image in a batch stays one error entry).

An image's key names it in the result cache and the usage report, in one of two shapes only:
"sha256:<hex>" of the bytes, or "url:<hex>", the sha256 of the URL. A URL is a client's text
of up to 4,096 characters, perhaps with tokens in it: its hash keeps every key short and
keeps the URL itself out of the cache, Redis and /report.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

from errors import ApiError

INVALID_KEY = "invalid"  # the key of a source that could not be read: counted, never reported
# The only shapes of image key the service writes (a key read back from Redis is shown only in these).
KEY_SHAPE = re.compile(r"(sha256|url):[0-9a-f]{64}")


@dataclasses.dataclass
class ImageSource:
    key: str                       # "sha256:<hex>" of the bytes, or "url:<hex>" of the URL
    url: str | None = None
    data: bytes | None = None
    error: ApiError | None = None  # this item could not even be read

    @classmethod
    def of_bytes(cls, data: bytes) -> "ImageSource":
        return cls(key="sha256:" + hashlib.sha256(data).hexdigest(), data=data)

    @classmethod
    def of_url(cls, url: str) -> "ImageSource":
        # surrogatepass: a JSON string may hold a lone surrogate, which UTF-8 cannot encode.
        return cls(key="url:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest(), url=url)

    @classmethod
    def failed(cls, error: ApiError) -> "ImageSource":
        return cls(key=INVALID_KEY, error=error)
