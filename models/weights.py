"""Official weight files (models/builtins.py names each built-in's) and the verified download
into MODELS_DIR.

A download goes to a temporary file beside its destination and is renamed into place only
when it is complete (Content-Length), matches the publisher's checksum or known size, and
passes the model family's own structural check. A partial or corrupt file is never used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

from contract import ModelUnavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WeightFile:
    model: str          # public model name: mobilenet, yolo, ...
    subdir: str         # classify | detect
    filename: str       # the official file name
    url: str
    md5: str | None = None            # Keras publishes md5 per file in its source
    sha256_prefix: str | None = None  # torchvision names carry a sha256 prefix
    size: int | None = None           # where no checksum is published

    def path(self, models_dir: Path) -> Path:
        return Path(models_dir) / self.subdir / self.filename

    @property
    def fetch_command(self) -> str:
        return f"python -m models.download {self.model}"

    def unreadable(self, exc: Exception) -> str:
        """The reason to report when the file is present but its architecture cannot load it."""
        return (f"the weights file {self.filename} in MODELS_DIR/{self.subdir} could not be "
                f"loaded ({type(exc).__name__}); it may be truncated or corrupt: delete it and "
                f"fetch it again with `{self.fetch_command}`")


@dataclasses.dataclass(frozen=True)
class PackagedFiles:
    """Weight files installed with a Python package from the registry (pinned in
    requirements.txt, so the install verifies them): nothing to download, nothing in MODELS_DIR.
    The package is found, never imported: its own __init__ may import what the service lacks."""
    model: str
    package: str                  # the import name whose folder holds the files
    subdir: str                   # the files' folder inside the package
    files: tuple[str, ...]
    requirement: str              # what pip installs: name==version

    @property
    def filename(self) -> str:
        return ", ".join(self.files)

    def paths(self) -> dict[str, Path]:
        """Each file's path; ModelUnavailable naming the package when it or a file is missing."""
        import importlib.util

        spec = importlib.util.find_spec(self.package)
        folder = Path(spec.submodule_search_locations[0]) / self.subdir if spec and spec.submodule_search_locations else None
        missing = [name for name in self.files if folder is None or not (folder / name).is_file()]
        if missing:
            raise ModelUnavailable(f"the weight files of model '{self.model}' ({', '.join(missing)}) come with the "
                                   f"Python package {self.requirement}, which is not installed: pip install "
                                   f"{self.requirement}")
        return {name: folder / name for name in self.files}


class WeightsUnavailable(ModelUnavailable):
    """The weight file is missing and could not be fetched; the reason says how to fix it."""


class WeightsCorrupt(Exception):
    """A downloaded file failed verification; it was deleted, never used."""


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def ensure_weights(spec: WeightFile, models_dir: Path, *, download: bool,
                   check: Callable[[Path], None] | None = None,
                   fetch: Callable[[str, Path], None] | None = None) -> Path:
    """Return the path of the verified weight file, downloading it first when allowed."""
    target = spec.path(models_dir)
    if target.is_file():
        return target
    help_text = (f"Weights file {spec.filename} for model '{spec.model}' is not in "
                 f"MODELS_DIR/{spec.subdir}. Fetch it with `{spec.fetch_command}` "
                 f"(from {spec.url}), or place the file there.")
    if not download:
        raise WeightsUnavailable(help_text + " MODEL_DOWNLOAD is false.")
    with _lock_for(target):
        if target.is_file():
            return target
        try:
            download_verified(spec, target, check=check, fetch=fetch)
        except WeightsCorrupt as exc:
            raise WeightsUnavailable(f"{help_text} The download failed verification: {exc}") from None
        except Exception as exc:  # network errors, full disk, ...
            log.warning("download of %s failed: %s", spec.url, type(exc).__name__)
            raise WeightsUnavailable(f"{help_text} The download failed ({type(exc).__name__}).") from None
    return target


def download_verified(spec: WeightFile, target: Path, *,
                      check: Callable[[Path], None] | None = None,
                      fetch: Callable[[str, Path], None] | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s from %s", spec.filename, spec.url)
        (fetch or http_fetch)(spec.url, tmp)
        verify(spec, tmp)
        if check is not None:
            try:
                check(tmp)
            except Exception as exc:
                raise WeightsCorrupt(f"the file does not load as {spec.model} weights "
                                     f"({type(exc).__name__})") from None
        os.replace(tmp, target)
        log.info("verified and saved %s", target)
    finally:
        tmp.unlink(missing_ok=True)


def verify(spec: WeightFile, path: Path) -> None:
    size = path.stat().st_size
    checks = [name for name, wanted in (("size", spec.size), ("md5", spec.md5), ("sha256", spec.sha256_prefix))
              if wanted]
    log.info("%s: %.1f MB received, checking %s", spec.filename, size / 1e6, ", ".join(checks) or "its loading")
    if spec.size is not None and size != spec.size:
        raise WeightsCorrupt(f"size {size} bytes, expected {spec.size}")
    if spec.md5 or spec.sha256_prefix:
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                md5.update(block)
                sha256.update(block)
        if spec.md5 and md5.hexdigest() != spec.md5:
            raise WeightsCorrupt(f"md5 {md5.hexdigest()}, expected {spec.md5}")
        if spec.sha256_prefix and not sha256.hexdigest().startswith(spec.sha256_prefix):
            raise WeightsCorrupt(f"sha256 does not start with {spec.sha256_prefix}")


def http_fetch(url: str, dest: Path, *, timeout: float = 30.0, progress_stream=None) -> None:
    """Stream `url` into `dest`, showing progress; a body shorter than its Content-Length is an error."""
    import requests  # imported here: the service itself only needs it to download

    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        expected = response.headers.get("Content-Length")
        total = int(expected) if expected is not None else None
        received = 0
        with open(dest, "wb") as out, Progress(url.rsplit("/", 1)[-1], total, progress_stream) as progress:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
        if total is not None and received != total:
            raise WeightsCorrupt(f"incomplete download: {received} of {expected} bytes")


class Progress:
    """A tqdm bar on a terminal; elsewhere (a container's log, CI) a log line per ~10 %."""

    def __init__(self, name: str, total: int | None, stream=None):
        import sys

        self.name, self.total, self.done, self._next_tenth = name, total, 0, 1
        stream = stream or sys.stderr
        self._bar = None
        if stream.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, file=stream)

    def __enter__(self):
        return self

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.total and self.done * 10 >= self._next_tenth * self.total:
            self._next_tenth = self.done * 10 // self.total + 1
            log.info("%s: %d %% (%.1f of %.1f MB)", self.name, 100 * self.done // self.total,
                     self.done / 1e6, self.total / 1e6)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
