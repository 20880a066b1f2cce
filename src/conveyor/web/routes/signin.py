"""Signing in and out, and the one-time setup page that creates the first owner."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError, Unauthorized
from conveyor.services.signin import TooManyAttempts, WhichWorkspace
from conveyor.web.pages import base, redirect, render
from conveyor.web.session import (
    COOKIE,
    SignInNeeded,
    check_csrf,
    clear_session_cookie,
    conveyor_of,
    keep_signin_token,
    set_session_cookie,
    signed_in,
    signin_token,
)

router = APIRouter()
Text = Annotated[str, Form()]
Optional = Annotated[str | None, Form()]


def _safe_next(target: str | None) -> str:
    """Only a path of the panel: never another site (an open redirect)."""
    prefix = base()
    if target and target.startswith(prefix + "/") and "\\" not in target and "//" not in target:
        return target
    return f"{prefix}/"


def _form(request: Request, status: int = 200, **context: object) -> Response:
    token = signin_token(request)
    conveyor = conveyor_of(request)
    response = render(
        request,
        "signin.html",
        status=status,
        title="Sign in",
        form_token=token,
        needs_setup=conveyor.signin.needs_setup(),
        **context,
    )
    keep_signin_token(request, response, token)
    return response


@router.get("/signin")
async def signin_page(request: Request, next: str | None = None) -> Response:
    try:
        signed_in(request)
        return redirect(_safe_next(next))
    except SignInNeeded:
        return _form(request, next=_safe_next(next), email="")


@router.post("/signin")
async def signin_submit(
    request: Request,
    email: Text = "",
    password: Text = "",
    csrf: Optional = None,
    next: Optional = None,
    workspace: Optional = None,
) -> Response:
    check_csrf(request, csrf, request.cookies.get("conveyor_signin"))
    conveyor = conveyor_of(request)
    client = request.client.host if request.client else "unknown"
    target = _safe_next(next)
    try:
        session = conveyor.signin.sign_in(email, password, client, workspace or None)
    except WhichWorkspace as exc:
        return _form(
            request, 200, next=target, email=email, choices=exc.workspaces, error=exc.detail
        )
    except TooManyAttempts as exc:
        return _form(request, 429, next=target, email=email, error=exc.detail)
    except Unauthorized as exc:
        return _form(request, 401, next=target, email=email, error=exc.detail)
    response = redirect(target)
    set_session_cookie(request, response, session.token)
    return response


@router.post("/signout")
async def signout(request: Request, csrf: Optional = None) -> Response:
    member = signed_in(request)
    check_csrf(request, csrf, member.csrf)
    conveyor_of(request).signin.sign_out(request.cookies.get(COOKIE))
    response = redirect(f"{base()}/signin", "You are signed out.")
    clear_session_cookie(response)
    return response


@router.get("/setup")
async def setup_page(request: Request, token: str | None = None) -> Response:
    workspace = conveyor_of(request).signin.setup_workspace(token)
    if workspace is None:
        return render(
            request,
            "error.html",
            status=404,
            title="Setup link not valid",
            status_code=404,
            detail="This setup link is used or expired. Restart `conveyor serve` for a new one, "
            "or create a member with `conveyor user create`.",
        )
    form_token = signin_token(request)
    response = render(
        request,
        "setup.html",
        title="Create the first owner",
        setup_workspace=workspace.name,
        token=token,
        form_token=form_token,
        values={},
    )
    keep_signin_token(request, response, form_token)
    return response


@router.post("/setup")
async def setup_submit(
    request: Request,
    token: Text = "",
    name: Text = "",
    email: Text = "",
    password: Text = "",
    confirm: Text = "",
    csrf: Optional = None,
) -> Response:
    check_csrf(request, csrf, request.cookies.get("conveyor_signin"))
    conveyor = conveyor_of(request)
    workspace = conveyor.signin.setup_workspace(token)
    error: tuple[str, str] | None = None
    if workspace is None:
        return await setup_page(request, None)
    if password != confirm:
        error = ("confirm", "The two passwords differ.")
    else:
        try:
            session = conveyor.signin.finish_setup(token, name, email, password)
        except ConveyorError as exc:
            error = (getattr(exc, "field", "") or "", getattr(exc, "reason", exc.detail))
        else:
            response = redirect(f"{base()}/", f"Welcome, {session.member.name}.")
            set_session_cookie(request, response, session.token)
            return response
    form_token = signin_token(request)
    response = render(
        request,
        "setup.html",
        status=422,
        title="Create the first owner",
        setup_workspace=workspace.name,
        token=token,
        form_token=form_token,
        values={"name": name, "email": email},
        error=error,
    )
    keep_signin_token(request, response, form_token)
    return response
