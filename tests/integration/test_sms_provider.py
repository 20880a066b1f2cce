"""TwilioSms against a local HTTP server that speaks Twilio's Messages API, and Twilio's webhook
forms and request signatures (no database)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from conveyor.channels.base import DeliveryError, Receipt, Sms
from conveyor.channels.sms import (
    InboundSms,
    StatusUpdate,
    TwilioSms,
    parse_inbound,
    parse_status,
    twilio_signature,
    valid_twilio_signature,
)
from conveyor.domain.errors import InvalidInput

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "test-auth-token"
FROM = "+15005550006"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

# Recipients that make the fake answer as Twilio does (the first three are Twilio's own magic
# test numbers).
INVALID = "+15005550001"  # 21211
OPTED_OUT = "+15005550004"  # 21610
NOT_MOBILE = "+15005550009"  # 21614
UNAVAILABLE = "+15005550503"  # 503
RATE_LIMITED = "+15005550429"  # 429 with Retry-After
SLOW = "+15005550999"  # answers after 0.5 s
NO_SID = "+15005550201"  # 201 without a sid

TWILIO_ERRORS = {
    INVALID: (21211, "The 'To' number +15005550001 is not a valid phone number."),
    OPTED_OUT: (21610, "Attempt to send to unsubscribed recipient"),
    NOT_MOBILE: (21614, "'To' number is not a valid mobile number"),
}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    client_port: int


@dataclass
class FakeTwilio:
    base_url: str
    requests: list[Request] = field(default_factory=list)
    inbound: list[InboundSms] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the test sees the provider reuse a connection
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = dict(parse_qsl(raw, keep_blank_values=True))
        if self.path == "/sms/inbound":
            self._inbound(form)
        elif self.path == MESSAGES_PATH:
            self._create_message(form)
        else:
            self._answer(404, {"code": 20404, "message": "not found", "status": 404})

    def _inbound(self, form: dict[str, str]) -> None:
        # What Conveyor's inbound endpoint will do: authenticate Twilio, then read the form.
        url = f"http://{self.headers['Host']}{self.path}"
        if not valid_twilio_signature(
            AUTH_TOKEN, url, form, self.headers.get("X-Twilio-Signature")
        ):
            self._answer(403, {"detail": "bad signature"})
            return
        self.server.fake.inbound.append(parse_inbound(form))
        self._answer(204)

    def _create_message(self, form: dict[str, str]) -> None:
        fake = self.server.fake
        fake.requests.append(Request(self.path, dict(self.headers), form, self.client_address[1]))
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._answer(415, {"code": 20415, "message": "Unsupported Media Type", "status": 415})
            return
        if (
            "To" not in form
            or "Body" not in form
            or not ("From" in form or "MessagingServiceSid" in form)
        ):
            self._answer(
                400, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}
            )
            return
        to = form["To"]
        if to in TWILIO_ERRORS:
            code, message = TWILIO_ERRORS[to]
            self._answer(
                400,
                {
                    "code": code,
                    "message": message,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": 400,
                },
            )
        elif to == UNAVAILABLE:
            self._answer(503, {"code": 20503, "message": "Service unavailable", "status": 503})
        elif to == RATE_LIMITED:
            self._answer(
                429,
                {"code": 20429, "message": "Too Many Requests", "status": 429},
                {"Retry-After": "7"},
            )
        elif to == NO_SID:
            self._answer(201, {"status": "queued"})
        else:
            if to == SLOW:
                time.sleep(0.5)
            sid = f"SM{len(fake.requests):032x}"
            self._answer(
                201,
                {
                    "sid": sid,
                    "account_sid": ACCOUNT_SID,
                    "to": to,
                    "from": form.get("From"),
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                    "body": form["Body"],
                    "status": "accepted" if "MessagingServiceSid" in form else "queued",
                    "num_segments": "0" if "MessagingServiceSid" in form else "1",
                    "error_code": None,
                    "error_message": None,
                },
            )


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for every handler, the slow one included
    fake: FakeTwilio

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out hangs up before the slow answer; that is expected here


@contextmanager
def fake_twilio() -> Iterator[FakeTwilio]:
    server = Server(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    server.fake = FakeTwilio(f"http://{host}:{port}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with fake_twilio() as fake:
        yield fake


async def _send(provider: TwilioSms, *messages: Sms) -> list[Receipt | DeliveryError]:
    results: list[Receipt | DeliveryError] = []
    try:
        for sms in messages:
            try:
                results.append(await provider.send(sms))
            except DeliveryError as exc:
                results.append(exc)
    finally:
        await provider.close()
    return results


def send(provider_args: dict, *messages: Sms) -> list[Receipt | DeliveryError]:
    async def run() -> list[Receipt | DeliveryError]:
        return await _send(TwilioSms(ACCOUNT_SID, AUTH_TOKEN, **provider_args), *messages)

    return asyncio.run(run())


def test_sends_the_messages_api_form_with_basic_auth_and_the_idempotency_token(twilio):
    args = {
        "from_number": FROM,
        "base_url": twilio.base_url,
        "status_callback": "https://c.example/sms/status",
    }
    long = "€" * 81  # 162 septets: GSM-7, two segments by our count
    [first, second, third] = send(
        args,
        Sms(to="+14155550100", body="Hello Ada", idempotency_key="msg-1"),
        Sms(to="+14155550101", body=long, idempotency_key="msg-2", sender="Conveyor"),
        Sms(to="+14155550102", body="Hi 😀", idempotency_key="msg-3"),
    )
    assert isinstance(first, Receipt) and isinstance(second, Receipt) and isinstance(third, Receipt)
    assert first.provider_id == "SM" + "1".rjust(32, "0")
    assert first.detail == {"status": "queued", "segments": 1}
    assert [r.path for r in twilio.requests] == [MESSAGES_PATH] * 3
    assert twilio.requests[0].form == {
        "To": "+14155550100",
        "From": FROM,
        "Body": "Hello Ada",
        "StatusCallback": "https://c.example/sms/status",
    }
    assert twilio.requests[1].form["From"] == "Conveyor"  # the message's own sender wins
    assert twilio.requests[1].form["Body"] == long
    assert twilio.requests[2].form["Body"] == "Hi 😀"
    assert [r.headers["I-Twilio-Idempotency-Token"] for r in twilio.requests] == [
        "msg-1",
        "msg-2",
        "msg-3",
    ]
    assert len({r.client_port for r in twilio.requests}) == 1  # one connection, reused


def test_a_messaging_service_sends_without_a_from_number_and_we_count_the_segments(twilio):
    args = {
        "messaging_service_sid": "MG00000000000000000000000000000001",
        "base_url": twilio.base_url,
    }
    [receipt] = send(args, Sms(to="+14155550100", body="x" * 200, idempotency_key="k"))
    assert twilio.requests[0].form == {
        "To": "+14155550100",
        "Body": "x" * 200,
        "MessagingServiceSid": "MG00000000000000000000000000000001",
    }
    # Twilio says num_segments "0" while the service has only accepted it: our count stands in.
    assert isinstance(receipt, Receipt) and receipt.detail == {"status": "accepted", "segments": 2}


def test_a_sender_is_required():
    with pytest.raises(ValueError, match="from_number or a messaging_service_sid"):
        TwilioSms(ACCOUNT_SID, AUTH_TOKEN)


def test_client_errors_are_permanent_with_twilios_code_and_message(twilio):
    [invalid, opted_out, not_mobile] = send(
        {"from_number": FROM, "base_url": twilio.base_url},
        Sms(to=INVALID, body="hi", idempotency_key="a"),
        Sms(to=OPTED_OUT, body="hi", idempotency_key="b"),
        Sms(to=NOT_MOBILE, body="hi", idempotency_key="c"),
    )
    assert isinstance(invalid, DeliveryError) and not invalid.transient
    assert "21211" in invalid.reason and "is not a valid phone number" in invalid.reason
    assert invalid.bounce == "hard"
    assert invalid.detail == {
        "http_status": 400,
        "code": 21211,
        "more_info": "https://www.twilio.com/docs/errors/21211",
    }
    assert isinstance(opted_out, DeliveryError) and not opted_out.transient
    assert "21610" in opted_out.reason and "unsubscribed recipient" in opted_out.reason
    assert opted_out.bounce is None and opted_out.detail["code"] == 21610
    assert isinstance(not_mobile, DeliveryError) and not not_mobile.transient
    assert not_mobile.bounce == "hard"


def test_wrong_credentials_are_a_permanent_401(twilio):
    async def run() -> list[Receipt | DeliveryError]:
        provider = TwilioSms(ACCOUNT_SID, "wrong", from_number=FROM, base_url=twilio.base_url)
        return await _send(provider, Sms(to="+14155550100", body="hi", idempotency_key="k"))

    [error] = asyncio.run(run())
    assert isinstance(error, DeliveryError) and not error.transient
    assert error.reason == "Twilio 401 error 20003: Authenticate"


def test_server_errors_and_rate_limits_are_transient(twilio):
    [unavailable, limited] = send(
        {"from_number": FROM, "base_url": twilio.base_url},
        Sms(to=UNAVAILABLE, body="hi", idempotency_key="a"),
        Sms(to=RATE_LIMITED, body="hi", idempotency_key="b"),
    )
    assert isinstance(unavailable, DeliveryError) and unavailable.transient
    assert unavailable.reason == "Twilio 503 error 20503: Service unavailable"
    assert isinstance(limited, DeliveryError) and limited.transient
    assert limited.detail["retry_after"] == 7


def test_a_created_answer_without_a_sid_is_retried(twilio):
    [error] = send(
        {"from_number": FROM, "base_url": twilio.base_url},
        Sms(to=NO_SID, body="hi", idempotency_key="a"),
    )
    assert isinstance(error, DeliveryError) and error.transient


def test_a_timeout_is_transient(twilio):
    [error] = send(
        {"from_number": FROM, "base_url": twilio.base_url, "timeout": 0.1},
        Sms(to=SLOW, body="hi", idempotency_key="a"),
    )
    assert isinstance(error, DeliveryError) and error.transient
    assert "timed out" in error.reason


def test_a_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    [error] = send(
        {"from_number": FROM, "base_url": f"http://127.0.0.1:{port}"},
        Sms(to="+14155550100", body="hi", idempotency_key="a"),
    )
    assert isinstance(error, DeliveryError) and error.transient
    assert "cannot reach Twilio" in error.reason


# Webhooks Twilio calls: inbound replies and status callbacks.

INBOUND_FORM = {
    "ToCountry": "US",
    "SmsMessageSid": "SM11111111111111111111111111111111",
    "NumMedia": "0",
    "SmsSid": "SM11111111111111111111111111111111",
    "SmsStatus": "received",
    "Body": "STOP",
    "To": FROM,
    "NumSegments": "1",
    "MessageSid": "SM11111111111111111111111111111111",
    "AccountSid": ACCOUNT_SID,
    "From": "+14155550100",
    "ApiVersion": "2010-04-01",
}


def test_parse_inbound_reads_twilios_webhook_form():
    assert parse_inbound(INBOUND_FORM) == InboundSms(
        from_="+14155550100", to=FROM, body="STOP", provider_id="SM11111111111111111111111111111111"
    )
    with pytest.raises(InvalidInput) as caught:
        parse_inbound({k: v for k, v in INBOUND_FORM.items() if k != "From"})
    assert caught.value.field == "From"


def test_parse_status_reads_twilios_status_callback():
    delivered = {
        "MessageSid": "SM1",
        "MessageStatus": "delivered",
        "SmsStatus": "delivered",
        "AccountSid": ACCOUNT_SID,
    }
    assert parse_status(delivered) == StatusUpdate("SM1", "delivered", None)
    failed = {"MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert parse_status(failed) == StatusUpdate("SM2", "undelivered", 30003)
    with pytest.raises(InvalidInput) as caught:
        parse_status({"MessageSid": "SM3"})
    assert caught.value.field == "MessageStatus"
    with pytest.raises(InvalidInput):
        parse_status({"MessageSid": "SM3", "MessageStatus": "failed", "ErrorCode": "x"})


# The example of Twilio's webhook security page, and the variant its SDKs' tests sign.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_FORM = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675310",
    "Digits": "1234",
    "From": "+14158675310",
    "To": "+18005551212",
}


def test_signature_matches_twilios_documented_examples():
    assert twilio_signature("12345", DOC_URL, DOC_FORM) == "GvWf1cFY/Q7PnoempGyD5oXAezc="
    sdk_form = {k: v.replace("+14158675310", "+14158675309") for k, v in DOC_FORM.items()}
    assert twilio_signature("12345", DOC_URL, sdk_form) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert valid_twilio_signature("12345", DOC_URL, DOC_FORM, "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    # Twilio may sign the URL with or without the default port.
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert valid_twilio_signature("12345", with_port, DOC_FORM, "GvWf1cFY/Q7PnoempGyD5oXAezc=")


@pytest.mark.parametrize(
    ("token", "url", "form", "header"),
    [
        ("12345", DOC_URL, {**DOC_FORM, "Digits": "9999"}, "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        ("54321", DOC_URL, DOC_FORM, "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        ("12345", DOC_URL.replace("foo=1", "foo=2"), DOC_FORM, "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        ("12345", DOC_URL, DOC_FORM, None),
        ("12345", DOC_URL, DOC_FORM, ""),
        ("12345", DOC_URL, DOC_FORM, "GvWf1cFY/Q7PnoempGyD5oXAezc"),
        ("12345", DOC_URL, DOC_FORM, "ünïcödé"),
    ],
    ids=[
        "tampered-form",
        "other-token",
        "other-url",
        "no-header",
        "empty-header",
        "cut",
        "non-ascii",
    ],
)
def test_signature_refuses_anything_else(token, url, form, header):
    assert not valid_twilio_signature(token, url, form, header)


def test_a_signed_inbound_webhook_round_trips_over_http(twilio):
    # Play Twilio: sign the form for the endpoint's URL, post it, and let the endpoint check it.
    url = f"{twilio.base_url}/sms/inbound"
    body = urlencode(INBOUND_FORM)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client() as client:
        signed = {**headers, "X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, INBOUND_FORM)}
        assert client.post(url, content=body, headers=signed).status_code == 204
        forged = {
            **headers,
            "X-Twilio-Signature": twilio_signature("not-the-token", url, INBOUND_FORM),
        }
        assert client.post(url, content=body, headers=forged).status_code == 403
        assert client.post(url, content=body, headers=headers).status_code == 403
    assert twilio.inbound == [parse_inbound(INBOUND_FORM)]
