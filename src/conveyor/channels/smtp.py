"""Email over SMTP (any provider): a small pool of reused connections, STARTTLS or implicit
TLS, AUTH, an optional rate limit, and SMTP replies sorted into retry-later and never-again.

A workspace's own SMTP server is reached through the address guard (`conveyor.channels.guard`):
never an internal address unless the operator allows it; the server's own (CONVEYOR_SMTP_URL) is
the operator's choice and connects directly. What a server answers reaches a tenant only as a
short status line (`short`): a port that is not SMTP must not leak its banner.

Replies: 2xx sent; 4xx transient (greylisting, mailbox busy, rate limits); 5xx permanent, and a
hard bounce when the server refused the recipient (550-553). A dropped connection, a refused
connection or a timeout is transient: the message waits in the outbox and goes later.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from conveyor.channels.base import DeliveryError, Email, Receipt, short
from conveyor.channels.guard import AddressGuard, connect
from conveyor.channels.ratelimit import Bucket, TokenBucket

SECURITY = ("starttls", "tls", "none")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls (implicit, port 465) | none (tests, local relays)
    username: str | None = None
    password: str | None = None
    max_connections: int = 4
    rate_per_second: float | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """`smtp://user:pass@host:587?security=starttls&max_connections=4&rate=10`."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("an SMTP URL looks like smtp://user:pass@host:587")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        security = query.get("security", "tls" if parts.scheme == "smtps" else "starttls")
        if security not in SECURITY:
            raise ValueError(f"security is one of {', '.join(SECURITY)}")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if security == "tls" else 587),
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            max_connections=int(query.get("max_connections", 4)),
            rate_per_second=float(query["rate"]) if "rate" in query else None,
        )


class SmtpProvider:
    def __init__(
        self,
        config: SmtpConfig,
        guard: AddressGuard | None = None,
        *,
        bucket: Bucket | None = None,
    ) -> None:
        self.config = config
        self.guard = guard  # set for a server a workspace chose
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(config.max_connections)
        # The rate: shared by every worker when the caller hands a bucket in, else this process's.
        if bucket is None and config.rate_per_second:
            bucket = TokenBucket(config.rate_per_second)
        self._bucket = bucket
        self._closed = False
        # After a failed connection, the rest of the round fails fast instead of each message
        # waiting out its own connect timeout; they are all retried with backoff anyway.
        self._down: str | None = None

    async def send(self, email: Email) -> Receipt:
        if self._closed:
            raise RuntimeError("this SMTP provider is closed")
        if self._bucket is not None:
            await self._bucket.take()
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                if client is None or not client.is_connected:
                    if self._down is not None:
                        raise DeliveryError(self._down, transient=True)
                    client = await self._connect()
                errors, reply = await client.sendmail(
                    email.sender, list(email.recipients), email.data
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._keep(client)
                raise _refused(exc.recipients[0] if exc.recipients else None) from None
            except aiosmtplib.SMTPResponseException as exc:
                # A reply to MAIL or DATA: the connection is still usable, the message is not.
                self._keep(client)
                raise DeliveryError(
                    f"SMTP {exc.code}: {short(exc.message)}",
                    transient=400 <= exc.code < 500,
                    detail={"code": exc.code},
                ) from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                await _quietly_close(client)
                raise DeliveryError(
                    f"SMTP server {self.config.host}:{self.config.port} unreachable: "
                    f"{short(str(exc)) or type(exc).__name__}",
                    transient=True,
                ) from None
            self._keep(client)
        if errors:  # some recipients refused, others took it (team notifications)
            detail = {rcpt: f"{r.code} {r.message}" for rcpt, r in errors.items()}
            return Receipt(email.message_id, {"reply": reply, "refused": detail})
        return Receipt(email.message_id, {"reply": reply})

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        where = (
            {"port": c.port}
            if self.guard is None
            else {"sock": await connect(self.guard, c.host, c.port, c.timeout)}
        )  # with a socket, TLS still verifies the certificate for `hostname`
        client = aiosmtplib.SMTP(
            hostname=c.host,
            **where,
            use_tls=c.security == "tls",
            start_tls=c.security == "starttls",
            username=c.username,
            password=c.password,
            timeout=c.timeout,
        )
        await client.connect()
        return client

    def _keep(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected and not self._closed:
            self._idle.append(client)

    def new_round(self) -> None:
        """A new delivery round tries the server again."""
        self._down = None

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            await _quietly_close(client)


def _refused(reply: aiosmtplib.SMTPRecipientRefused | None) -> DeliveryError:
    code = reply.code if reply is not None else 550
    text = f"SMTP {code}: {short(reply.message) if reply is not None else 'recipient refused'}"
    if 400 <= code < 500:
        return DeliveryError(text, transient=True, bounce="soft", detail={"code": code})
    return DeliveryError(text, transient=False, bounce="hard", detail={"code": code})


async def _quietly_close(client: aiosmtplib.SMTP | None) -> None:
    if client is None:
        return
    with contextlib.suppress(Exception):
        if client.is_connected:
            await client.quit()
    with contextlib.suppress(Exception):
        client.close()
