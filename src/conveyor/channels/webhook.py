"""The webhook provider: one HTTP(S) request per `WebhookCall`, never to an internal address.

Workspaces choose webhook URLs, so a URL must not reach an internal address: the check and the
pinning are `conveyor.channels.guard` and `conveyor.channels.pinned`, shared with every other
connection a workspace setting controls. Checking at connect time, under httpx's pool, matters:
the alternative, an IP in the URL plus the `Host` header and `extensions={"sni_hostname": host}`,
verifies the certificate for the hostname too (tried), but httpx pools connections by the URL's
origin, so a later call to another hostname on the same IP reuses the connection verified for the
first (tried: a request with SNI `evil.example` rode on a `localhost`-verified connection).
Proxies from the environment are ignored (`trust_env=False`): a proxy would resolve names.

Outcomes: 2xx → Receipt; 408, 429, 5xx, timeouts, connection and DNS-lookup failures → transient
DeliveryError (with `retry_after` seconds when the answer has Retry-After); other 4xx, 3xx
(redirects are not followed), refused addresses, unknown hosts and bad URLs → permanent.
`detail` always holds `status` (None without an answer) and `ms`.

Signing is the caller's: it puts the `Conveyor-Signature` header
(`conveyor.domain.signatures.sign`) into the call's headers; this module sends what it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from conveyor.channels.base import DeliveryError, Receipt, WebhookCall
from conveyor.channels.guard import AddressGuard
from conveyor.clock import Clock, SystemClock

if TYPE_CHECKING:
    # Imported by the methods that send (httpx brings httpcore, h11, rich and pygments): a
    # process that never sends a webhook, like every `conveyor` command, does without.
    import httpx

USER_AGENT = "Conveyor-Webhooks/1.0"
RESPONSE_CHARS = 500  # how much of an answer's body is kept in `detail`
_READ_LIMIT = 64 * 1024  # read at most this much of a body; past it the connection is dropped


@dataclass
class _Slot:
    semaphore: asyncio.Semaphore
    users: int = 0


class _HostSlots:
    """At most `limit` calls in flight per host; a host's entry goes when its last call ends."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, _Slot] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = _Slot(asyncio.Semaphore(self._limit))
        slot.users += 1
        try:
            async with slot.semaphore:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[host]


class WebhookSender:
    """Sends webhook calls through one pooled httpx client; `close()` when done.

    `allow` lists IP addresses, CIDRs (`"10.1.0.0/16"`) and host names that may be reached even
    though internal; a host name entry trusts whatever that name resolves to. `ssl_context`
    replaces the default certificate store (e.g. a private CA); verification cannot be turned off.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str] = (),
        timeout: float = 10.0,
        max_connections: int = 20,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._slots = _HostSlots(max_connections)
        import httpx

        from conveyor.channels.pinned import PinnedTransport

        transport = PinnedTransport(
            AddressGuard(allow), ssl_context or httpx.create_ssl_context(trust_env=False)
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        )
        self._closed = False

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def send(self, call: WebhookCall) -> Receipt:
        if self._closed:
            raise RuntimeError("this WebhookSender is closed")
        import httpx

        url = _checked_url(call.url)
        _check_headers(call.headers)
        headers = httpx.Headers({"User-Agent": USER_AGENT})
        headers.update(call.headers)
        headers["Idempotency-Key"] = call.idempotency_key
        async with self._slots.hold(url.host):
            started = time.perf_counter()

            def ms() -> int:
                return round((time.perf_counter() - started) * 1000)

            try:
                async with (
                    asyncio.timeout(self._timeout),
                    self._client.stream(
                        call.method, url, headers=headers, content=call.body
                    ) as response,
                ):
                    head = await _read_head(response)
            except DeliveryError as exc:  # refused or unresolvable, before any connection
                exc.detail.update(status=None, ms=ms())
                raise
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise DeliveryError(
                    f"no answer from {url.host} within {self._timeout:g} s",
                    transient=True,
                    detail={"status": None, "ms": ms()},
                ) from exc
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                raise DeliveryError(
                    f"cannot send this request: {exc}",
                    transient=False,
                    detail={"status": None, "ms": ms()},
                ) from exc
            except httpx.TransportError as exc:
                raise DeliveryError(
                    f"connection to {url.host} failed: {str(exc) or type(exc).__name__}",
                    transient=True,
                    detail={"status": None, "ms": ms()},
                ) from exc
            elapsed = ms()
        return self._outcome(url, response, head, elapsed)

    def _outcome(self, url: httpx.URL, response: httpx.Response, head: bytes, ms: int) -> Receipt:
        status = response.status_code
        encoding = response.encoding or "utf-8"
        text = head.decode(encoding, errors="replace")[:RESPONSE_CHARS]
        detail: dict[str, object] = {"status": status, "ms": ms, "response": text}
        if 200 <= status < 300:
            return Receipt(provider_id=None, detail=detail)
        if 300 <= status < 400:
            location = response.headers.get("Location")
            detail["location"] = location
            where = f" to {location}" if location else ""
            raise DeliveryError(
                f"HTTP {status} from {url.host}: redirect{where} not followed",
                transient=False,
                detail=detail,
            )
        transient = status in (408, 429) or status >= 500
        if transient:
            retry_after = _retry_after(response.headers, self._clock)
            if retry_after is not None:
                detail["retry_after"] = retry_after
        raise DeliveryError(f"HTTP {status} from {url.host}", transient=transient, detail=detail)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names


def _check_headers(headers: dict[str, str]) -> None:
    """Headers HTTP can carry (rendered from contact data, they may hold anything): visible
    ASCII, spaces and tabs. Anything else will not change on a retry: a permanent failure."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise DeliveryError(
                f"header name {name!r} is not a valid HTTP header name", transient=False
            )
        bad = next((ch for ch in value if not (" " <= ch <= "~" or ch == "\t")), None)
        if bad is not None:
            raise DeliveryError(
                f"header {name}: character U+{ord(bad):04X} cannot be sent in an HTTP header",
                transient=False,
            )


def _checked_url(raw: str) -> httpx.URL:
    import httpx

    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise DeliveryError(f"invalid webhook URL {raw!r}: {exc}", transient=False) from exc
    if url.scheme not in ("http", "https"):
        raise DeliveryError(
            f"webhook URL {raw!r}: scheme {url.scheme!r} not allowed, only http and https",
            transient=False,
        )
    if not url.host:
        raise DeliveryError(f"webhook URL {raw!r} has no host", transient=False)
    return url


async def _read_head(response: httpx.Response) -> bytes:
    """The start of the body, enough for RESPONSE_CHARS characters; reading the rest (up to a
    limit) lets the connection be reused, a longer body is cut off."""
    head = bytearray()
    read = 0
    async for chunk in response.aiter_bytes():
        if len(head) < RESPONSE_CHARS * 4:
            head += chunk[: RESPONSE_CHARS * 4 - len(head)]
        read += len(chunk)
        if read > _READ_LIMIT:
            break
    return bytes(head)


def _retry_after(headers: httpx.Headers, clock: Clock) -> int | None:
    """Retry-After in seconds: given as such, or as a date, taken relative to the answer's own
    Date header when there is one (the server's clock, not ours)."""
    value = headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit():
        return int(value)
    when = _http_date(value)
    if when is None:
        return None
    now = _http_date(headers.get("Date", "")) or clock.now()
    return max(0, math.ceil((when - now).total_seconds()))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
