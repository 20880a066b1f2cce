"""Messages: the outbox newest first with channel, state, attempts and the last error, filtered
by state and channel in keyset pages; a dead (or failed) message sent again — the delivery
service's `retry`, the same call as `POST /messages/{id}/retry`: it becomes pending now with
its attempts started over, and the worker sends it on its next round."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError
from conveyor.domain.permissions import Action
from conveyor.domain.policies import CHANNELS
from conveyor.services.signin import SignedIn
from conveyor.web.pages import base, redirect, render
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/messages")
Member = Annotated[SignedIn, Depends(signed_in)]
STATES = ("pending", "sending", "sent", "skipped", "failed", "dead", "clicked", "dismissed")
PAGE = 50


@router.get("")
async def message_list(
    request: Request,
    member: Member,
    state: str = "",
    channel: str = "",
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    state = state if state in STATES else ""
    channel = channel if channel in CHANNELS else ""
    delivery = conveyor_of(request).delivery
    rows = delivery.messages(
        member.workspace,
        status=state or None,
        channel=channel or None,
        after_id=cursor,
        limit=PAGE + 1,
        newest_first=True,
    )
    more = rows[PAGE - 1].id if len(rows) > PAGE else None
    return render(
        request,
        "messages/list.html",
        member,
        section="messages",
        title="Messages",
        rows=rows[:PAGE],
        more=more,
        paged=cursor is not None,
        state=state,
        channel=channel,
        states=STATES,
        channels=CHANNELS,
        filtered=bool(state or channel),
    )


@router.post("/{message_id}/retry")
async def retry(
    request: Request,
    message_id: Annotated[int, Path(ge=1, le=2**62)],
    back: Annotated[str, Form()] = "",
) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    # Back to the same filtered list (only a query string of this page, never another URL).
    to = f"{base()}/messages" + (f"?{back}" if back and "/" not in back else "")
    try:
        conveyor_of(request).delivery.retry(member.workspace, message_id)
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(to, exc.detail, failed=True)
    return redirect(to, f"Message {message_id} will be sent again on the worker's next round.")
