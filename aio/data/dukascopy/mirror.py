"""A loopback mirror of the datafeed: serve a local folder laid out like the feed.

    python -m aio.data.dukascopy.mirror FOLDER [--port 8000] [--json-dir DIR]
    python -m aio task=download data=dukascopy data.base_url=http://127.0.0.1:8000/datafeed

``/datafeed/{path}`` serves ``FOLDER/{path}`` (404 when absent, as the feed does for
hours without ticks). With ``--json-dir``, ``/v1/ticks/{CODE}/{Y}/{M}/{D}/{H}`` serves
``ticks-{CODE}-{Y}-{M}-{D}-{H}.json`` from it (dukascopy-node's fixture naming), a
stand-in for the JSON API. It binds 127.0.0.1 only.

For tests and drills it can inject faults: :meth:`Mirror.inject` queues faults per
path (or ``"*"`` for any path); each request consumes at most one. Faults:
``503``, ``500``, ``429`` (with ``Retry-After``), ``403``, ``timeout`` (hold the request
without answering, then drop it), ``truncate`` (announce the full length, send half,
close), ``short`` (a complete response whose body is a cut-off file), ``garbage``
(random bytes with status 200), ``reset`` (half the body, then a TCP reset), ``404``
(not found although the file exists) and ``empty`` (status 200, 0 bytes): the two
ways a real hole in the feed looks.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS = ("503", "500", "429", "403", "timeout", "truncate", "short", "garbage", "reset", "404", "empty")
_JSON_TICKS = re.compile(r"^/v1/ticks/([^/]+)/(\d+)/(\d+)/(\d+)/(\d+)$")


@dataclass
class Mirror:
    """A running mirror; use as a context manager (``with Mirror(root) as m: m.base_url``)."""

    root: Path | None = None
    json_dir: Path | None = None
    port: int = 0
    retry_after: str = "0"
    hold_s: float = 1.0  # how long a "timeout" fault holds the request (keep above the client timeout)
    delay_s: float = 0.0  # added to every answer (to let a test kill a client mid-run)
    log: list[tuple[str, str, float]] = field(default_factory=list)  # (path, outcome, monotonic time)
    _faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else None
        self.json_dir = Path(self.json_dir) if self.json_dir is not None else None

    # -- control --------------------------------------------------------------------
    def inject(self, path: str, *faults: str) -> None:
        """Queue faults for ``path`` (relative to /datafeed/, or a /v1/... path, or "*")."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; choose from {', '.join(FAULTS)}")
        with self._lock:
            self._faults[path].extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.log.clear()

    def _next_fault(self, key: str) -> str | None:
        with self._lock:
            for k in (key, "*"):
                q = self._faults.get(k)
                if q:
                    return q.popleft()
        return None

    def requests(self, outcome: str | None = None) -> list[str]:
        with self._lock:
            return [p for p, o, _ in self.log if outcome is None or o == outcome]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/datafeed"

    @property
    def json_api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "Mirror":
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="dukascopy-mirror", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "Mirror":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- content --------------------------------------------------------------------
    def resolve(self, url_path: str) -> tuple[str, Path | None]:
        """(fault key, file) for a request path; file None = 404."""
        if url_path.startswith("/datafeed/") and self.root is not None:
            rel = url_path[len("/datafeed/"):]
            if ".." in rel.split("/"):
                return rel, None
            p = self.root / rel
            return rel, p if p.is_file() else None
        m = _JSON_TICKS.match(url_path)
        if m and self.json_dir is not None:
            p = self.json_dir / f"ticks-{m.group(1)}-{m.group(2)}-{m.group(3)}-{m.group(4)}-{m.group(5)}.json"
            return url_path, p if p.is_file() else None
        return url_path, None


def _make_handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args) -> None:  # keep test output clean
            pass

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without NODELAY, Nagle plus
            # delayed ACKs add ~40 ms to every keep-alive response
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, ctype: str = "application/octet-stream", extra: dict | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if mirror.delay_s:
                time.sleep(mirror.delay_s)
            path = self.path.split("?", 1)[0]
            key, file = mirror.resolve(path)
            fault = mirror._next_fault(key)
            with mirror._lock:
                mirror.log.append((key, fault or ("200" if file else "404"), time.monotonic()))
            body = file.read_bytes() if file is not None else b""
            ctype = "application/json" if path.startswith("/v1/") else "application/octet-stream"
            if fault is None:
                if file is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, body, ctype)
                return
            if fault in ("503", "500", "403"):
                self._send(int(fault), b"refused", "text/plain")
            elif fault == "404":
                self._send(404, b"not found", "text/plain")
            elif fault == "empty":
                self._send(200, b"", ctype)
            elif fault == "429":
                self._send(429, b"slow down", "text/plain", {"Retry-After": mirror.retry_after})
            elif fault == "timeout":
                time.sleep(mirror.hold_s)
                self.close_connection = True
            elif fault == "garbage":
                self._send(200, os.urandom(max(len(body), 64)), ctype)
            elif fault == "short":
                self._send(200, body[: len(body) // 2], ctype)
            elif fault == "truncate":
                self._send(200, body[: len(body) // 2], ctype, length=len(body))
                self.close_connection = True
            elif fault == "reset":
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                # SO_LINGER 0: close() sends RST instead of FIN, a reset mid-body
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

    return Handler


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder laid out like the feed: {SYM}/{YYYY}/{MM0}/{DD}/{HH}h_ticks.bi5")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--json-dir", type=Path, default=None)
    args = ap.parse_args()
    m = Mirror(root=args.root, json_dir=args.json_dir, port=args.port).start()
    print(f"serving {args.root} at {m.base_url} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        m.stop()


if __name__ == "__main__":
    _main()
