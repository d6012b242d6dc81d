"""Verified downloads: a partial, corrupt or unloadable file never lands in MODELS_DIR."""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from models.builtins import CATALOG
from models.weights import WeightFile, WeightsUnavailable, ensure_weights

PAYLOAD = b"weights" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAYLOAD
        if self.path == "/short":  # announces more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 2))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def spec(url, **checks):
    return WeightFile("mobilenet", "classify", "w.h5", url, **checks)


def leftovers(directory):
    return sorted(p.name for p in (directory / "classify").glob("*")) if (directory / "classify").exists() else []


def test_download_with_matching_md5_is_kept(server, tmp_path):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = ensure_weights(spec(server + "/ok", md5=md5), tmp_path, download=True)
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["w.h5"]


def test_sha256_prefix_and_size_are_checked(server, tmp_path):
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    assert ensure_weights(spec(server + "/ok", sha256_prefix=prefix), tmp_path / "a", download=True).is_file()
    assert ensure_weights(spec(server + "/ok", size=len(PAYLOAD)), tmp_path / "b", download=True).is_file()
    with pytest.raises(WeightsUnavailable, match="verification"):
        ensure_weights(spec(server + "/ok", sha256_prefix="00000000"), tmp_path / "c", download=True)
    with pytest.raises(WeightsUnavailable, match="verification"):
        ensure_weights(spec(server + "/ok", size=len(PAYLOAD) + 1), tmp_path / "d", download=True)
    assert leftovers(tmp_path / "c") == [] and leftovers(tmp_path / "d") == []


def test_wrong_checksum_is_never_used(server, tmp_path):
    with pytest.raises(WeightsUnavailable) as info:
        ensure_weights(spec(server + "/ok", md5="0" * 32), tmp_path, download=True)
    assert "python -m models.download mobilenet" in str(info.value)
    assert leftovers(tmp_path) == []


def test_partial_download_is_never_used(server, tmp_path):
    with pytest.raises(WeightsUnavailable):
        ensure_weights(spec(server + "/short"), tmp_path, download=True)
    assert leftovers(tmp_path) == []


def test_http_error_names_file_url_and_command(server, tmp_path):
    with pytest.raises(WeightsUnavailable) as info:
        ensure_weights(spec(server + "/missing"), tmp_path, download=True)
    message = str(info.value)
    assert "w.h5" in message and server + "/missing" in message and "python -m models.download" in message
    assert leftovers(tmp_path) == []


def test_file_that_does_not_load_is_not_kept(server, tmp_path):
    def check(path):
        raise ValueError("not an HDF5 file")
    with pytest.raises(WeightsUnavailable, match="does not load"):
        ensure_weights(spec(server + "/ok"), tmp_path, download=True, check=check)
    assert leftovers(tmp_path) == []


def test_no_download_when_disabled(tmp_path):
    with pytest.raises(WeightsUnavailable, match="MODEL_DOWNLOAD is false"):
        ensure_weights(CATALOG["resnet"], tmp_path, download=False)


def test_catalog_uses_the_official_names_and_publisher_checksums():
    assert CATALOG["mobilenet"].filename == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    assert CATALOG["resnet"].md5 == "2cb95161c43110f7111970584f804107"
    assert CATALOG["retina"].filename.endswith("-eeacb38b.pth") and CATALOG["retina"].sha256_prefix == "eeacb38b"
    assert CATALOG["yolo"].url.endswith("/3.0.0-pretrained/yolov3.pt")
    for weights in CATALOG.values():
        assert weights.url.startswith("https://")


def test_download_command_rejects_unknown_names():
    import subprocess
    import sys
    from pathlib import Path
    result = subprocess.run([sys.executable, "-m", "models.download", "vgg"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert result.returncode == 2
    assert "unknown model(s) vgg" in result.stderr and "tiny_yolo" in result.stderr


def test_download_command_keeps_present_files(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    target = CATALOG["tiny_yolo"].path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"already here")
    result = subprocess.run([sys.executable, "-m", "models.download", "tiny_yolo"],
                            capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent, env={"MODELS_DIR": str(tmp_path), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout and target.read_bytes() == b"already here"


def test_download_logs_progress_and_the_checksum_step(server, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="models.weights")
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    ensure_weights(spec(server + "/ok", md5=md5), tmp_path, download=True)
    lines = [r.getMessage() for r in caplog.records]
    # Off a terminal: the body arrives in one chunk, so one progress line, at 100 %.
    assert [line for line in lines if " %" in line] == ["ok: 100 % (0.0 of 0.0 MB)"]
    assert "w.h5: 0.0 MB received, checking md5" in lines


def test_download_progress_bar_on_a_terminal(tmp_path):
    import io

    from models.weights import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with Progress("big.h5", 10_000_000, screen) as progress:
        for _ in range(10):
            progress.update(1_000_000)
    assert "big.h5" in screen.getvalue() and "100%" in screen.getvalue()


def test_progress_lines_at_each_tenth(caplog):
    import io
    import logging

    from models.weights import Progress

    caplog.set_level(logging.INFO, logger="models.weights")
    with Progress("big.h5", 1000, io.StringIO()) as progress:
        for _ in range(100):
            progress.update(10)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == [str(p) for p in range(10, 101, 10)]
