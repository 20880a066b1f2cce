"""The ASGI application: routers, problem+json errors, body limits, CORS for browser SDKs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from conveyor import __version__
from conveyor.api import contract, problems
from conveyor.api.limits import BodyLimit
from conveyor.api.observe import Observe
from conveyor.api.routes import (
    automations,
    bulk_jobs,
    campaigns,
    catalog,
    contacts,
    deals,
    deliverability,
    experiments,
    links,
    live_edits,
    messages,
    ops,
    pipelines,
    policies,
    public,
    reports,
    scoring,
    segments,
    simulations,
    site,
    tasks,
    team,
    templates,
    tracking,
    workspace,
    workspace_code,
)
from conveyor.bootstrap import Conveyor
from conveyor.web import install as install_panel

DESCRIPTION = """Conveyor's HTTP API.

Send `Authorization: Bearer KEY`. **Admin** keys reach every endpoint of their workspace;
**write** keys only the Segment-compatible tracking endpoints under `/v1` (which also take
Basic auth with the key as username, or `writeKey` in the body). Errors are RFC 9457
`application/problem+json` documents naming the bad `field`.
"""


def create_app(conveyor: Conveyor) -> FastAPI:
    # /docs and /redoc from assets shipped in a Python package (fastapi-offline: Swagger UI 5 and
    # ReDoc 2), not a CDN: the API reference works on a server without internet access.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="Conveyor",
        version=__version__,
        description=DESCRIPTION,
        generate_unique_id_function=contract.unique_id,
    )
    app.state.conveyor = conveyor
    problems.install(app)
    contract.install(app)
    for router in (
        tracking.router,
        tracking.short_router,
        contacts.router,
        catalog.router,
        segments.router,
        simulations.router,  # before automations: /automations/simulate is not a key
        scoring.router,
        experiments.router,
        deliverability.router,
        automations.router,
        templates.router,
        messages.router,
        policies.router,
        workspace.router,
        workspace_code.router,
        public.router,
        links.router,
        site.router,
        team.router,
        pipelines.router,
        deals.router,
        tasks.router,
        ops.router,
        campaigns.router,
        bulk_jobs.router,
        reports.router,
        live_edits.router,
    ):
        app.include_router(router)
    install_panel(app, conveyor)  # the panel, at /app (`/` leads there)
    settings = conveyor.settings
    # Browsers send tracking calls from customers' own sites; keys, not cookies, authenticate.
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
    )
    app.add_middleware(
        BodyLimit,
        default=settings.max_request_bytes,
        per_path={"/contacts/import": settings.max_import_bytes},
        streamed=frozenset({"/contacts/import"}),
    )
    app.add_middleware(Observe)  # outermost: sees every answer, gives each request its id
    return app
