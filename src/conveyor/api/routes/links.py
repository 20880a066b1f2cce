"""Public endpoints reached from messages and providers, without an API key: the open pixel,
click redirects, the unsubscribe page with RFC 8058 one-click POST, and the inbound URLs for
SMS replies, SMS status and email events (authenticated by a secret in the URL and, for
Twilio, its request signature). A forged or altered token gets 404 and records nothing.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.auth import conveyor_of
from conveyor.channels.sms import parse_inbound, parse_status, valid_twilio_signature
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.signatures import same_secret
from conveyor.domain.workspaces import Workspace
from conveyor.services.channel_config import channel_settings, inbound_token
from conveyor.services.reactions import EmailReport

router = APIRouter(tags=["tracking links"])

# The smallest transparent GIF: what the open pixel answers.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}


def _client(request: Request) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None), request.headers.get("user-agent")


@router.get("/t/o/{token}", include_in_schema=False)
def open_pixel(token: str, request: Request) -> Response:
    """The open pixel (`….gif`): records `email.opened`, flagged when a mail privacy proxy
    fetched it. Answers the image even for a bad token, so mail clients show nothing broken."""
    try:
        conveyor_of(request).reactions.opened(token.removesuffix(".gif"), *_client(request))
    except NotFound:
        return Response(PIXEL, status_code=404, media_type="image/gif", headers=NO_STORE)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}", include_in_schema=False)
def click(token: str, request: Request) -> Response:
    """Records `email.clicked` and redirects to the link the message had at that position."""
    try:
        url = conveyor_of(request).reactions.clicked(token, *_client(request))
    except NotFound:
        return _page("Link not valid", "This link is not valid.", 404)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A confirmation page: a GET changes nothing, since mail scanners follow every link."""
    try:
        _workspace, list_key, email = conveyor_of(request).reactions.unsubscribe_info(token)
    except NotFound:
        return _page("Link not valid", "This unsubscribe link is not valid.", 404)
    what = f"the list {list_key}" if list_key else "all our emails"
    who = f" ({html.escape(email)})" if email else ""
    action = html.escape(str(request.url.path), quote=True)
    form = (
        f"<p>Unsubscribe{who} from {html.escape(what)}?</p>"
        f"<form method='post' action='{action}'><input type='hidden' name='confirm' value='1'>"
        "<button type='submit'>Unsubscribe</button></form>"
    )
    if list_key:
        form += (
            f"<form method='post' action='{action}'><input type='hidden' name='all' value='1'>"
            "<button type='submit'>Unsubscribe from all emails</button></form>"
        )
    return _page("Unsubscribe", form, raw=True)


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request) -> Response:
    """The one-click unsubscribe (RFC 8058: a POST with `List-Unsubscribe=One-Click`) and the
    page's buttons. Unsubscribing twice is fine."""
    form = await request.form()
    everything = form.get("all") == "1"
    try:
        done = conveyor_of(request).reactions.unsubscribe(token, everything=everything)
    except NotFound:
        return _page("Link not valid", "This unsubscribe link is not valid.", 404)
    if form.get("List-Unsubscribe") == "One-Click":
        return Response(status_code=200)
    what = f"the list {done.list_name}" if done.list_name else "all our emails"
    return _page("Unsubscribed", f"You are unsubscribed from {what}.")


def _page(title: str, message: str, status: int = 200, *, raw: bool = False) -> HTMLResponse:
    body = message if raw else f"<p>{html.escape(message)}</p>"
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><meta name='viewport' content='width=device-width'>"
        "</head><body style='font-family:system-ui;max-width:32rem;margin:4rem auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=NO_STORE,
    )


# --- inbound from providers ------------------------------------------------------------------


def _inbound_workspace(request: Request, workspace: str, token: str, purpose: str) -> Workspace:
    try:
        found = conveyor_of(request).workspaces.get(workspace)
    except NotFound:
        found = None
    if found is None or not same_secret(token, inbound_token(found, purpose)):
        raise NotFound("no such inbound URL")
    return found


