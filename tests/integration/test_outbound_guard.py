"""No connection a workspace controls reaches an internal address: webhook URLs, the workspace's
own SMTP server and its SMS API base URL all go through the same address guard (issue 20: the
SMTP host and the SMS base_url reached 10.0.0.1:25, 169.254.169.254 and loopback services).

Provider by provider over 36 spellings of internal targets, then end to end through the API on
both databases: the message fails for good with the reason, and the local listener standing in
for an internal service sees no connection at all (so no credentials and no banner either)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from conveyor.channels.base import DeliveryError, Email, Sms, WebhookCall
from conveyor.channels.guard import AddressGuard
from conveyor.channels.sms import TwilioSms
from conveyor.channels.smtp import SmtpConfig, SmtpProvider
from conveyor.channels.webhook import WebhookSender
from tests.support.flows import activate, settle
from tests.support.http import Peer
from tests.support.smtp import SmtpSink

# How an internal service can be spelled in a host setting: loopback, private, link-local
# (cloud metadata), shared, multicast, reserved and special-purpose IPv4; numeric encodings that
# the resolver turns into 127.0.0.1; IPv6 and IPv4 carried inside it (mapped, 6to4, NAT64, Teredo).
INTERNAL = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "10.255.255.254", "172.16.0.1",
    "172.31.255.1", "192.168.0.1", "169.254.169.254", "169.254.0.1", "100.64.0.1",
    "100.127.255.254", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "192.0.0.1", "198.18.0.1", "192.0.2.1",
    "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost",
    "::1", "::", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "fd00::1",
    "fe80::1", "fc00::1", "ff02::1", "2002:7f00:1::1", "64:ff9b::a9fe:a9fe",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
]  # fmt: skip


def in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Listener:
    """A TCP port on loopback that counts who connects (an internal service stand-in)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 internal\r\n")
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    found = Listener()
    yield found
    found.close()


def refused(send) -> DeliveryError:
    async def attempt() -> DeliveryError:
        try:
            await send()
        except DeliveryError as exc:
            return exc
        raise AssertionError("sent to an internal address")

    return asyncio.run(attempt())


@pytest.mark.parametrize("host", INTERNAL)
def test_every_provider_refuses_every_internal_target(host: str, listener: Listener) -> None:
    port = listener.port

    async def webhook() -> None:
        async with WebhookSender() as sender:
            url = f"http://{in_url(host)}:{port}/hook"
            await sender.send(WebhookCall("POST", url, {}, b"{}", "k1"))

    async def smtp() -> None:
        provider = SmtpProvider(SmtpConfig(host, port, "none", timeout=2), AddressGuard([]))
        try:
            await provider.send(Email("a@shop.example", ("b@example.com",), b"Subject: x\r\n\r\nx",
                                      "id@shop.example"))
        finally:
            await provider.close()

    async def sms() -> None:
        provider = TwilioSms("AC1", "secret", from_number="+15005550006", timeout=2,
                             base_url=f"http://{in_url(host)}:{port}", guard=AddressGuard([]))
        try:
            await provider.send(Sms("+48600100200", "hi", "k2"))
        finally:
            await provider.close()

    for send in (webhook, smtp, sms):
        error = refused(send)
        assert not error.transient, (send.__name__, error.reason)
        # refused by the guard, or (httpx) not even taken as a URL: never a connection
        assert "refused" in error.reason or "not a valid" in error.reason.lower() or "invalid" in error.reason.lower(), error.reason
    assert listener.connections == 0


def test_the_allow_list_opens_a_workspace_smtp_server_on_loopback() -> None:
    sink = SmtpSink().start()
    try:
        provider = SmtpProvider(SmtpConfig.from_url(sink.url), AddressGuard(["127.0.0.1/32"]))

        async def send() -> None:
            try:
                await provider.send(Email("a@shop.example", ("b@example.com",),
                                          b"Subject: hi\r\n\r\nhello", "id2@shop.example"))
            finally:
                await provider.close()

        asyncio.run(send())
        [got] = sink.messages
        assert got.recipients == ["b@example.com"]
    finally:
        sink.stop()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://api.example.com", "gopher://x"])
