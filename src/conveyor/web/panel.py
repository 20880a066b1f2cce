"""The panel's ASGI app (mounted at /app): its routes, static files, and error pages shown in
the frame — a 404 or 403 is a page of the panel, not a JSON document."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from conveyor.bootstrap import Conveyor
from conveyor.domain.errors import ConveyorError
from conveyor.web.pages import STATIC, redirect, render, signin_url
from conveyor.web.routes import (
    automations,
    builder,
    campaigns,
    contacts,
    crm,
    live_edits,
    messages,
    reports,
    segment_builder,
    segments,
    settings,
    signin,
    templates,
    trying,
)
from conveyor.web.session import COOKIE, SignInNeeded


def create_panel(conveyor: Conveyor) -> FastAPI:
    panel = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    panel.state.conveyor = conveyor
    panel.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in (
        signin.router,
        automations.router,
        contacts.router,
        segment_builder.router,  # before segments: /segments/new is not a key
        segments.router,
        messages.router,
        crm.router,
        settings.router,
        reports.router,
        live_edits.router,
        builder.router,
        campaigns.router,
        templates.router,
        trying.router,
    ):
        panel.include_router(router)

    @panel.get("/", include_in_schema=False)
    async def home() -> Response:
        return redirect(f"{_base()}/automations")

    @panel.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, _exc: SignInNeeded) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "sign in again"}, status_code=401)
        response = redirect(signin_url(request) if request.method == "GET" else f"{_base()}/signin")
        if COOKIE in request.cookies:
            response.delete_cookie(COOKIE, path="/")
        return response

    @panel.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> Response:
        return _error_page(request, exc.status, exc.detail)

    @panel.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        details = {
            404: "There is no such page.",
            405: "This address answers a form's button, not a visit.",
        }
        detail = details.get(exc.status_code, str(exc.detail))
        return _error_page(request, exc.status_code, detail)

    @panel.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return _error_page(request, 400, f"{where}: {first.get('msg', 'is not valid')}")

    return panel


def _base() -> str:
    from conveyor.web import PREFIX

    return PREFIX


def _wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json") or "application/json" in request.headers.get(
        "accept", ""
    )


def _error_page(request: Request, status: int, detail: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": detail}, status_code=status)
    member = getattr(request.state, "member", None)
    if member is None:
        conveyor: Conveyor = request.app.state.conveyor
        member = conveyor.signin.session(request.cookies.get(COOKIE))
    titles = {
        400: "Not understood",
        403: "Not allowed",
        404: "Not found",
        405: "Not a page",
        409: "Conflict",
        422: "Not valid",
        429: "Too many requests",
    }
    return render(
        request,
        "error.html",
        member,
        status=status,
        title=titles.get(status, "Something is wrong"),
        status_code=status,
        detail=detail,
    )
