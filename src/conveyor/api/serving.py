"""What each API process of `conveyor serve --api-workers N` imports: uvicorn starts N processes
that build their own app (`app`, a factory) and HTTP protocol (`HttpProtocol`) from the same
CONVEYOR_* settings as the parent, which has already migrated the database."""

from __future__ import annotations

import gc
from typing import Any

from fastapi import FastAPI

from conveyor import logs
from conveyor.api.app import create_app
from conveyor.api.headers import http_protocol
from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings

# How long uvicorn's supervisor waits for a child's answer to its ping before it kills the child
# and starts another. Its default (5 s) is shorter than a child's start-up on a busy 2-core
# machine, which then never serves (cli/main.py, serve).
WORKER_HEALTHCHECK_SECONDS = 60

_settings = Settings()
HttpProtocol: Any = http_protocol(_settings.max_header_bytes, _settings.max_header_fields)


def app() -> FastAPI:
    logs.configure()
    made = create_app(bootstrap(Settings()))
    settle_heap()
    return made


def settle_heap() -> None:
    """Move what start-up built (modules, the app, SQLAlchemy's tables) out of the garbage
    collector's sight: a full collection then walks only what requests allocate. The ingest
    writer allocates a few dicts per call, so collections are frequent: ~12 % less CPU per
    event measured on the writer alone (README, Performance)."""
    gc.collect()
    gc.freeze()


def protocol_option() -> str:
    """uvicorn's `http` option for the API processes: this module's protocol, or h11."""
    return "h11" if isinstance(HttpProtocol, str) else f"{__name__}:HttpProtocol"
