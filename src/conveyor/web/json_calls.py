"""The panel's JSON calls (the editors' live counts, explanations, saves): the CSRF token in a
header, the Origin ours, the role allowed; answers with the panel's security headers, errors as
RFC 9457 problem+json naming the field, as the API answers them."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from conveyor.domain.errors import ConveyorError, InvalidInput
from conveyor.domain.permissions import Action
from conveyor.services.signin import SignedIn
from conveyor.web.pages import SECURITY_HEADERS
from conveyor.web.session import allowed, check_csrf, signed_in

PROBLEM = "application/problem+json"
MAX_BODY = 256 * 1024  # a condition is a few KB; nesting is capped by the parser


def problem(exc: ConveyorError) -> JSONResponse:
    """RFC 9457, as the API answers: the first bad field and every one found."""
    body: dict[str, Any] = {
        "type": f"/problems/{exc.slug}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if isinstance(exc, InvalidInput):
        body["field"] = exc.field or None
        body["errors"] = [e.as_dict() for e in exc.errors]
    elif getattr(exc, "field", None):
        body["field"] = exc.field  # type: ignore[attr-defined]
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM, headers=SECURITY_HEADERS)


def answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)


async def json_call(request: Request, action: Action) -> tuple[SignedIn, dict[str, Any]]:
    """A JSON POST of an editor: the CSRF token in a header, the Origin ours, the role allowed,
    the body an object."""
    member = signed_in(request)
    check_csrf(request, request.headers.get("x-csrf-token"), member.csrf)
    allowed(member, action)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput("", f"the request is over {MAX_BODY // 1024} KB")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidInput("", "the request is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("", "the request is a JSON object")
    return member, body
