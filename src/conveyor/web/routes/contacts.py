"""Contacts: search (email, name, external id, tag, list, segment) in keyset pages, and a
contact's profile — fields, tags, lists, scores explained, deals, tasks — and its timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.services.contact_views import Search
from conveyor.services.signin import SignedIn
from conveyor.web.pages import render
from conveyor.web.session import conveyor_of, signed_in

router = APIRouter(prefix="/contacts")
Member = Annotated[SignedIn, Depends(signed_in)]


@router.get("")
async def contact_list(
    request: Request,
    member: Member,
    q: str = "",
    tag: str = "",
    list: str = "",  # noqa: A002 (the query parameter's name)
    segment: str = "",
    within: str = "any",
    cursor: str | None = None,
) -> Response:
    views = conveyor_of(request).contact_views
    search = Search(q, tag, list, segment, within)
    found, more, matched = views.search(member.workspace, search, cursor)
    return render(
        request,
        "contacts/list.html",
        member,
        section="contacts",
        title="Contacts",
        search=search,
        choices=views.choices(member.workspace),
        contacts=found,
        more=more,
        paged=cursor is not None,
        matched=matched,
    )


@router.get("/{contact_id}")
async def contact_page(
    request: Request, member: Member, contact_id: int, cursor: str | None = None
) -> Response:
    conveyor = conveyor_of(request)
    ws = member.workspace
    contact = conveyor.contacts.get(ws, contact_id)
    timeline, more = conveyor.contact_views.timeline(ws, contact_id, cursor)
    return render(
        request,
        "contacts/profile.html",
        member,
        section="contacts",
        title=_name(contact),
        contact=contact,
        display_name=_name(contact),
        owner=conveyor.crm.owner(ws, contact_id),
        scores=conveyor.scoring.explain(ws, contact_id)["scores"],
        deals=conveyor.crm.deals(ws, contact_id=contact_id),
        tasks=conveyor.tasks.all(ws, contact_id=contact_id),
        timeline=timeline,
        more=more,
        paged=cursor is not None,
    )


def _name(contact) -> str:  # type: ignore[no-untyped-def]
    full = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    return full or contact.email or contact.external_id or f"Contact {contact.id}"
