"""sha256 of the large files a start from the converted-model cache reads (the weights, for the
cache key; the cached network, against its manifest), remembered between starts.

Hashing YOLOv3's weights and its converted network was a quarter of a load from the cache
(docs/benchmarks.md in git history, at fec9c9d). A digest is remembered in
MODELS_DIR/.openvino/digests.json with the identity of the file it was computed from (device,
inode, size, and the modification and change times in nanoseconds) and reused only while that
identity is unchanged: any write or replacement of the file changes its change time, which no
user call can set back. As git does with its index, a file changed within RACY_SECONDS before
its hashing began is not remembered (file times are coarser than writes), so it is hashed again
next time.
Where MODELS_DIR is read-only, nothing is remembered and every start hashes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MEMO_NAME = "digests.json"
STAGING_PREFIX = ".digests-"   # the memo being written (a killed writer's is swept with the cache's)
RACY_SECONDS = 2.0


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _well_formed(entry) -> bool:
    """An entry as `_remember` writes it: anything else in the file is ignored."""
    return (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64
            and isinstance(entry.get("identity"), list) and len(entry["identity"]) == 5
            and all(type(v) is int for v in entry["identity"]))


class DigestMemo:
    """The digests remembered in `folder`/digests.json. Thread-safe; processes sharing the
    folder each merge their new digests into the file (the last writer's view of an entry
    wins; a lost entry only means one more hashing)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / MEMO_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, dict] | None = None

    def sha256(self, path: Path) -> str:
        """The file's sha256: remembered where its identity is the remembered one, else read
        (and remembered where it has not changed lately)."""
        path = Path(path)
        name = str(path.resolve())
        started = time.time_ns()   # "lately" is before the first look at the file, however long hashing takes
        before = _identity(path.stat())
        with self._lock:
            known = self._read().get(name)
        if known is not None and known["identity"] == before:
            return known["sha256"]
        digest = file_sha256(path)
        after = path.stat()
        settled = started - max(after.st_mtime_ns, after.st_ctime_ns) > RACY_SECONDS * 1e9
        if _identity(after) == before and settled:
            self._remember(name, {"identity": before, "sha256": digest})
        return digest

    def _read(self) -> dict[str, dict]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, dict]:
        try:
            entries = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.debug("digest memo unreadable (%s); starting afresh", type(exc).__name__)
            return {}
        if not isinstance(entries, dict):
            return {}
        return {name: entry for name, entry in entries.items() if _well_formed(entry)}

    def _remember(self, name: str, entry: dict) -> None:
        with self._lock:
            entries = {**self._load(), name: entry}   # what other processes wrote meanwhile
            entries = {k: v for k, v in entries.items() if os.path.exists(k)}
            self._entries = entries
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, staging = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=self.path.parent)
            except OSError as exc:   # a read-only MODELS_DIR: hash at every start
                log.debug("digest memo not written (%s)", type(exc).__name__)
                return
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entries, f)
                os.replace(staging, self.path)
            except OSError as exc:
                log.debug("digest memo not written (%s)", type(exc).__name__)
                Path(staging).unlink(missing_ok=True)


_memos: dict[Path, DigestMemo] = {}
_memos_lock = threading.Lock()


def memo(folder: Path) -> DigestMemo:
    """The process' one memo for `folder`."""
    folder = Path(folder)
    with _memos_lock:
        return _memos.setdefault(folder, DigestMemo(folder))
