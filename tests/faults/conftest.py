"""`s3_proxy`: a fault-injecting HTTP proxy in front of the S3 server, on 127.0.0.1.

Clients point their S3 endpoint at the proxy; it forwards every request to the
real server unless a fault applies: slow answers, every n-th request failing
with 503 SlowDown, objects denied with 403 AccessDenied, writes failing.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

ERROR = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'


@dataclass
class Faults:
    delay_s: float = 0.0  # added before every request is forwarded
    fail_every: int = 0  # every n-th request answers 503 SlowDown (0: none)
    deny: tuple[str, ...] = ()  # requests whose path contains one of these answer 403
    fail_writes: tuple[str, ...] = ()  # PUT/POST whose path contains one of these answer 503...
    fail_writes_for_s: float = float("inf")  # ...for this long after the first of them
    first_write: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "failed": 0, "denied": 0})


class FaultProxy:
    """`with FaultProxy(upstream) as proxy:` serves at `proxy.endpoint`; `proxy.faults` is live."""

    def __init__(self, upstream: str, faults: Faults | None = None):
        self.upstream = urlsplit(upstream)
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault(self, method: str, path: str) -> tuple[int, str, str] | None:
        faults = self.faults
        with self.lock:
            faults.counts["requests"] += 1
            number = faults.counts["requests"]
        if any(part in path for part in faults.deny):
            faults.counts["denied"] += 1
            return 403, "AccessDenied", "Access Denied"
        writing = method in ("PUT", "POST") and any(part in path for part in faults.fail_writes)
        if writing and faults.first_write is None:
            faults.first_write = time.monotonic()
        if (writing and time.monotonic() < faults.first_write + faults.fail_writes_for_s) or (
                faults.fail_every and number % faults.fail_every == 0):
            faults.counts["failed"] += 1
            return 503, "SlowDown", "Please reduce your request rate."
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(proxy.faults.delay_s)
                fault = proxy._fault(self.command, self.path)
                if fault:
                    status, code, message = fault
                    payload = ERROR.format(code=code, message=message).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                                      timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                dropped = ("transfer-encoding", "connection")
                if self.command != "HEAD":  # a HEAD answer keeps the object's length
                    dropped += ("content-length",)
                for name, value in response.getheaders():
                    if name.lower() not in dropped:
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler


@pytest.fixture
def s3_proxy(s3_endpoint):
    """A `FaultProxy` in front of the session's S3 server, no faults yet: set `s3_proxy.faults`."""
    with FaultProxy(s3_endpoint) as proxy:
        yield proxy
