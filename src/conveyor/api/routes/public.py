"""Pages reached without a key: health, and the double opt-in confirmation link."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from conveyor.api.auth import conveyor_of
from conveyor.domain.automations.schema import automation_schema
from conveyor.domain.condition_schema import condition_schema
from conveyor.domain.errors import ConveyorError, NotFound

router = APIRouter(tags=["public"])


@router.get("/schemas/condition.json")
def condition_json_schema() -> dict[str, Any]:
    """The JSON Schema of conditions (segments, branches, goals), for editors and CI."""
    return condition_schema()


@router.get("/schemas/automation.json")
def automation_json_schema() -> dict[str, Any]:
    """The JSON Schema of whole automations (every node type), for editors and the builder."""
    return automation_schema()


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def _page(title: str, message: str, status: int = 200) -> HTMLResponse:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width'></head>"
        "<body style='font-family:system-ui;max-width:32rem;margin:4rem auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


@router.get("/confirm/{workspace}/{token}", response_class=HTMLResponse)
def confirm_subscription(workspace: str, token: str, request: Request) -> HTMLResponse:
    """The link in a double opt-in email: confirms the subscription it was signed for."""
    conveyor = conveyor_of(request)
    try:
        ws = conveyor.workspaces.get(workspace)
        _contact, list_name = conveyor.contacts.confirm(ws, token)
    except NotFound:
        return _page("Link not valid", "This confirmation link is not valid or has expired.", 404)
    except ConveyorError as exc:
        return _page("Not confirmed", exc.detail, exc.status)
    return _page("Subscription confirmed", f"Thank you: you are subscribed to {list_name}.")
