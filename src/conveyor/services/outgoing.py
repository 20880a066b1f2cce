"""From a claimed outbox row to what a provider sends: the recipient, suppression, the
rendered content per channel, and the tracked links. No I/O here: the caller loads the
contact, template and workspace in one read and hands them in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from conveyor.channels.base import Email, Receipt, Sms, WebhookCall
from conveyor.domain import tracking
from conveyor.domain.contacts import Contact
from conveyor.domain.signatures import sign
from conveyor.domain.sms import segments
from conveyor.domain.workspaces import Workspace
from conveyor.services.channel_config import email_setup
from conveyor.services.contacts import confirm_url
from conveyor.services.rendering import (
    Envelope,
    Links,
    RenderError,
    address,
    compose,
    context_for,
    email_parts,
    message_id_for,
    render,
)
from conveyor.store.records import CurrentTemplate, MessageRecord, SuppressionRecord


@dataclass
class Job:
    """One claimed message on its way: prepared, then sent, then recorded."""

    row: MessageRecord
    workspace: Workspace
    contact: Contact | None
    automation: str | None
    payload: Email | Sms | WebhookCall | None = None
    recipient: str | None = None
    content: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # suppressed or not wanted: never sent, by decision
    fail: str | None = None  # cannot be sent as it is: no address, a template that fails
    defer: str | None = None  # not yet: no provider configured (retried like a provider outage)
    receipt: Receipt | None = None
    error: Any = None  # DeliveryError from the provider

    @property
    def channel(self) -> str:
        return str(self.row.channel)

    @property
    def props(self) -> dict[str, Any]:
        props = message_props(self.row, self.automation)
        if isinstance(self.content.get("template_version"), int):  # rendered: row has none yet
            props["template_version"] = self.content["template_version"]
        return props


def message_props(row: MessageRecord, automation: str | None) -> dict[str, Any]:
    """What every event about a message carries, for triggers, waits and reports."""
    out: dict[str, Any] = {"message": row.id, "channel": row.channel}
    if row.template:
        out["template"] = row.template
        version = (row.content or {}).get("template_version")
        if isinstance(version, int):  # reports count per template version
            out["template_version"] = version
    if automation:
        out |= {"automation": automation, "node": row.node, "run": row.run_id}
    return out


def tracking_url(
    base_url: str, workspace: Workspace, kind: str, message: int, link: int | None = None
) -> str:
    token = tracking.sign(workspace.secret, kind, workspace.id, message, link)
    path = {"open": "t/o", "click": "t/c", "unsubscribe": "u"}[kind]
    return f"{base_url.rstrip('/')}/{path}/{token}"


def contact_context(contact: Contact) -> dict[str, Any]:
    return {
        **contact.fields,
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "name": " ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
        "timezone": contact.timezone,
        "locale": contact.locale,
        "external_id": contact.external_id,
        "score": contact.score,
        "scores": dict(contact.scores),  # the scoring model's named scores, now
        "tags": list(contact.tags),
        "lists": dict(contact.lists),
        "fields": dict(contact.fields),
    }


@dataclass(frozen=True)
class Setup:
    """What preparing needs besides the message: the workspace's senders and links."""

    base_url: str
    email_from: str | None
    reply_to: str | None
    unsubscribe_mailto: str | None
    sms_from: str | None
    webhook_secret: str
    now: datetime


def workspace_vars(workspace: Workspace, sender: str | None) -> dict[str, Any]:
    """`workspace.*` in templates: its `template_vars`, its internal `name`, and
    `display_name`, the brand contacts know it by: the setting, else the name the email sender
    goes by ("Acme" of "Acme <news@acme.example>"), else the internal name."""
    settings = workspace.settings
    brand = (
        settings.get("display_name") or (parseaddr(sender)[0] if sender else "") or workspace.name
    )
    return {"name": workspace.name, "display_name": brand, **(settings.get("template_vars") or {})}


def prepare(
    job: Job,
    template: CurrentTemplate | None,
    setup: Setup,
    suppressed: dict[str, SuppressionRecord],
) -> None:
    """Fill `job` with its payload, or with why it is skipped or failed."""
    row, contact = job.row, job.contact
    if contact is None:
        job.skip = "the contact was deleted"
        return
    config = (row.payload or {}).get("config", {})
    trigger = (row.payload or {}).get("trigger", {})
    workspace = job.workspace
    ctx = context_for(
        contact_context(contact), trigger, workspace_vars(workspace, setup.email_from)
    )
    if template is not None:
        job.content["template_version"] = template.version
    content = dict(template.content) if template is not None else {}
    try:
        if job.channel == "email":
            _email(job, content, config, ctx, setup, suppressed)
        elif job.channel == "team":
            _team(job, content, config, ctx, setup)
        elif job.channel == "sms":
            _sms(job, content, config, ctx, setup, suppressed)
        elif job.channel == "site_message":
            if _left_list(job, config):
                return
            job.content |= {
                k: render(content.get(k), ctx) for k in ("title", "body", "button", "url")
            }
            job.recipient = str(contact.id)
        elif job.channel == "webhook":
            _webhook(job, content, config, ctx, setup)
        else:
            job.fail = f"unknown channel {job.channel}"
    except RenderError as exc:
        job.fail = f"template '{row.template}' failed to render: {exc}"


