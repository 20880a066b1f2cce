"""Segments: the list with live counts (members now, decided in SQL), a segment's members in
keyset pages, and "why is this contact (not) in it" — the segments service's `explain`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.contacts import Contact
from conveyor.domain.errors import ConveyorError
from conveyor.services.signin import SignedIn
from conveyor.web.pages import render
from conveyor.web.session import conveyor_of, signed_in

router = APIRouter(prefix="/segments")
Member = Annotated[SignedIn, Depends(signed_in)]
PAGE = 50


@router.get("")
async def segment_list(request: Request, member: Member) -> Response:
    segments = conveyor_of(request).segments
    found = segments.all(member.workspace)
    rows = [(s, segments.count(member.workspace, s.key)) for s in found]
    return render(
        request, "segments/list.html", member, section="segments", title="Segments", rows=rows
    )


@router.get("/{key}")
async def segment_page(
    request: Request,
    member: Member,
    key: str,
    cursor: str | None = None,
    contact: str = "",
) -> Response:
    conveyor = conveyor_of(request)
    ws = member.workspace
    segment = conveyor.segments.get(ws, key)
    members, more = conveyor.segments.members(ws, key, cursor=cursor, limit=PAGE)
    verdict = who = None
    problem = ""
    if contact.strip():
        try:
            who = _find(request, member, contact.strip())
            verdict = conveyor.segments.explain(ws, who.id, key=key)
        except ConveyorError as exc:
            problem = exc.detail
    return render(
        request,
        "segments/segment.html",
        member,
        section="segments",
        title=segment.name,
        segment=segment,
        count=conveyor.segments.count(ws, key),
        members=members,
        more=more,
        paged=cursor is not None,
        contact=contact,
        who=who,
        verdict=verdict,
        problem=problem,
    )


def _find(request: Request, member: SignedIn, given: str) -> Contact:
    """A contact by id (digits), email (has @) or external id."""
    contacts = conveyor_of(request).contacts
    if given.isdigit() and len(given) < 16:
        return contacts.get(member.workspace, int(given))
    if "@" in given:
        return contacts.lookup(member.workspace, email=given)
    return contacts.lookup(member.workspace, external_id=given)
