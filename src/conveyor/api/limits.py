"""Request body limits (413 past them), gzip request bodies as Segment's API accepts them, and
JSON text no database can store (a lone surrogate: 422 naming the field, for every route)."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import orjson

from conveyor.domain.errors import InvalidInput, PayloadTooLarge
from conveyor.domain.payloads import lone_surrogate

Scope = dict[str, Any]
# A surrogate spelled as a JSON escape, or as the bytes UTF-8 would give one (which Python's
# json reads with 'surrogatepass'). Only bodies with one are parsed here; a pair is fine.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class BodyLimit:
    """Buffers request bodies up to a per-path limit; decompresses `Content-Encoding: gzip`.
    Paths in `streamed` (a CSV import of up to 50 MB) are not buffered: the route reads the
    body as it comes, and reading past the limit raises PayloadTooLarge (413)."""

    def __init__(
        self,
        app: Any,
        default: int,
        per_path: dict[str, int] | None = None,
        streamed: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path or {}
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, f"the request body is over the limit of {limit} bytes")
            return
        if scope["path"] in self.streamed:
            gzipped = headers.get(b"content-encoding", b"").lower() == b"gzip"
            if gzipped:
                scope = {
                    **scope,
                    "headers": [
                        (k, v)
                        for k, v in scope["headers"]
                        if k not in (b"content-encoding", b"content-length")
                    ],
                }
            await self.app(scope, _counted(receive, limit, gzipped), send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, f"the request body is over the limit of {limit} bytes")
                return
            if not message.get("more_body", False):
                break
        data = bytes(body)
        if headers.get(b"content-encoding", b"").lower() == b"gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data = inflater.decompress(data, limit + 1)
            except zlib.error:
                await _reply(send, 400, "the body says Content-Encoding: gzip but is not gzip")
                return
            if len(data) > limit or inflater.unconsumed_tail:
                await _reply(send, 413, f"the decompressed body is over the limit of {limit} bytes")
                return
            scope = {
                **scope,
                "headers": [
                    (k, v)
                    for k, v in scope["headers"]
                    if k not in (b"content-encoding", b"content-length")
                ]
                + [(b"content-length", str(len(data)).encode())],
            }
        bad = _lone_surrogate(data)
        if bad is not None:
            await _reply(send, 422, "text with a lone UTF-16 surrogate cannot be stored", bad)
            return
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _counted(receive: Any, limit: int, gzipped: bool) -> Any:
    """`receive` for a streamed body: inflated when gzip, refused once past `limit` bytes."""
    seen = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None

    async def counted() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, limit - seen + 1)
            except zlib.error:
                raise InvalidInput("body", "says Content-Encoding: gzip but is not gzip") from None
            if inflater.unconsumed_tail:
                seen = limit  # more than fits: refused just below
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        return {**message, "body": chunk}

    return counted


def _lone_surrogate(data: bytes) -> str | None:
    """The field of a JSON body that holds a lone surrogate ("body" at the top), or None."""
    if not _SURROGATE.search(data):
        return None
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return None  # not JSON: the route says so
    path = lone_surrogate(parsed)
    return None if path is None else path or "body"


_KINDS = {
    400: ("about:blank", "Bad Request"),
    413: ("/problems/payload-too-large", "Payload too large"),
    422: ("/problems/invalid-input", "Invalid input"),
}


async def _reply(send: Any, status: int, detail: str, field: str | None = None) -> None:
    kind, title = _KINDS[status]
    problem: dict[str, Any] = {"type": kind, "title": title, "status": status, "detail": detail}
    if field is not None:
        problem["detail"] = f"{field}: {detail}"
        problem["field"] = field
        problem["errors"] = [{"field": field, "detail": detail}]
    body = orjson.dumps(problem)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