def _email(
    job: Job,
    content: dict[str, Any],
    config: dict[str, Any],
    ctx: dict[str, Any],
    setup: Setup,
    suppressed: dict[str, SuppressionRecord],
) -> None:
    row, contact = job.row, job.contact
    assert contact is not None
    confirm_list = config.get("confirm_list")
    if confirm_list is not None:
        # Double opt-in: the list's own template `confirm-LIST` if there is one, else ours.
        url = confirm_url(setup.base_url, job.workspace, contact.id, confirm_list)
        ctx = {**ctx, "confirm_url": url}
        content = content or {
            "subject": "Please confirm your subscription to {{ event.list }}",
            "text": "Please confirm that you want to receive {{ event.list }} from "
            "{{ workspace.name }}:\n\n{{ confirm_url }}\n\nIf you did not ask for it, "
            "ignore this email.\n",
        }
    if not content:
        job.fail = f"no email template '{row.template}'"
        return
    if not contact.email:
        job.fail = "the contact has no email address"
        return
    job.recipient = contact.email
    reason = suppression_reason(contact.email, "email", suppressed)
    if reason and not (row.message_class == "transactional" and reason == "unsubscribed"):
        # Transactional mail (receipts, password resets) ignores unsubscribes, never bounces
        # and complaints: those addresses cannot or will not receive anything.
        job.skip = f"suppressed: {reason}"
        return
    if _left_list(job, config):
        return
    if not setup.email_from and not content.get("from_name"):
        job.defer = "no sender: set the workspace's email 'from' (PUT /channels/email)"
        return
    marketing = row.message_class == "marketing"
    unsubscribe = (
        tracking_url(setup.base_url, job.workspace, "unsubscribe", row.id) if marketing else None
    )
    ctx = {**ctx, "unsubscribe_url": unsubscribe or ""}
    links = Links(
        click=lambda i: tracking_url(setup.base_url, job.workspace, "click", row.id, i),
        open_pixel=tracking_url(setup.base_url, job.workspace, "open", row.id) + ".gif",
        unsubscribe=unsubscribe,
    )
    parts = email_parts(content, ctx, links)
    sender = setup.email_from or ""
    if content.get("from_name"):
        name = render(content["from_name"], ctx).strip()
        bare = sender.rpartition("<")[2].rstrip(">") if "<" in sender else sender
        sender = address(name, bare) if bare else sender
    if not sender:
        job.defer = "no sender: set the workspace's email 'from' (PUT /channels/email)"
        return
    message_id = message_id_for(row.idempotency_key, sender)
    envelope = Envelope(
        sender=sender,
        to=address(contact_context(contact)["name"], contact.email),
        reply_to=content.get("reply_to") or setup.reply_to,
        message_id=message_id,
        date=setup.now,
        unsubscribe_url=unsubscribe,
        unsubscribe_mailto=setup.unsubscribe_mailto if marketing else None,
        headers={"X-Conveyor-Message": str(row.id)},
    )
    data = compose(parts, envelope)
    job.payload = Email(_bare(sender), (contact.email,), data, message_id)
    job.content |= {"subject": parts.subject, "links": parts.links, "message_id": message_id}


def _team(
    job: Job, content: dict[str, Any], config: dict[str, Any], ctx: dict[str, Any], setup: Setup
) -> None:
    """A note to the team about a contact: the template if given, else the contact's details."""
    contact = job.contact
    assert contact is not None
    recipients = tuple(config.get("to") or ())
    if not recipients:
        job.fail = "a team notification needs 'to' addresses"
        return
    if not setup.email_from:
        job.defer = "no sender: set the workspace's email 'from' (PUT /channels/email)"
        return
    timeline = f"{setup.base_url.rstrip('/')}/contacts/{contact.id}/timeline"
    ctx = {**ctx, "timeline_url": timeline}
    if not content:
        who = contact_context(contact)
        lines = [
            f"{k}: {v}" for k, v in who.items() if v not in (None, "", [], {}) and k != "fields"
        ]
        label = who["name"] or contact.email or contact.id
        content = {
            "subject": f"{job.automation or 'Conveyor'}: {label}",
            "text": "\n".join(lines) + f"\n\nTimeline: {timeline}\n",
        }
    links = Links(click=None, open_pixel=None, unsubscribe=None)
    parts = email_parts(content, ctx, links)
    message_id = message_id_for(job.row.idempotency_key, setup.email_from)
    data = compose(
        parts,
        Envelope(
            sender=setup.email_from,
            to=", ".join(recipients),
            reply_to=contact.email,
            message_id=message_id,
            date=setup.now,
            unsubscribe_url=None,
        ),
    )
    job.recipient = ", ".join(recipients)
    job.payload = Email(_bare(setup.email_from), recipients, data, message_id)
    job.content |= {"subject": parts.subject, "message_id": message_id}


