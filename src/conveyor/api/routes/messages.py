"""Admin endpoints for what goes out: messages (the outbox) with their delivery state, retrying
dead letters, channel settings (senders, SMTP, SMS account, inbound URLs, the webhook signing
key), the suppression list, and provider reports posted with an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.reactions import EmailReport

router = APIRouter(tags=["messages"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
MessagePath = Annotated[int, Path(ge=1, le=MAX_ID, description="message id")]


class MessageOut(BaseModel):
    id: int
    channel: str
    template: str | None
    contact_id: int
    run_id: int | None
    campaign_id: int | None = Field(default=None, description="the campaign that queued it")
    node: str | None
    message_class: str
    payload: dict[str, Any] = Field(description="the node's settings and the trigger event")
    status: str = Field(
        description="pending, sending, sent, skipped, failed, dead (, clicked, "
        "dismissed for site messages; held, cancelled for a paused or cancelled campaign's)"
    )
    attempts: int
    send_after: datetime | None
    sent_at: datetime | None
    recipient: str | None
    provider_id: str | None
    error: str | None
    content: dict[str, Any] | None
    idempotency_key: str
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> MessageOut:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: int | None


def _page(
    request: Request,
    workspace: Workspace,
    contact: int | None,
    status: str | None,
    channel: str | None,
    after: int | None,
    limit: int,
) -> MessagePage:
    rows = conveyor_of(request).delivery.messages(
        workspace, contact_id=contact, status=status, channel=channel, after_id=after, limit=limit
    )
    return MessagePage(
        items=[MessageOut.of(r) for r in rows],
        next_cursor=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/messages", response_model=MessagePage)
def list_messages(
    workspace: Admin,
    request: Request,
    contact: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: str | None = None,
    channel: str | None = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> MessagePage:
    """Messages in order of creation, with delivery state and the last error."""
    return _page(request, workspace, contact, status, channel, after, limit)


@router.get("/outbox", response_model=MessagePage)
def list_outbox(
    workspace: Admin,
    request: Request,
    contact: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> MessagePage:
    """The same as /messages (kept for clients of the first API)."""
    return _page(request, workspace, contact, None, None, None, limit)


@router.get("/messages/{message_id}", response_model=MessageOut)
def get_message(message_id: MessagePath, workspace: Admin, request: Request) -> MessageOut:
    return MessageOut.of(conveyor_of(request).delivery.message(workspace, message_id))


@router.post("/messages/{message_id}/retry", status_code=204)
def retry_message(message_id: MessagePath, workspace: Admin, request: Request) -> Response:
    """Send a dead or failed message again (its attempts start over)."""
    conveyor_of(request).delivery.retry(workspace, message_id)
    return Response(status_code=204)


# --- channel settings ------------------------------------------------------------------------


@router.get("/channels")
def get_channels(workspace: Admin, request: Request) -> dict[str, Any]:
    """Each channel's settings (secrets masked), the inbound URLs to give providers, and the
    key that signs outbound webhooks (`Conveyor-Signature: t=…,v1=…`)."""
    return conveyor_of(request).channels.describe(workspace)


@router.put("/channels/{channel}")
def put_channel(
    channel: Literal["email", "sms", "webhook"],
    body: dict[str, Any],
    workspace: Admin,
    request: Request,
) -> dict[str, Any]:
    """email: from, reply_to, smtp_url, unsubscribe_mailto. sms: account_sid, auth_token, from
    or messaging_service_sid, base_url. Replaces the channel's settings."""
    conveyor = conveyor_of(request)
    updated = conveyor.channels.configure(workspace, channel, body)
    return conveyor.channels.describe(updated)


# --- suppressions ----------------------------------------------------------------------------


class SuppressionIn(Strict):
    channel: Literal["email", "sms"]
    address: str = Field(description="an email, '@domain' (email) or a phone number (sms)")
    detail: str | None = Field(default=None, max_length=500)


class SuppressionOut(BaseModel):
    channel: str
    address: str
    reason: str
    detail: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> SuppressionOut:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


@router.get("/suppressions", response_model=list[SuppressionOut])
def list_suppressions(
    workspace: Admin,
    request: Request,
    channel: Literal["email", "sms"] | None = None,
    after: str | None = Query(default=None, max_length=320, description="cursor: last address"),
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SuppressionOut]:
    rows = conveyor_of(request).channels.suppressions(workspace, channel, after, limit)
    return [SuppressionOut.of(r) for r in rows]


@router.post("/suppressions", status_code=201, response_model=SuppressionOut)
def add_suppression(body: SuppressionIn, workspace: Admin, request: Request) -> SuppressionOut:
    row = conveyor_of(request).channels.suppress(workspace, body.channel, body.address, body.detail)
    return SuppressionOut.of(row)


@router.delete("/suppressions/{channel}/{address}", status_code=204)
def remove_suppression(
    channel: Literal["email", "sms"], address: str, workspace: Admin, request: Request
) -> Response:
    conveyor_of(request).channels.unsuppress(workspace, channel, address)
    return Response(status_code=204)


# --- provider reports with an admin key --------------------------------------------------------


class EmailEventIn(Strict):
    type: Literal["delivered", "bounced", "complained"]
    email: str | None = Field(default=None, max_length=320)
    message_id: str | None = Field(
        default=None, max_length=255, description="the Message-ID Conveyor sent (without <>)"
    )
    bounce: Literal["hard", "soft"] = "hard"
    reason: str | None = Field(default=None, max_length=500)


class EmailEventsIn(Strict):
    events: list[EmailEventIn] = Field(max_length=1000)


@router.post("/email-events")
def post_email_events(body: EmailEventsIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """Delivery reports in a generic shape (for providers without a built-in format): a
    hard bounce or a complaint suppresses the address and marks its lists."""
    reports = [
        EmailReport(
            kind=e.type,
            email=e.email,
            provider_id=(e.message_id or "").strip("<>") or None,
            bounce=e.bounce,
            reason=e.reason,
        )
        for e in body.events
    ]
    return {"results": conveyor_of(request).reactions.email_reports(workspace, reports)}
