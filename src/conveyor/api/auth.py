"""API keys on requests: `Authorization: Bearer KEY`, or Segment's Basic form (key as username)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from conveyor.bootstrap import Conveyor
from conveyor.domain.errors import Forbidden, Unauthorized
from conveyor.domain.workspaces import KeyKind, Workspace
from conveyor.services.workspaces import Principal


def conveyor_of(request: Request) -> Conveyor:
    return request.app.state.conveyor


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not valid base64") from None
        return decoded.partition(":")[0]
    raise Unauthorized(f"unsupported authorization scheme '{scheme}'; use Bearer")


def principal(request: Request, body_key: str | None = None) -> Principal:
    key = presented_key(request) or body_key
    if not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer KEY'")
    who = conveyor_of(request).workspaces.authenticate(key)
    request.state.workspace_id = who.workspace.id  # for the request's log line
    return who


# Declares the admin key in the OpenAPI document (security scheme `bearer`); the key itself is
# read by `principal`, which also takes Segment's Basic form.
bearer = HTTPBearer(
    scheme_name="bearer",
    description="An API key: `Authorization: Bearer cvk_…`",
    auto_error=False,
)


def admin_workspace(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Workspace:
    """Dependency of every admin route: the key's workspace, if the key is an admin key."""
    who = principal(request)
    if who.kind is not KeyKind.ADMIN:
        raise Forbidden("this is a write key: it may only send tracking calls to /v1/*")
    return who.workspace
