"""The website side of site messages: the `conveyor.js` snippet, and the calls it makes to list
a visitor's pending messages and report them shown, clicked or dismissed."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from conveyor.api.auth import conveyor_of, principal
from conveyor.domain.errors import InvalidInput, NotFound

router = APIRouter(tags=["site messages"])
SITE_FIELDS = ("title", "body", "button", "url")


class SiteMessageOut(BaseModel):
    id: int
    title: str | None = None
    body: str | None = None
    button: str | None = None
    url: str | None = None


class SiteMessagesOut(BaseModel):
    items: list[SiteMessageOut]


@functools.cache
def _snippet() -> tuple[bytes, str]:
    source = resources.files("conveyor.api").joinpath("static/conveyor.js").read_bytes()
    return source, '"' + hashlib.sha256(source).hexdigest()[:32] + '"'


@router.get(
    "/sdk/conveyor.js",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}}}, 304: {"description": "Not modified"}},
)
def snippet(request: Request) -> Response:
    """The website snippet. `<script src="https://HOST/sdk/conveyor.js" data-key="WRITE_KEY"
    async></script>`; then `conveyor.identify(userId, traits, {userHash})`,
    `conveyor.track(event, properties)`, `conveyor.page()` (sent on load) and `conveyor.reset()`.
    It shows the visitor's site messages after identify and page calls."""
    source, etag = _snippet()
    headers = {"Cache-Control": "public, max-age=3600", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value.strip()[:255] or None


def _visitor(
    request: Request,
    user_id: Any,
    anonymous_id: Any,
    user_hash: Any,
    body_key: str | None = None,
) -> tuple[Any, int | None]:
    who = principal(request, body_key)
    contact_id = conveyor_of(request).reactions.site_visitor(
        who.workspace,
        user_id=_text(user_id),
        anonymous_id=_text(anonymous_id),
        user_hash=user_hash if isinstance(user_hash, str) else None,
    )
    return who.workspace, contact_id


@router.get("/v1/site-messages", response_model=SiteMessagesOut)
def list_site_messages(
    request: Request,
    user_id: Annotated[str | None, Query(alias="userId", max_length=255)] = None,
    anonymous_id: Annotated[str | None, Query(alias="anonymousId", max_length=255)] = None,
    user_hash: Annotated[str | None, Query(alias="userHash", max_length=128)] = None,
) -> SiteMessagesOut:
    """The site messages waiting for a website visitor, oldest first: by `userId`, else
    `anonymousId`. A visitor Conveyor has not met has none. Write (or admin) key, as Bearer or
    Basic (key as username).

    **Identity verification.** A write key sits in a public web page, so anyone could ask for
    another user's messages by their userId. With the workspace setting `site_messages_verify`
    true, a request by `userId` must carry `userHash`: the hex HMAC-SHA256 of the userId keyed
    with the workspace's identity secret (`GET /channels` → `site_messages.identity_secret`),
    computed by your server and handed to the page; without a correct one the answer is 403.
    Requests by `anonymousId` (random, kept in the visitor's browser) stay allowed while that
    visitor is anonymous; once it is a known contact (it has a userId or email), ask by userId.
    """
    workspace, contact_id = _visitor(request, user_id, anonymous_id, user_hash)
    if contact_id is None:
        return SiteMessagesOut(items=[])
    rows = conveyor_of(request).reactions.site_messages(workspace, contact_id)
    return SiteMessagesOut(
        items=[
            SiteMessageOut(id=r["id"], **{k: _shown(r.get(k)) for k in SITE_FIELDS}) for r in rows
        ]
    )


def _shown(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@router.post(
    "/v1/site-messages/{message_id}/{event}",
    status_code=204,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "userId": {"type": "string"},
                            "anonymousId": {"type": "string"},
                            "userHash": {"type": "string"},
                            "writeKey": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def site_message_event(
    message_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    event: Literal["shown", "clicked", "dismissed"],
    request: Request,
) -> Response:
    """Report that the visitor saw, clicked or dismissed a site message: records
    `site_message.shown|clicked|dismissed`; clicked and dismissed ones are no longer offered.
    The body names the visitor like `GET /v1/site-messages` (`userId` + `userHash`, or
    `anonymousId`); a message of another visitor is a 404. Any Content-Type (the snippet sends
    text/plain with `writeKey` in the body, so browsers need no preflight)."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "a JSON object naming the visitor")
    body_key = body.get("writeKey") if isinstance(body.get("writeKey"), str) else None
    conveyor = conveyor_of(request)

    def work() -> None:
        workspace, contact_id = _visitor(
            request, body.get("userId"), body.get("anonymousId"), body.get("userHash"), body_key
        )
        if contact_id is None:
            raise NotFound(f"no site message {message_id} for this visitor")
        conveyor.reactions.site_message_event(workspace, contact_id, message_id, event)

    await run_in_threadpool(work)
    return Response(status_code=204)
