"""RFC 9457 problem details: every error the API returns, in one shape, naming the bad field."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.domain.errors import ConveyorError, InvalidInput, Unauthorized

log = logging.getLogger("conveyor.api")
PROBLEM = "application/problem+json"


def problem(
    status: int, detail: str, *, slug: str | None = None, title: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer realm="conveyor"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def from_error(exc: ConveyorError, **extra: Any) -> JSONResponse:
    if isinstance(exc, InvalidInput):
        extra.setdefault("field", exc.field or None)
        extra.setdefault("errors", [e.as_dict() for e in exc.errors])
    elif getattr(exc, "field", None):
        extra.setdefault("field", exc.field)  # type: ignore[attr-defined]
    return problem(exc.status, exc.detail, slug=exc.slug, title=exc.title, **extra)


def _location_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "body"
        path = ".".join(loc[1:]) or where
        message = err.get("msg", "is invalid")
        if err.get("type") == "missing":
            message = "is required"
        elif err.get("type") == "extra_forbidden":
            message = "is not a known field"
        elif err.get("type") == "json_invalid":
            path, message = "body", "is not valid JSON"
        errors.append({"field": path, "in": where, "detail": message})
    return errors


def install(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def conveyor_error(_request: Request, exc: ConveyorError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _location_errors(exc)
        first = errors[0] if errors else {"field": "body", "detail": "is invalid"}
        return problem(
            422,
            f"{first['field']}: {first['detail']}",
            slug="invalid-input",
            title="Invalid input",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error happened; it has been logged")


__all__ = ["PROBLEM", "Unauthorized", "from_error", "install", "problem"]
