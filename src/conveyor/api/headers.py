"""Request header limits, answered 431 (RFC 6585) before the app sees the request.

uvicorn's default parser (httptools) takes any number of header fields of any size: a 1 MB
header and 10,000 headers were accepted, all held in memory. `http_protocol` is the parser
`conveyor serve` runs with: it counts a request's header bytes and fields as they are parsed
and refuses past the limits, so a request can make the server hold no more than about one
read (256 KB) beyond `max_bytes`. Without httptools, uvicorn's h11 parser is bounded instead
(`h11_max_incomplete_event_size`: header bytes only, answered 400).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is an optional speed-up of uvicorn
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


DRAIN_SECONDS = 2.0


class _TooLarge(Exception):
    """Raised inside a parser callback; httptools hands it back as the error's context."""


def refusal(detail: str) -> bytes:
    """The whole 431 response, problem+json, closing the connection."""
    body = orjson.dumps(
        {
            "type": "about:blank",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": detail,
        }
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def http_protocol(max_bytes: int, max_fields: int) -> Any:
    """uvicorn's `http` option: the httptools protocol with these limits, or "h11"."""
    if HttpToolsProtocol is None:
        return "h11"

    class LimitedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        _head_bytes = 0
        _fields = 0
        _in_head = False
        _refused = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes, self._fields, self._in_head = 0, 0, True

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._fields += 1
            if self._fields > max_fields:
                raise _TooLarge(f"a request has at most {max_fields} header fields")
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > max_bytes:
                raise _TooLarge(f"a request's URL and headers are at most {max_bytes} bytes")

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # the rest of a refused request, read and dropped (see _refuse)
            try:
                if self._in_head and self._head_bytes + len(data) > max_bytes + 262_144:
                    # One header still arriving: httptools buffers it whole before on_header.
                    raise _TooLarge(f"a request's URL and headers are at most {max_bytes} bytes")
                self._unset_keepalive_if_required()
                self.parser.feed_data(data)
            except _TooLarge as exc:
                self._refuse(str(exc))
            except httptools.HttpParserCallbackError as exc:
                if isinstance(exc.__context__, _TooLarge):
                    self._refuse(str(exc.__context__))
                else:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserError:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()

        def _refuse(self, detail: str) -> None:
            """Answer 431 and end the connection. Closing a socket with unread data sends a
            reset that can overtake the answer, so the client's writing side is drained
            (and dropped) for a moment while ours is shut after the answer."""
            self._in_head, self._refused = False, True
            if self.transport.is_closing():
                return
            self.transport.write(refusal(detail))
            if self.transport.can_write_eof():
                self.transport.write_eof()
                asyncio.get_running_loop().call_later(DRAIN_SECONDS, self.transport.close)
            else:
                self.transport.close()

    return LimitedHttpToolsProtocol


def uvicorn_options(max_bytes: int, max_fields: int) -> dict[str, Any]:
    """What `uvicorn.run` needs, on top of host and port, to enforce the limits."""
    protocol = http_protocol(max_bytes, max_fields)
    options: dict[str, Any] = {"http": protocol}
    if protocol == "h11":
        options["h11_max_incomplete_event_size"] = max_bytes
    return options


__all__ = ["http_protocol", "refusal", "uvicorn_options"]
