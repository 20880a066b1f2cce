"""Twilio SMS: sending through its Messages API, and reading and authenticating the webhooks it
calls back (inbound replies, delivery status).

Sends are at least once: a timeout after Twilio took the message leads to a retry. Each request
carries the message's idempotency key as `I-Twilio-Idempotency-Token` (the idempotency header
Twilio sets on its own webhook calls) so a retry can be told apart from a second message; the
Messages API does not document deduplicating on it, so a retry after a timeout may send twice.

A workspace may point `base_url` at a Twilio-compatible API: its requests then go through the
address guard (`conveyor.channels.guard`, never an internal address unless allowed), only over
http(s), and what that server answers reaches the tenant as a short status line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.channels.base import DeliveryError, Receipt, Sms, short
from conveyor.channels.guard import AddressGuard
from conveyor.domain.errors import InvalidInput
from conveyor.domain.sms import segments

if TYPE_CHECKING:
    # httpx (with httpcore, h11 and its own CLI's rich and pygments) is imported by the methods
    # that send: the API reading Twilio's webhooks, and every `conveyor` command, need none of it.
    import httpx

TWILIO_API = "https://api.twilio.com"
OPTED_OUT = 21610  # the recipient replied STOP: never send again until they reply START
# Twilio error codes for a number that can never receive SMS: a hard bounce.
INVALID_NUMBER_CODES = frozenset({21211, 21217, 21401, 21614})


class TwilioSms:
    """An `SmsProvider` for Twilio's Messages API (POST …/Accounts/{sid}/Messages.json).

    Messages go from `sms.sender`, else `from_number`; with `messaging_service_sid` Twilio picks
    the sender from the service's pool (and applies its opt-out and compliance features).
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        base_url: str = TWILIO_API,
        timeout: float = 10.0,
        guard: AddressGuard | None = None,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("TwilioSms needs a from_number or a messaging_service_sid")
        import httpx

        from conveyor.channels.pinned import PinnedTransport

        self.base_problem = base_url_problem(base_url)
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        pinned = (
            {}
            if guard is None
            else {
                "transport": PinnedTransport(guard, httpx.create_ssl_context(trust_env=False)),
                "trust_env": False,
            }
        )
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(account_sid, auth_token),
            timeout=timeout,
            headers={"Accept": "application/json"},
            **pinned,  # type: ignore[arg-type]
        )

    def form(self, sms: Sms) -> dict[str, str]:
        """The form fields of the create-message request for `sms`."""
        fields = {"To": sms.to, "Body": sms.body}
        sender = sms.sender or self.from_number
        if sender:
            fields["From"] = sender
        if self.messaging_service_sid:
            fields["MessagingServiceSid"] = self.messaging_service_sid
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return fields

    async def send(self, sms: Sms) -> Receipt:
        if self.base_problem is not None:
            raise DeliveryError(f"SMS base_url {self.base_problem}", transient=False)
        import httpx

        try:
            response = await self._client.post(
                self.url,
                data=self.form(sms),
                headers={"I-Twilio-Idempotency-Token": sms.idempotency_key},
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise DeliveryError(f"cannot send to the SMS API: {exc}", transient=False) from exc
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"Twilio timed out: {exc!r}", transient=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"cannot reach Twilio: {exc!r}", transient=True) from exc
        if response.is_success:
            return _receipt(response, sms)
        raise _error(response)

    async def close(self) -> None:
        await self._client.aclose()


def base_url_problem(base_url: str) -> str | None:
    """What is wrong with an SMS API base URL (None: nothing)."""
    import httpx

    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        return "is not a valid URL"
    if url.scheme not in ("http", "https"):
        return f"must be http or https, not {url.scheme or 'no scheme'!r}"
    if not url.host:
        return "has no host"
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _receipt(response: httpx.Response, sms: Sms) -> Receipt:
    data = _json(response)
    sid = data.get("sid")
    if not isinstance(sid, str) or not sid:
        # Twilio may have taken it; a retry under the same idempotency token is the safe move.
        raise DeliveryError(
            f"Twilio answered {response.status_code} without a message sid",
            transient=True,
            detail={"http_status": response.status_code},
        )
    # Twilio's own count (after its smart encoding) when it gives one; it says "0" while a
    # messaging service has only accepted the message.
    try:
        count = int(data.get("num_segments") or 0)
    except (TypeError, ValueError):
        count = 0
    return Receipt(
        provider_id=sid,
        detail={"status": data.get("status"), "segments": count or segments(sms.body).segments},
    )


