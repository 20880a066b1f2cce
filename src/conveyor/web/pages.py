"""Rendering a page of the panel: the Jinja2 environment, the frame's context, flash messages."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from conveyor.domain.permissions import Action, can
from conveyor.services.signin import SignedIn

STATIC = Path(__file__).parent / "static"
FLASH = "conveyor_flash"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # Only the panel's own script and stylesheet run; no page can be framed (clickjacking on
    # Activate or Archive), and forms post only here.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# The sections with pages so far: the navigation shows these (the rest when they are built).
SECTIONS = frozenset(
    {"automations", "contacts", "segments", "messages", "crm", "settings", "reports"}
    | {"campaigns", "templates"}
)
NAV = (
    ("automations", "Automations"),
    ("contacts", "Contacts"),
    ("segments", "Segments"),
    ("campaigns", "Campaigns"),
    ("messages", "Messages"),
    ("templates", "Templates"),
    ("reports", "Reports"),
    ("crm", "CRM"),
    ("settings", "Settings"),
)


@cache
def asset_version(name: str) -> str:
    """A content hash in the asset's URL, so browsers cache it for good and never stale."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def _number(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _reason(value: Any) -> str:
    """A step's reason in one line: its `why`, or its facts."""
    if not isinstance(value, dict):
        return str(value)
    if isinstance(value.get("why"), str):
        return value["why"]
    parts = []
    for key, item in value.items():
        if item is None:  # "assignee: null" says nothing
            continue
        if isinstance(item, datetime):
            text = _when(item)
        else:
            text = item if isinstance(item, str) else json.dumps(item, default=str)
        parts.append(f"{key}: {text}")
    return "; ".join(parts)[:500]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _subscribed(lists: dict[str, str]) -> list[str]:
    return [key for key, status in sorted(lists.items()) if status == "subscribed"]


def _query(search: Any, **extra: str) -> str:
    """A search's query string (empty parts left out), with e.g. the next page's cursor."""
    given = {k: getattr(search, k) for k in ("q", "tag", "list", "segment", "within")} | extra
    return urlencode({k: v for k, v in given.items() if v and (k, v) != ("within", "any")})


def _money(value: Any) -> str:
    """An amount in major units with thousands separators ("12,500.00")."""
    try:
        return f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return str(value)


def _query_of(**given: Any) -> str:
    """A query string of the given parts that are set."""
    return urlencode({k: v for k, v in given.items() if v})


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("conveyor.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when, number=_number, percent=_percent, reason=_reason, select_subscribed=_subscribed
    )
    env.globals.update(asset=lambda name: f"{base()}/static/{name}?v={asset_version(name)}")
    from conveyor.web.drawing import describe

    env.globals.update(describe=describe, query=_query, query_of=_query_of)
    env.filters.update(money=_money)
    env.globals.update(base=base, can=can, Action=Action, nav=NAV, sections=SECTIONS)
    return env


def base() -> str:
    from conveyor.web import PREFIX

    return PREFIX


def render(
    request: Request,
    template: str,
    member: SignedIn | None = None,
    *,
    status: int = 200,
    section: str | None = None,
    **context: Any,
) -> HTMLResponse:
    flash = unquote(request.cookies.get(FLASH, ""))
    failed = flash.startswith("!")
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            member=member,
            workspace=member.workspace if member else None,
            csrf=member.csrf if member else None,
            section=section,
            flash=(flash[1:] if failed else flash)[:300] if flash else None,
            flash_failed=failed,
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status)
    if flash:
        response.delete_cookie(FLASH, path=base())
    # Pages show one workspace's data: never kept by a shared cache, never framed by a stranger.
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(to: str, flash: str | None = None, *, failed: bool = False) -> RedirectResponse:
    """Post/Redirect/Get: after an action, a 303 to a page, with a message shown there once
    (`failed`: as an error)."""
    response = RedirectResponse(to, status_code=303)
    if flash:
        text = quote(("!" if failed else "") + flash[:300])
        response.set_cookie(FLASH, text, path=base(), httponly=True, samesite="lax")
    return response


def signin_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{base()}/signin?next={quote(here, safe='')}"


def diff_rows(lines: Iterable[str]) -> list[tuple[str, str]]:
    """A unified diff's lines, each with its kind (meta, added, removed, same) for the diff views
    (versions of automations and templates, the builder's review, a live edit's review)."""
    return [
        (
            "meta"
            if line.startswith(("---", "+++", "@@"))
            else {"+": "added", "-": "removed"}.get(line[:1], "same"),
            line,
        )
        for line in lines
    ]


def unified_rows(
    before: list[str], after: list[str], before_name: str, after_name: str
) -> list[tuple[str, str]]:
    """The rows of the line difference between two texts (as lists of lines)."""
    return diff_rows(difflib.unified_diff(before, after, before_name, after_name, lineterm=""))
