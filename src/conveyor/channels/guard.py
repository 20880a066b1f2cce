"""Outbound connections a workspace controls never reach an internal address.

Workspaces choose webhook URLs, their SMTP server and their SMS API base URL, so an address must
not reach what only Conveyor's own machine can: private, loopback, link-local (169.254.169.254 is
the cloud metadata service), unique-local, shared (CGNAT, 100.64/10), multicast, reserved and
unspecified addresses, IPv4 or IPv6, and IPv4 carried inside IPv6 (::ffff:a.b.c.d, 6to4, Teredo,
NAT64) are refused, before any connection, unless the operator's allow-list
(`CONVEYOR_WEBHOOK_ALLOW`) names them. A name that resolves to several addresses is refused if
any one of them is: a mixed answer is an attack or a mistake, either way worth a clear error.

The address checked is the address connected (no DNS rebinding): callers resolve once through
`AddressGuard.resolve` and connect to the checked IP literal — the HTTP transport in
`conveyor.channels.pinned` at connect time, SMTP through `AddressGuard.connect`, which hands
aiosmtplib a connected socket (TLS still verifies the server's name).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator

from conveyor.channels.base import DeliveryError

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


class AddressGuard:
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
            addresses = await lookup(host, port)
        if host.lower().rstrip(".") not in self._hosts:
            for address in addresses:
                kind = refusal(address)
                if kind is not None and not self._allowed(address):
                    shown = host if host == str(address) else f"{host} ({address})"
                    raise DeliveryError(
                        f"refused to connect to {shown}: {kind} address; "
                        "add it to the allow-list (CONVEYOR_WEBHOOK_ALLOW) to permit it",
                        transient=False,
                        detail={"address": str(address), "refused": kind},
                    )
        return [str(address) for address in addresses]


async def lookup(host: str, port: int) -> list[Address]:
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


async def connect(guard: AddressGuard, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket connected to a checked address of `host` (the first that answers)."""
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for address in await guard.resolve(host, port):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (address, port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            failure = exc if isinstance(exc, OSError) else OSError(f"timed out after {timeout:g} s")
            continue
        return sock
    assert failure is not None  # resolve() returns at least one address or raises
    raise failure
