"""The data plane's input: one image to process, as bytes, a URL, or the error that kept it
from being read (so one bad image in a batch stays one error entry)."""
from __future__ import annotations

import dataclasses
import hashlib

from errors import ApiError

INVALID_KEY = "invalid"  # the key of a source that could not be read: counted, never reported


@dataclasses.dataclass
class ImageSource:
    key: str                       # "sha256:<hex>" of the bytes, or the URL itself
    url: str | None = None
    data: bytes | None = None
    error: ApiError | None = None  # this item could not even be read

    @classmethod
    def of_bytes(cls, data: bytes) -> "ImageSource":
        return cls(key="sha256:" + hashlib.sha256(data).hexdigest(), data=data)

    @classmethod
    def of_url(cls, url: str) -> "ImageSource":
        return cls(key=url, url=url)

    @classmethod
    def failed(cls, error: ApiError) -> "ImageSource":
        return cls(key=INVALID_KEY, error=error)
