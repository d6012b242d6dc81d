"""A local image server on 127.0.0.1 for the URL tests: the only host they ever connect to."""
from __future__ import annotations

import http.server
import threading
import time
import urllib.parse

from tests.support import imaging

JPEG = imaging.jpeg(size=(64, 48), color=(20, 200, 20))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", content_type="image/jpeg", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        type(self).hits[url.path] = type(self).hits.get(url.path, 0) + 1
        if url.path == "/cat.jpg":
            self._send(200, JPEG)
        elif url.path == "/redirect":
            self._send(302, b"", headers={"Location": query["to"]})
        elif url.path.startswith("/chain/"):
            n = int(url.path.rsplit("/", 1)[1])
            self._send(302, b"", headers={"Location": f"/chain/{n - 1}" if n > 0 else "/cat.jpg"})
        elif url.path == "/missing":
            self._send(404, b"remote-secret-body", "text/plain")
        elif url.path == "/error":
            self._send(500, b"remote-secret-body", "text/plain")
        elif url.path == "/page.html":
            self._send(200, b"<html>remote-secret-body</html>", "text/html")
        elif url.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
        elif url.path == "/endless":
            self.send_response(200)
            self.end_headers()  # no length: read until the cap
            try:
                chunk = b"\0" * 65536
                for _ in range(2000):
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif url.path == "/huge":  # announces 500 MB
            self.send_response(200)
            self.send_header("Content-Length", str(500 * 1024 * 1024))
            self.end_headers()
        else:
            self._send(404, b"", "text/plain")


class ImageServer:
    def __enter__(self):
        _Handler.hits = {}
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def hits(self) -> dict[str, int]:
        return _Handler.hits

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