def _error(response: httpx.Response) -> DeliveryError:
    status = response.status_code
    data = _json(response)
    code = data.get("code")
    if code is not None and not isinstance(code, int):
        code = short(str(code))
    message = short(str(data.get("message") or response.reason_phrase or "no message"))
    detail: dict[str, Any] = {"http_status": status}
    if code is not None:
        detail["code"] = code
    if data.get("more_info"):
        detail["more_info"] = short(str(data["more_info"]))
    retry_after = response.headers.get("Retry-After", "")
    if retry_after.isdigit():
        detail["retry_after"] = int(retry_after)
    reason = f"Twilio {status}" + (f" error {code}" if code is not None else "") + f": {message}"
    # 4xx is about this message and will not change on a retry, except a timeout or a rate
    # limit; 5xx (and a stray 3xx from a proxy) may pass.
    transient = status >= 500 or status in (408, 429) or status < 400
    bounce = "hard" if isinstance(code, int) and code in INVALID_NUMBER_CODES else None
    return DeliveryError(reason, transient=transient, bounce=bounce, detail=detail)


@dataclass(frozen=True)
class InboundSms:
    from_: str
    to: str
    body: str
    provider_id: str  # Twilio's MessageSid


@dataclass(frozen=True)
class StatusUpdate:
    provider_id: str
    status: str  # queued, sending, sent, delivered, undelivered, failed (also accepted, read, …)
    error_code: int | None = None


def _required(form: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = form.get(name)
        if value:
            return value
    raise InvalidInput(names[0], "is required")


def parse_inbound(form: Mapping[str, str]) -> InboundSms:
    """The reply in the form Twilio posts to a number's messaging webhook."""
    return InboundSms(
        from_=_required(form, "From"),
        to=_required(form, "To"),
        body=form.get("Body", ""),
        provider_id=_required(form, "MessageSid", "SmsSid"),
    )


def parse_status(form: Mapping[str, str]) -> StatusUpdate:
    """The delivery status in the form Twilio posts to a message's StatusCallback."""
    raw_code = form.get("ErrorCode") or ""
    try:
        error_code = int(raw_code) if raw_code else None
    except ValueError:
        raise InvalidInput("ErrorCode", "must be a number") from None
    return StatusUpdate(
        provider_id=_required(form, "MessageSid", "SmsSid"),
        status=_required(form, "MessageStatus", "SmsStatus").lower(),
        error_code=error_code,
    )


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a request: base64 HMAC-SHA1, keyed with the auth token, of the full
    URL (query string included) followed by each form key and its value, keys sorted."""
    data = url + "".join(key + form[key] for key in sorted(form))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _with_and_without_port(url: str) -> set[str]:
    # Twilio signs the URL as configured, which may or may not name the default port; its SDKs
    # accept both spellings, and so do we.
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # not a port number: only the URL as given can match
        return {url}
    if not parts.hostname:
        return {url}
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    bare = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return {
        url,
        urlunsplit(parts._replace(netloc=f"{userinfo}{bare}")),
        urlunsplit(parts._replace(netloc=f"{userinfo}{bare}:{port}")),
    }


def valid_twilio_signature(
    auth_token: str, url: str, form: Mapping[str, str], header: str | None
) -> bool:
    """Whether `header` (X-Twilio-Signature) proves Twilio sent this form to this URL.

    `url` must be the public URL Twilio called (scheme, host, path and query), not the one a
    proxy in front of Conveyor forwarded to.
    """
    if not header:
        return False
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, form).encode(), header.encode())
        for candidate in _with_and_without_port(url)
    )
