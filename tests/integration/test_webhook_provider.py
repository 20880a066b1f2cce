"""The webhook provider against a real HTTP(S) receiver on 127.0.0.1: outcomes, headers,
signatures, pooling, and internal addresses refused before any connection is attempted."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.channels.base import DeliveryError, Receipt, WebhookCall
from conveyor.channels.webhook import USER_AGENT, WebhookSender
from conveyor.domain.signatures import SIGNATURE_HEADER, sign, verify
from tests.integration.conftest import LiveServer

SECRET = b"whsec_receiver"
LOOPBACK = ["127.0.0.0/8", "::1"]

# Every socket.connect() and getaddrinfo() of this process passes here (an audit hook cannot be
# removed, so it is installed once and acts only while a test of this module runs): it records
# them, and refuses connections off loopback, so even a broken guard sends no traffic away.
_seen: dict[str, list[Any]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _seen is None:
        return
    if event == "socket.getaddrinfo":
        _seen["lookups"].append(args[0])
    elif event == "socket.connect" and isinstance(args[1], tuple):
        _seen["connects"].append(args[1])
        if not ipaddress.ip_address(args[1][0].split("%")[0]).is_loopback:
            raise PermissionError(f"test guard: connection to {args[1][0]} blocked")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def seen() -> Iterator[dict[str, list[Any]]]:
    global _seen
    _seen = {"lookups": [], "connects": []}
    yield _seen
    _seen = None


@pytest.fixture
def connects(seen: dict[str, list[Any]]) -> list[Any]:
    return seen["connects"]


class Receiver:
    """A webhook endpoint: uvicorn in a thread on a free loopback port, recording each request.

    Paths choose the answer: /ok, /long, /fail (500), /busy (429, Retry-After: 7), /later (503,
    Retry-After as a date), /missing (404), /timeout (408), /redirect (302), /slow (answers
    after 5 s or when the client leaves), /hold (0.1 s, counting calls in flight).
    """

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        ssl_files = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        self.live = LiveServer(self.app, interface="asgi3", **ssl_files)
        self.port = self.live.sock.getsockname()[1]

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        signature = headers.get(SIGNATURE_HEADER.lower())
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers,
                "body": body,
                "client_port": scope["client"][1],
                "signature_ok": signature is not None
                and verify(SECRET, signature, body, now=int(time.time())),
            }
        )
        status, extra, answer = 200, [], b'{"received":true}'
        path = scope["path"]
        if path == "/long":
            answer = "é".encode() * 3000
            extra = [(b"content-type", b"text/plain; charset=utf-8")]
        elif path == "/fail":
            status, answer = 500, b"database is down"
        elif path == "/busy":
            status, extra = 429, [(b"retry-after", b"7")]
        elif path == "/later":
            later = email.utils.formatdate(time.time() + 120, usegmt=True)
            status, extra = 503, [(b"retry-after", later.encode())]
        elif path == "/missing":
            status, answer = 404, b"no such hook"
        elif path == "/timeout":
            status = 408
        elif path == "/redirect":
            status, extra = 302, [(b"location", self.url("/ok").encode())]
        elif path == "/slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receive(), 5)  # returns on http.disconnect
        elif path == "/hold":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            await asyncio.sleep(0.1)
            self.in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": answer})

    def __enter__(self) -> Receiver:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as live:
        yield live


def call(url: str, body: bytes = b'{"event":"order_completed"}', **headers: str) -> WebhookCall:
    return WebhookCall(
        method="POST", url=url, headers=dict(headers), body=body, idempotency_key="msg-1"
    )


def run(work: Callable[[WebhookSender], Awaitable[Any]], **options: Any) -> Any:
    """`work` with a fresh sender, in a fresh event loop, the sender closed afterwards."""

    async def main() -> Any:
        async with WebhookSender(**options) as sender:
            return await work(sender)

    return asyncio.run(main())


def send(webhook: WebhookCall, **options: Any) -> Receipt:
    return run(lambda sender: sender.send(webhook), **options)


def failure(webhook: WebhookCall, **options: Any) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        send(webhook, **options)
    return caught.value


# --- delivery ------------------------------------------------------------------------------


def test_a_signed_call_arrives_with_its_headers_and_verifies(receiver: Receiver) -> None:
    body = b'{"event":"order_completed","total":42.5}'
    signature = sign(SECRET, int(time.time()), body)
    webhook = WebhookCall(
        method="POST",
        url=receiver.url("/ok?source=conveyor"),
        headers={SIGNATURE_HEADER: signature, "Content-Type": "application/json", "X-Shop": "7"},
        body=body,
        idempotency_key="outbox-42",
    )
    receipt = send(webhook, allow=LOOPBACK)

    assert receipt.provider_id is None
    assert receipt.detail["status"] == 200
    assert receipt.detail["response"] == '{"received":true}'
    assert isinstance(receipt.detail["ms"], int) and receipt.detail["ms"] >= 0
    [request] = receiver.requests
    assert request["method"] == "POST" and request["path"] == "/ok"
    assert request["body"] == body
    assert request["signature_ok"]
    headers = request["headers"]
    assert headers["idempotency-key"] == "outbox-42"
    assert headers["user-agent"] == USER_AGENT == "Conveyor-Webhooks/1.0"
    assert headers["content-type"] == "application/json"
    assert headers["x-shop"] == "7"
    assert headers["host"] == f"127.0.0.1:{receiver.port}"


def test_a_signature_over_another_body_fails_on_the_receiver(receiver: Receiver) -> None:
    signature = sign(SECRET, int(time.time()), b'{"total":1}')
    send(
        call(receiver.url("/ok"), b'{"total":1000}', **{SIGNATURE_HEADER: signature}),
        allow=LOOPBACK,
    )
    assert not receiver.requests[0]["signature_ok"]


def test_the_idempotency_key_is_the_calls_own(receiver: Receiver) -> None:
    """A header in the call does not replace the key; it may replace the user agent."""
    send(
        call(receiver.url("/ok"), **{"idempotency-key": "forged", "user-agent": "Shop/2"}),
        allow=LOOPBACK,
    )
    headers = receiver.requests[0]["headers"]
    assert headers["idempotency-key"] == "msg-1"
    assert headers["user-agent"] == "Shop/2"


def test_only_the_first_500_characters_of_the_answer_are_kept(receiver: Receiver) -> None:
    receipt = send(call(receiver.url("/long")), allow=LOOPBACK)
    assert receipt.detail["response"] == "é" * 500


def test_one_client_is_reused_across_calls(receiver: Receiver) -> None:
    async def twice(sender: WebhookSender) -> None:
        await sender.send(call(receiver.url("/ok")))
        await sender.send(call(receiver.url("/ok")))

    run(twice, allow=LOOPBACK)
    first, second = receiver.requests
    assert first["client_port"] == second["client_port"]  # the same kept-alive connection


def test_calls_in_flight_per_host_are_bounded(receiver: Receiver) -> None:
    async def burst(sender: WebhookSender) -> None:
        await asyncio.gather(*(sender.send(call(receiver.url("/hold"))) for _ in range(6)))

    run(burst, allow=LOOPBACK, max_connections=2)
    assert len(receiver.requests) == 6
    assert receiver.max_in_flight == 2


def test_a_closed_sender_refuses_to_send(receiver: Receiver) -> None:
    async def after_close(sender: WebhookSender) -> None:
        await sender.close()
        await sender.send(call(receiver.url("/ok")))

    with pytest.raises(RuntimeError, match="closed"):
        run(after_close, allow=LOOPBACK)


def test_proxies_from_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would resolve the name itself, around the address check."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert send(call(receiver.url("/ok")), allow=LOOPBACK).detail["status"] == 200


# --- failures --------------------------------------------------------------------------------


def test_a_server_error_is_transient(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/fail")), allow=LOOPBACK)
    assert error.transient
    assert error.detail["status"] == 500
    assert error.detail["response"] == "database is down"
    assert isinstance(error.detail["ms"], int)
    assert "500" in error.reason


def test_too_many_requests_is_transient_and_says_when_to_retry(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/busy")), allow=LOOPBACK)
    assert error.transient
    assert error.detail["status"] == 429
    assert error.detail["retry_after"] == 7


def test_retry_after_as_a_date_becomes_seconds(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/later")), allow=LOOPBACK)
    assert error.transient and error.detail["status"] == 503
    assert 118 <= error.detail["retry_after"] <= 122


def test_request_timeout_is_transient(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/timeout")), allow=LOOPBACK)
    assert error.transient and error.detail["status"] == 408


def test_not_found_is_permanent(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/missing")), allow=LOOPBACK)
    assert not error.transient
    assert error.detail["status"] == 404
    assert error.detail["response"] == "no such hook"


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/redirect")), allow=LOOPBACK)
    assert not error.transient
    assert error.detail["status"] == 302
    assert error.reason.endswith(f"redirect to {receiver.url('/ok')} not followed")
    assert [r["path"] for r in receiver.requests] == ["/redirect"]


def test_a_slow_receiver_times_out_transiently(receiver: Receiver) -> None:
    error = failure(call(receiver.url("/slow")), allow=LOOPBACK, timeout=0.3)
    assert error.transient
    assert error.detail["status"] is None
    assert 250 <= error.detail["ms"] < 4000
    assert "0.3 s" in error.reason


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    error = failure(call(f"http://127.0.0.1:{port}/hook"), allow=LOOPBACK)
    assert error.transient
    assert error.detail["status"] is None
    assert "connection to 127.0.0.1 failed" in error.reason


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "http:///nohost", "not a url"]
)
def test_other_schemes_and_bad_urls_are_permanent(url: str, connects: list[Any]) -> None:
    assert not failure(call(url)).transient
    assert connects == []


# --- internal addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]/hook", "::1"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1"),
        ("http://[::ffff:10.0.0.1]:8080/hook", "::ffff:a00:1"),
        ("http://0.0.0.0/hook", "0.0.0.0"),
        ("http://100.64.1.1/hook", "100.64.1.1"),
        ("http://192.168.1.1/hook", "192.168.1.1"),
        ("https://[fd00::1]/hook", "fd00::1"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://224.0.0.1/hook", "224.0.0.1"),
        ("http://127.0.0.1/hook", "127.0.0.1"),
    ],
)
def test_internal_addresses_are_refused_without_a_connection(
    url: str, address: str, connects: list[Any]
) -> None:
    error = failure(call(url))
    assert not error.transient
    assert address in error.reason and "refused" in error.reason
    assert error.detail["address"] == address
    assert error.detail["status"] is None
    assert connects == []


def test_a_name_resolving_to_loopback_is_refused(receiver: Receiver, connects: list[Any]) -> None:
    error = failure(call(receiver.url("/ok", host="localhost")))
    assert not error.transient
    assert "localhost" in error.reason and "loopback" in error.reason
    assert connects == [] and receiver.requests == []


def test_an_allow_list_for_another_range_does_not_help(
    receiver: Receiver, connects: list[Any]
) -> None:
    error = failure(call(receiver.url("/ok")), allow=["10.0.0.0/8"])
    assert "127.0.0.1" in error.reason
    assert connects == [] and receiver.requests == []


@pytest.mark.parametrize("allow", [LOOPBACK, ["localhost"]])
def test_the_allow_list_lets_loopback_through(
    receiver: Receiver, allow: list[str], seen: dict[str, list[Any]]
) -> None:
    receipt = send(call(receiver.url("/ok", host="localhost")), allow=allow)
    assert receipt.detail["status"] == 200
    assert receiver.requests[0]["headers"]["host"] == f"localhost:{receiver.port}"
    # The name was looked up once, by the check; the connection went to the checked address.
    assert seen["lookups"].count("localhost") == 1
    assert seen["connects"][-1] == ("127.0.0.1", receiver.port)


def test_an_allow_list_entry_must_make_sense() -> None:
    with pytest.raises(ValueError, match="allow"):
        WebhookSender(allow=["http://10.0.0.1/"])


# --- TLS: the connection goes to the checked IP, the certificate is checked for the name -----


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_verifies_the_certificate_for_the_hostname(certificate: tuple[Path, Path]) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with Receiver(tls=certificate) as receiver:
        receipt = send(
            call(receiver.url("/ok", host="localhost", scheme="https")),
            allow=["localhost"],
            ssl_context=trust,
        )
        assert receipt.detail["status"] == 200
        assert receiver.requests[0]["headers"]["host"] == f"localhost:{receiver.port}"

        # The same server by IP: the certificate does not name 127.0.0.1, so no request is sent.
        error = failure(
            call(receiver.url("/ok", scheme="https")), allow=LOOPBACK, ssl_context=trust
        )
        assert error.transient
        assert "certificate" in error.reason
        assert len(receiver.requests) == 1
