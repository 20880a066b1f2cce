"""The CRM board: each pipeline as columns of its open deals, a deal moved to another stage
(drag and drop, or a select and a button that work without JavaScript) — the CRM service's
`update_deal`, the same call as `PATCH /deals/{id}`, which logs `deal.stage_changed` — and the
pipeline's forecast (open and probability-weighted value per stage)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError
from conveyor.domain.permissions import Action
from conveyor.services.signin import SignedIn
from conveyor.web.pages import base, redirect, render
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/crm")
Member = Annotated[SignedIn, Depends(signed_in)]


@router.get("")
async def crm_home(request: Request, member: Member) -> Response:
    pipelines = conveyor_of(request).crm.pipelines(member.workspace)
    if pipelines:
        return redirect(f"{base()}/crm/{pipelines[0]['key']}")
    return render(request, "crm/board.html", member, section="crm", title="CRM", pipelines=[])


@router.get("/{key}")
async def board(request: Request, member: Member, key: str) -> Response:
    crm = conveyor_of(request).crm
    ws = member.workspace
    board = crm.board(ws, key)
    order = {column["stage"]: i for i, column in enumerate(board["stages"])}
    forecast = sorted(
        (row for row in crm.forecast(ws, key)["stage"] if row["pipeline"] == key),
        key=lambda row: (order.get(row["stage"], len(order)), row["currency"]),
    )
    contacts = conveyor_of(request).contacts
    ids = {deal["contact_id"] for column in board["stages"] for deal in column["deals"]}
    names = {}
    for contact_id in sorted(ids)[:500]:
        c = contacts.get(ws, contact_id)
        full = " ".join(p for p in (c.first_name, c.last_name) if p)
        names[contact_id] = full or c.email or c.external_id or f"Contact {contact_id}"
    owners = {m["id"]: m["name"] or m["email"] for m in crm.members(ws)}
    return render(
        request,
        "crm/board.html",
        member,
        section="crm",
        title=f"{board['name']} pipeline",
        pipelines=crm.pipelines(ws),
        board=board,
        stages=[column["stage"] for column in board["stages"]],
        forecast=forecast,
        owners=owners,
        names=names,
    )


@router.post("/{key}/deals/{deal_id}/stage")
async def move(
    request: Request,
    key: str,
    deal_id: Annotated[int, Path(ge=1, le=2**62)],
    stage: Annotated[str, Form()] = "",
) -> Response:
    member = await acting(request, Action.EDIT_CRM)
    crm = conveyor_of(request).crm
    back = f"{base()}/crm/{key}"
    try:
        deal = crm.deal(member.workspace, deal_id)
        if deal["stage"] == stage:
            return redirect(back, f"“{deal['title']}” is already in {stage}.")
        moved = crm.update_deal(member.workspace, deal_id, {"stage": stage})
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(back, exc.detail, failed=True)
    return redirect(back, f"“{moved['title']}” moved to {moved['stage']}.")