def _sms(
    job: Job,
    content: dict[str, Any],
    config: dict[str, Any],
    ctx: dict[str, Any],
    setup: Setup,
    suppressed: dict[str, SuppressionRecord],
) -> None:
    contact = job.contact
    assert contact is not None
    if not content:
        job.fail = f"no SMS template '{job.row.template}'"
        return
    if not contact.phone:
        job.fail = "the contact has no phone number"
        return
    job.recipient = contact.phone
    reason = suppression_reason(contact.phone, "sms", suppressed)
    if reason:
        job.skip = f"suppressed: {reason}"  # STOP applies to every kind of SMS
        return
    if _left_list(job, config):
        return
    body = render(content["body"], ctx).strip()
    count = segments(body)
    job.payload = Sms(contact.phone, body, job.row.idempotency_key, setup.sms_from)
    job.content |= {"body": body, "segments": count.segments, "encoding": count.encoding}


def _left_list(job: Job, config: dict[str, Any]) -> bool:
    """Marketing sent for a list (the node's, or the list whose subscription started the
    automation) goes only to its subscribers: whoever left the list is skipped, saying so."""
    wanted = config.get("list") or config.get("trigger_list")
    if not wanted or job.row.message_class != "marketing" or job.contact is None:
        return False
    status = job.contact.lists.get(wanted)
    if status != "subscribed":
        job.skip = f"not subscribed to {wanted} ({status or 'never subscribed'})"
    return job.skip is not None


def _webhook(
    job: Job, content: dict[str, Any], config: dict[str, Any], ctx: dict[str, Any], setup: Setup
) -> None:
    row = job.row
    url = render(config.get("url"), ctx).strip()
    if urlsplit(url).scheme not in ("http", "https"):
        job.fail = f"not an http(s) URL: {url[:200]!r}"
        return
    method = str(content.get("method") or config.get("method") or "POST").upper()
    if content.get("body"):
        body = render(content["body"], ctx).encode()
        content_type = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "text/plain"
    else:
        body = json.dumps(
            {
                "message": row.id,
                "automation": job.automation,
                "node": row.node,
                "contact": ctx["contact"],
                "event": ctx["event"],
            },
            default=str,
        ).encode()
        content_type = "application/json"
    timestamp = int(setup.now.timestamp())
    headers = {
        "Content-Type": content_type,
        "Conveyor-Signature": sign(setup.webhook_secret.encode(), timestamp, body),
        "Conveyor-Message": str(row.id),
    }
    for name, value in (content.get("headers") or {}).items():
        headers[name] = render(value, ctx).strip()
    job.recipient = url[:320]
    job.payload = WebhookCall(method, url, headers, body, row.idempotency_key)
    job.content |= {"url": url, "method": method}


def render_preview(
    workspace: Workspace,
    channel: str,
    content: dict[str, Any],
    contact: Contact,
    event: dict[str, Any],
    settings: Any,
) -> dict[str, Any]:
    ctx = context_for(
        contact_context(contact),
        event,
        workspace_vars(workspace, email_setup(workspace, settings)[1]),
        {"unsubscribe_url": f"{settings.base_url().rstrip('/')}/u/preview", "timeline_url": ""},
    )
    if channel in ("email", "team"):
        parts = email_parts(content, ctx, Links(click=None, open_pixel=None, unsubscribe=None))
        out: dict[str, Any] = {"subject": parts.subject, "html": parts.html, "text": parts.text}
        if content.get("preheader"):
            out["preheader"] = " ".join(render(content["preheader"], ctx).split())
        return out
    if channel == "sms":
        body = render(content.get("body"), ctx).strip()
        count = segments(body)
        return {"body": body, "segments": count.segments, "encoding": count.encoding}
    if channel == "webhook":
        return {
            "body": render(content.get("body"), ctx),
            "headers": {k: render(v, ctx) for k, v in (content.get("headers") or {}).items()},
        }
    return {k: render(content.get(k), ctx) for k in ("title", "body", "button", "url")}


def suppression_reason(
    address: str, channel: str, suppressed: dict[str, SuppressionRecord]
) -> str | None:
    """Why an address is suppressed: the address itself, or (email) its domain."""
    candidates = [address.lower()]
    if channel == "email" and "@" in address:
        candidates.append("@" + address.rpartition("@")[2].lower())
    for candidate in candidates:
        row = suppressed.get(candidate)
        if row is not None:
            return str(row.reason) if candidate == candidates[0] else f"{row.reason} domain"
    return None


def suppression_keys(contact: Contact | None, channel: str) -> list[str]:
    if contact is None:
        return []
    if channel == "email" and contact.email:
        return [contact.email.lower(), "@" + contact.email.rpartition("@")[2].lower()]
    if channel == "sms" and contact.phone:
        return [contact.phone]
    return []


def _bare(sender: str) -> str:
    return sender.rpartition("<")[2].rstrip(">").strip() if "<" in sender else sender.strip()
