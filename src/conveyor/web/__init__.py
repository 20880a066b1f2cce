"""The marketer's panel: server-rendered pages (Jinja2) under /app, signed in with a session.

Adding a section: a module in `web/routes/` with an `APIRouter` (listed in `panel.py`), its key in
`pages.SECTIONS` (the navigation shows it), templates under `templates/<section>/` extending
`base.html`. A page takes `member: Annotated[SignedIn, Depends(signed_in)]` and calls
`render(request, template, member, section=..., title=...)`; an action is a POST that starts with
`member = await acting(request, Action.X)` (CSRF token, Origin and role checked) and ends with
`redirect(url, "what happened")` (Post/Redirect/Get). Pages call services only.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from conveyor.bootstrap import Conveyor

PREFIX = "/app"


def install(app: FastAPI, conveyor: Conveyor) -> None:
    """Mount the panel on the API's app at /app; `/` and `/ui` lead there."""
    from conveyor.web.panel import create_panel

    async def to_panel(_request: Request) -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    # Plain routes, not API routes: they are pages' addresses, not part of the HTTP API.
    for path in ("/", "/ui", "/ui/"):
        app.add_route(path, to_panel, include_in_schema=False)
    app.mount(PREFIX, create_panel(conveyor))
