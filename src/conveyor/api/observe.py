"""Every request: a request id (the caller's X-Request-ID, else a new one; echoed back), one
log line (method, route template, status, ms, workspace) and the request metrics.

Pure ASGI, outermost, so it also sees answers the body limit or an error handler gave. The
route *template* is logged and counted, never the path: paths carry tokens (tracking links,
confirmation links) and ids that would explode the metrics' label sets.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from typing import Any

from conveyor import telemetry
from conveyor.logs import request_id

log = logging.getLogger("conveyor.api")
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class Observe:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or _fresh_id()
        token = request_id.set(rid)
        status = 500  # unless a response starts
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            workspace = (scope.get("state") or {}).get("workspace_id")
            telemetry.HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            telemetry.HTTP_SECONDS.labels(template).observe(seconds)
            log.info(
                "%s %s %d %.1fms",
                scope["method"],
                template,
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "ms": round(seconds * 1000, 1),
                    "workspace_id": workspace,
                },
            )
            request_id.reset(token)


# Request ids: their own generator, seeded from the OS, again in a forked child, and by nobody
# else (a library seeding `random` for repeatable draws cannot make two requests share an id).
_IDS = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDS.seed)


def _fresh_id() -> str:
    """32 hex digits, as `uuid4().hex` but without its `os.urandom` system call (5 % of the
    server's CPU for single tracking calls, py-spy): an id to trace a request by, not a
    secret."""
    return f"{_IDS.getrandbits(128):032x}"


def _incoming_id(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # Only an id that is safe to log and echo; anything else gets a fresh one.
            return text if _ACCEPTABLE_ID.fullmatch(text) else None
    return None
