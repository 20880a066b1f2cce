"""The webhook provider: one HTTP(S) request per `WebhookCall`, never to an internal address.

Workspaces choose webhook URLs, so a URL must not reach what only Conveyor's own machine can:
private, loopback, link-local (169.254.169.254 is the cloud metadata service), unique-local,
shared (CGNAT, 100.64/10), multicast, reserved and unspecified addresses, IPv4 or IPv6, and IPv4
carried inside IPv6 (::ffff:a.b.c.d, 6to4, Teredo, NAT64) are refused, before any connection,
unless the `allow` list names them. A name that resolves to several addresses is refused if any
one of them is: a mixed answer is an attack or a mistake, either way worth a clear error.

How the address checked is the address connected (no DNS rebinding): the check lives in the
network backend under httpx's connection pool. Each time the pool opens a connection, the backend
resolves the host once (asyncio `getaddrinfo`), checks every address, and connects to a checked
IP literal; TLS then still sends SNI and verifies the certificate for the URL's hostname, and the
request keeps its own `Host` header. The alternative, an IP in the URL plus the `Host` header and
`extensions={"sni_hostname": host}`, verifies the certificate for the hostname too (tried), but
httpx pools connections by the URL's origin, so a later call to another hostname on the same IP
reuses the connection verified for the first (tried: a request with SNI `evil.example` rode on a
`localhost`-verified connection). Pooling by hostname, checking at connect time, has no such
gap. Proxies from the environment are ignored (`trust_env=False`): a proxy would resolve names.

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
import ipaddress
import math
import re
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
import httpx

from conveyor.channels.base import DeliveryError, Receipt, WebhookCall
from conveyor.clock import Clock, SystemClock

USER_AGENT = "Conveyor-Webhooks/1.0"
RESPONSE_CHARS = 500  # how much of an answer's body is kept in `detail`
_READ_LIMIT = 64 * 1024  # read at most this much of a body; past it the connection is dropped

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


def refusal(address: Address) -> str | None:
    """What kind of internal address `address` is ("loopback", "private", …), or None when it
    is a public one a webhook may reach."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            kind = refusal(embedded)
            if kind is not None:
                return f"{kind} IPv4 {embedded} inside IPv6"
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _SHARED, "shared (CGNAT)"),
        (address in _UNIQUE_LOCAL, "unique-local"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    ]
    return next((kind for hit, kind in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> Iterator[ipaddress.IPv4Address]:
    if address.ipv4_mapped is not None:
        yield address.ipv4_mapped
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield from address.teredo
    if address in _NAT64:
        yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


class _Guard:
    """Resolves a host and lets through only addresses that are public or allowed."""

    def __init__(self, allow: Iterable[str]) -> None:
        self._networks: list[Network] = []
        self._hosts: set[str] = set()
        for entry in allow:
            try:
                self._networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                host = entry.strip().lower().rstrip(".")
                if not _HOSTNAME.fullmatch(host):
                    raise ValueError(
                        f"allow: {entry!r} is not an IP address, a CIDR or a host name"
                    ) from None
                self._hosts.add(host)

    def _allowed(self, address: Address) -> bool:
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in network for a in candidates for network in self._networks)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` to connect to, all checked; raises DeliveryError when one of
        them is refused or the name does not resolve."""
        try:
            addresses: list[Address] = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await _lookup(host, port)
        if host.lower().rstrip(".") not in self._hosts:
            for address in addresses:
                kind = refusal(address)
                if kind is not None and not self._allowed(address):
                    shown = host if host == str(address) else f"{host} ({address})"
                    raise DeliveryError(
                        f"refused to connect to {shown}: {kind} address; "
                        "add it to the webhook allow-list to permit it",
                        transient=False,
                        detail={"address": str(address), "refused": kind},
                    )
        return [str(address) for address in addresses]


async def _lookup(host: str, port: int) -> list[Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        unknown = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
        raise DeliveryError(
            f"cannot resolve {host}: {exc.strerror}", transient=not unknown
        ) from exc
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the guard checked, resolving each name once."""

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self._guard.resolve(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve() returns at least one address or raises
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's (the same names), as httpx's own transport does."""
    try:
        yield
    except httpcore.UnsupportedProtocol as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except (
        httpcore.TimeoutException,
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.ProxyError,
    ) as exc:
        mapped = getattr(httpx, type(exc).__name__, httpx.TransportError)
        raise mapped(str(exc)) from exc


class _Stream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _PinnedTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, less proxies, over the pinning network backend. (httpx's own
    `AsyncHTTPTransport` cannot be handed a network backend.)"""

    def __init__(self, guard: _Guard, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,  # WebhookSender bounds calls per host
            max_keepalive_connections=100,
            keepalive_expiry=5.0,
            network_backend=_PinnedBackend(guard),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


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
        transport = _PinnedTransport(
            _Guard(allow), ssl_context or httpx.create_ssl_context(trust_env=False)
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
        url = _checked_url(call.url)
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


def _checked_url(raw: str) -> httpx.URL:
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
