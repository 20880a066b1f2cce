"""Who is signed in, and the guards every page and action of the panel passes: a session
cookie, a role that allows the action, and — for every POST — the form's CSRF token and the
request's Origin."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response

from conveyor.bootstrap import Conveyor
from conveyor.domain.errors import Forbidden
from conveyor.domain.permissions import Action, require
from conveyor.services.signin import IDLE, SignedIn
from conveyor.web import PREFIX

COOKIE = "conveyor_session"
SIGNIN_COOKIE = "conveyor_signin"  # double-submit token of the sign-in and setup forms


class SignInNeeded(Exception):
    """No valid session: pages redirect to the sign-in page, JSON answers 401."""


def conveyor_of(request: Request) -> Conveyor:
    return request.app.state.conveyor


def secure(request: Request) -> bool:
    settings = conveyor_of(request).settings
    return (
        settings.secure_cookies
        or request.url.scheme == "https"
        or (settings.public_url or "").startswith("https://")
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(IDLE.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure(request),
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def signed_in(request: Request) -> SignedIn:
    """The request's member (a dependency of every page); SignInNeeded without a session."""
    cached = getattr(request.state, "member", None)
    if cached is not None:
        return cached
    member = conveyor_of(request).signin.session(request.cookies.get(COOKIE))
    if member is None:
        raise SignInNeeded()
    request.state.member = member
    return member


def allowed(member: SignedIn, action: Action) -> SignedIn:
    require(member.role, action)
    return member


def same_origin(request: Request) -> None:
    """Browsers send Origin on every POST; one from elsewhere is a cross-site request."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            return  # an old client: the CSRF token still has to match
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    public = conveyor_of(request).settings.public_url
    if public:
        parts = urlsplit(public)
        own.add(f"{parts.scheme}://{parts.netloc}")
    if origin not in own:
        raise Forbidden("this form was sent from another site")


def check_csrf(request: Request, sent: str | None, expected: str | None) -> None:
    same_origin(request)
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("the form expired or did not come from this page: reload and try again")


async def acting(request: Request, action: Action) -> SignedIn:
    """A POST by the signed-in member: its CSRF token and Origin checked, its role allowed."""
    member = signed_in(request)
    form = await request.form()
    token = form.get("csrf")
    check_csrf(request, token if isinstance(token, str) else None, member.csrf)
    return allowed(member, action)


def signin_token(request: Request) -> str:
    """The sign-in form's token: the cookie's if it has one, else a new one."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def keep_signin_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SIGNIN_COOKIE, token, path=PREFIX, httponly=True, samesite="strict", secure=secure(request)
    )