def _check_twilio(request: Request, workspace: Workspace, form: dict[str, str]) -> None:
    """When the workspace has a Twilio auth token, Twilio's signature must match."""
    auth_token = channel_settings(workspace, "sms").get("auth_token")
    if auth_token:
        url = conveyor_of(request).settings.base_url().rstrip("/") + request.url.path
        if not valid_twilio_signature(
            auth_token, url, form, request.headers.get("x-twilio-signature")
        ):
            raise NotFound("no such inbound URL")


@router.post("/inbound/{workspace_name}/{token}/sms", include_in_schema=False)
async def inbound_sms(workspace_name: str, token: str, request: Request) -> Response:
    """Twilio's inbound-message webhook: `sms.replied`; STOP and START change SMS consent."""
    ws = _inbound_workspace(request, workspace_name, token, "sms")
    form = {k: str(v) for k, v in (await request.form()).items()}
    _check_twilio(request, ws, form)
    sms = parse_inbound(form)
    conveyor_of(request).reactions.sms_reply(ws, sms.from_, sms.body, sms.provider_id)
    # An empty TwiML answer: Conveyor replies through automations, not here.
    return Response("<Response/>", media_type="text/xml")


@router.post("/inbound/{workspace_name}/{token}/sms-status", include_in_schema=False)
async def inbound_sms_status(workspace_name: str, token: str, request: Request) -> Response:
    ws = _inbound_workspace(request, workspace_name, token, "sms")
    form = {k: str(v) for k, v in (await request.form()).items()}
    _check_twilio(request, ws, form)
    update = parse_status(form)
    error = str(update.error_code) if update.error_code else None
    conveyor_of(request).reactions.sms_status(ws, update.provider_id, update.status, error)
    return Response(status_code=204)


@router.post("/inbound/{workspace_name}/{token}/email-events", include_in_schema=False)
async def inbound_email_events(workspace_name: str, token: str, request: Request) -> dict[str, Any]:
    """SendGrid's event webhook (a JSON array of events), or the generic shape of
    `POST /email-events` ({"events": [...]})."""
    ws = _inbound_workspace(request, workspace_name, token, "email")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidInput("", "a JSON body") from None
    reports = _sendgrid(body) if isinstance(body, list) else _generic(body)
    return {"results": conveyor_of(request).reactions.email_reports(ws, reports)}


_SENDGRID = {
    "delivered": "delivered",
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "deferred": "deferred",
}


def _sendgrid(events: list[Any]) -> list[EmailReport]:
    reports = []
    for i, event in enumerate(events[:1000]):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise InvalidInput(f"{i}.event", "each SendGrid event has an 'event'")
        kind = _SENDGRID.get(event["event"], event["event"])
        # SendGrid sends `smtp-id` (our Message-ID) for SMTP-relayed mail.
        provider_id = str(event.get("smtp-id") or "").strip("<> ") or None
        bounce = "soft" if event.get("type") == "blocked" or kind == "deferred" else "hard"
        reports.append(
            EmailReport(
                kind=kind,
                email=event.get("email") if isinstance(event.get("email"), str) else None,
                provider_id=provider_id,
                bounce=bounce,
                reason=str(event.get("reason") or event.get("response") or "")[:500] or None,
            )
        )
    return reports


def _generic(body: Any) -> list[EmailReport]:
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise InvalidInput("events", "a list of {type, email, message_id, bounce, reason}")
    reports = []
    for i, event in enumerate(events[:1000]):
        if not isinstance(event, dict) or event.get("type") not in (
            "delivered",
            "bounced",
            "complained",
        ):
            raise InvalidInput(f"events.{i}.type", "delivered, bounced or complained")
        reports.append(
            EmailReport(
                kind=event["type"],
                email=event.get("email") if isinstance(event.get("email"), str) else None,
                provider_id=str(event.get("message_id") or "").strip("<> ") or None,
                bounce="soft" if event.get("bounce") == "soft" else "hard",
                reason=str(event.get("reason") or "")[:500] or None,
            )
        )
    return reports