def test_an_sms_base_url_that_is_not_http_fails_for_good(url: str) -> None:
    async def send() -> None:
        provider = TwilioSms("AC1", "secret", from_number="+15005550006", base_url=url)
        try:
            await provider.send(Sms("+48600100200", "hi", "k3"))
        finally:
            await provider.close()

    error = refused(send)
    assert not error.transient and "base_url" in error.reason


@pytest.mark.parametrize("value", ["a\u2028b", "a\u0085b", "line\r\nX-Injected: 1", "caf\u00e9"])
def test_a_webhook_header_http_cannot_carry_fails_for_good(value: str, listener: Listener) -> None:
    async def send() -> None:
        async with WebhookSender(allow=["127.0.0.1/32"]) as sender:
            url = f"http://127.0.0.1:{listener.port}/hook"
            await sender.send(WebhookCall("POST", url, {"X-Name": value}, b"{}", "k4"))

    error = refused(send)
    assert not error.transient and "X-Name" in error.reason and "U+" in error.reason
    assert listener.connections == 0


# --- end to end: a tenant's settings, the default allow-list (none) ----------------------------


def test_a_workspace_smtp_server_on_an_internal_address_is_never_contacted(
    client, tenant, conveyor, listener
):
    conveyor.settings.webhook_allow = ""  # the default: no internal address allowed
    r = client.put("/channels/email", headers=tenant.admin, json={
        "from": "Shop <news@shop.example>",
        "smtp_url": f"smtp://user:pw@127.0.0.1:{listener.port}?security=none"})
    assert r.status_code == 200, r.text
    client.post("/templates", headers=tenant.admin, json={
        "key": "hello", "channel": "email",
        "content": {"subject": "Hi", "html": "<p>Hello {{ contact.first_name }}</p>"}})
    activate(client, tenant, {"key": "mail", "triggers": [{"tag_added": "go"}],
                              "nodes": [{"id": "m", "type": "send_email", "template": "hello"}]})
    client.post("/contacts", headers=tenant.admin, json={"email": "a@example.com", "tags": ["go"]})
    settle(conveyor)
    [message] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert message["status"] == "failed", message
    assert "refused to connect to 127.0.0.1" in message["error"]
    assert "SSH" not in message["error"]
    assert listener.connections == 0


def test_a_workspace_sms_base_url_on_an_internal_address_never_gets_the_credentials(
    client, tenant, conveyor
):
    conveyor.settings.webhook_allow = ""
    internal = Peer(answer=(201, b'{"sid": "SM1", "status": "queued"}')).start()
    try:
        r = client.put("/channels/sms", headers=tenant.admin, json={
            "account_sid": "AC123", "auth_token": "secret-token", "from": "+15005550006",
            "base_url": internal.url})
        assert r.status_code == 200, r.text
        client.post("/templates", headers=tenant.admin, json={
            "key": "sms-hi", "channel": "sms", "content": {"body": "Hi"}})
        activate(client, tenant, {"key": "texts", "triggers": [{"tag_added": "go"}],
                                  "nodes": [{"id": "s", "type": "send_sms", "template": "sms-hi"}]})
        client.post("/contacts", headers=tenant.admin, json={"phone": "+48600100200",
                                                            "tags": ["go"]})
        settle(conveyor)
        [message] = client.get("/messages", headers=tenant.admin).json()["items"]
        assert message["status"] == "failed" and "refused" in message["error"]
        assert internal.requests == []
    finally:
        internal.stop()


@pytest.mark.parametrize("base_url", ["file:///etc/passwd", "ftp://x.example", "no url"])
def test_an_sms_base_url_must_be_http(client, tenant, base_url):
    r = client.put("/channels/sms", headers=tenant.admin, json={
        "account_sid": "AC1", "auth_token": "t", "from": "+15005550006", "base_url": base_url})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].endswith("base_url") or "base_url" in r.text
