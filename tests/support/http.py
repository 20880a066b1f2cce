"""A local HTTP peer for tests (a CRM, a Twilio-shaped API): records every request, answers a
set status, and can go down and come back on the same port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.smtp import free_port


class Peer:
    """A local HTTP server that records requests; it can be stopped and started on its port."""

    def __init__(self, answer=(200, b"{}")) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.answer = answer
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Peer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                peer.requests.append((self.path, dict(self.headers), body))
                status, payload = peer.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        # Polled every 10 ms, not 0.5 s: stop() (shutdown) waits for the next poll.
        serve = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
