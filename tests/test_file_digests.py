"""The digest memo: a file's sha256 is reused only while the file is the one it was computed
from, never for a file written moments ago, and a memo that cannot be read or written costs
only a hashing."""
from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from runtimes import file_digests
from runtimes.file_digests import DigestMemo


@pytest.fixture
def hashed(monkeypatch):
    """The files actually read to hash them, in order."""
    reads = []
    real = file_digests.file_sha256
    monkeypatch.setattr(file_digests, "file_sha256", lambda path: reads.append(path.name) or real(path))
    return reads


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_settled_file_is_hashed_once_across_memos(tmp_path, hashed, monkeypatch):
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"w" * 5000)
    assert DigestMemo(tmp_path / ".openvino").sha256(weights) == sha256(b"w" * 5000)
    assert DigestMemo(tmp_path / ".openvino").sha256(weights) == sha256(b"w" * 5000)   # a new process
    assert hashed == ["weights.pt"]
    recorded = json.loads((tmp_path / ".openvino" / file_digests.MEMO_NAME).read_text())
    assert list(recorded) == [str(weights.resolve())]


def test_a_rewritten_or_replaced_file_is_hashed_again(tmp_path, hashed, monkeypatch):
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    memo, weights = DigestMemo(tmp_path / ".openvino"), tmp_path / "weights.pt"
    weights.write_bytes(b"a" * 5000)
    memo.sha256(weights)
    stat = weights.stat()
    time.sleep(0.05)   # file times tick in milliseconds, not nanoseconds
    weights.write_bytes(b"b" * 5000)   # same size; the old times put back (only the change time moves)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert memo.sha256(weights) == sha256(b"b" * 5000)
    time.sleep(0.05)
    other = tmp_path / "other.pt"
    other.write_bytes(b"c" * 5000)
    os.replace(other, weights)
    assert memo.sha256(weights) == sha256(b"c" * 5000)
    assert hashed == ["weights.pt"] * 3


def test_lately_means_before_the_hashing_began(tmp_path, hashed, monkeypatch):
    """A file changed just before a slow hashing began is not remembered, however long the
    hashing took: it could still be written again within the same file-time tick."""
    memo, weights = DigestMemo(tmp_path / ".openvino"), tmp_path / "weights.pt"
    weights.write_bytes(b"w" * 100)
    real = file_digests.file_sha256

    def slow(path):
        time.sleep(0.3)   # hashing that outlasts RACY_SECONDS
        return real(path)

    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.2)
    monkeypatch.setattr(file_digests, "file_sha256", slow)
    memo.sha256(weights)
    assert not (tmp_path / ".openvino" / file_digests.MEMO_NAME).exists()


def test_a_file_changed_moments_ago_is_not_remembered(tmp_path, hashed):
    """File times are coarser than writes: a file written within RACY_SECONDS could be written
    again with the same times, so its digest is not kept."""
    memo, weights = DigestMemo(tmp_path / ".openvino"), tmp_path / "weights.pt"
    weights.write_bytes(b"w" * 100)
    memo.sha256(weights)
    memo.sha256(weights)
    assert hashed == ["weights.pt", "weights.pt"]
    assert not (tmp_path / ".openvino" / file_digests.MEMO_NAME).exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": 3}', "ENTRY_WITHOUT_DIGEST", "ENTRY_WITH_A_NUMBER"])
def test_a_damaged_memo_is_ignored(tmp_path, hashed, monkeypatch, content):
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    (tmp_path / ".openvino").mkdir()
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"w" * 100)
    st = weights.stat()
    identity = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]   # the file's own
    content = {"ENTRY_WITHOUT_DIGEST": json.dumps({str(weights.resolve()): {"identity": identity}}),
               "ENTRY_WITH_A_NUMBER": json.dumps({str(weights.resolve()): {"identity": identity, "sha256": 7}}),
               }.get(content, content)
    (tmp_path / ".openvino" / file_digests.MEMO_NAME).write_text(content)
    assert DigestMemo(tmp_path / ".openvino").sha256(weights) == sha256(b"w" * 100)
    assert DigestMemo(tmp_path / ".openvino").sha256(weights) == sha256(b"w" * 100)
    assert hashed == ["weights.pt"]


def test_a_memo_that_cannot_be_written_costs_only_a_hashing(tmp_path, hashed, monkeypatch):
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    (tmp_path / "not-a-folder").write_text("")   # where the memo's folder would be: a file
    memo, weights = DigestMemo(tmp_path / "not-a-folder" / ".openvino"), tmp_path / "weights.pt"
    weights.write_bytes(b"w" * 100)
    assert memo.sha256(weights) == memo.sha256(weights) == sha256(b"w" * 100)
    assert hashed == ["weights.pt"]   # this process still remembers it


def test_entries_of_files_that_are_gone_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    memo = DigestMemo(tmp_path / ".openvino")
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"1")
    second.write_bytes(b"2")
    memo.sha256(first)
    first.unlink()
    memo.sha256(second)
    recorded = json.loads((tmp_path / ".openvino" / file_digests.MEMO_NAME).read_text())
    assert list(recorded) == [str(second.resolve())]
