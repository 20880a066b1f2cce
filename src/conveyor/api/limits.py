"""Request body limits (413 past them) and gzip request bodies, as Segment's API accepts them."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

Scope = dict[str, Any]


class BodyLimit:
    """Buffers request bodies up to a per-path limit; decompresses `Content-Encoding: gzip`."""

    def __init__(self, app: Any, default: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path or {}

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
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Any, status: int, detail: str) -> None:
    title = {400: "Bad Request", 413: "Payload too large"}[status]
    body = orjson.dumps(
        {
            "type": "/problems/payload-too-large" if status == 413 else "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
        }
    )
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
