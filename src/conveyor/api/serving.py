"""What each API process of `conveyor serve --api-workers N` imports: uvicorn starts N processes
that build their own app (`app`, a factory) and HTTP protocol (`HttpProtocol`) from the same
CONVEYOR_* settings as the parent, which has already migrated the database."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from conveyor import logs
from conveyor.api.app import create_app
from conveyor.api.headers import http_protocol
from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings

_settings = Settings()
HttpProtocol: Any = http_protocol(_settings.max_header_bytes, _settings.max_header_fields)


def app() -> FastAPI:
    logs.configure()
    return create_app(bootstrap(Settings()))


def protocol_option() -> str:
    """uvicorn's `http` option for the API processes: this module's protocol, or h11."""
    return "h11" if isinstance(HttpProtocol, str) else f"{__name__}:HttpProtocol"
