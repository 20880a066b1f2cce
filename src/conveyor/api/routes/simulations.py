"""Try before you trust: backtest a draft on the workspace's history, forecast message pressure,
walk one contact through a draft. Read-only: nothing is written, nothing is sent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, ContactPath, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.simulate import Scope
from conveyor.services.simulate.inputs import SYNTHETIC_ID, injected, moment

router = APIRouter(tags=["simulations"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class BacktestIn(Strict):
    definition: dict[str, Any] | None = Field(
        default=None, description="the draft automation; none: only the active ones"
    )
    from_: str = Field(default="30d", alias="from", description="'30d', a date or a moment")
    to: str | None = Field(default=None, description="default: now")
    segment: str | None = Field(default=None, description="only its members at the start")
    sample: int | None = Field(default=None, ge=1, le=10_000_000)
    contact: int | None = Field(default=None, ge=1, le=MAX_ID, description="show its path")
    with_active: bool = Field(
        default=False, description="run every active automation too (their effects re-derived)"
    )


class ForecastIn(Strict):
    definition: dict[str, Any] | None = None
    days: int = Field(default=7, ge=1, le=90)


class TryIn(Strict):
    definition: dict[str, Any]
    events: list[dict[str, Any]] = Field(
        default_factory=list, description="[{at: '2 days', event: 'email.opened'}]"
    )
    days: int = Field(default=14, ge=1, le=365)


class TryMadeUpIn(TryIn):
    contact: dict[str, Any] = Field(
        description="{email, first_name, …, fields: {plan: pro}, tags: [vip], "
        "lists: {newsletter: subscribed}, score: 10}"
    )


@router.post("/automations/simulate")
def backtest(body: BacktestIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """Replay the period's events through the draft (and, if asked, the active automations) on a
    virtual clock: entries, node counts, goals, messages per day and per contact, and what the
    send policy would defer or skip, and why."""
    conveyor = conveyor_of(request)
    now = conveyor.clock.now()
    since = moment(body.from_, now, "from")
    until = moment(body.to, now, "to", default=now)
    watch = frozenset({body.contact}) if body.contact else frozenset()
    scope = Scope(body.definition, body.with_active, body.segment, body.sample, watch)
    report = conveyor.simulator.backtest(workspace, scope, since, until)
    return report.as_dict(body.contact)


@router.post("/automations/forecast")
def message_forecast(body: ForecastIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """Message pressure over the next `days` across the active automations (and the draft)."""
    report = conveyor_of(request).simulator.forecast(workspace, Scope(body.definition), body.days)
    return report.as_dict()


@router.post("/contacts/{contact_id}/simulate")
def try_contact(
    contact_id: ContactPath, body: TryIn, workspace: Admin, request: Request
) -> dict[str, Any]:
    """One contact through the draft, as it is now, with these events made to happen: each
    step with its reason, time skipping to each next timer."""
    events = injected(body.events)
    report = conveyor_of(request).simulator.try_contact(
        workspace, body.definition, contact_id, events, body.days
    )
    return report.as_dict(contact_id)


@router.post("/automations/try")
def try_made_up(body: TryMadeUpIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """A contact made up for the test (nothing stored) through the draft, with these events made
    to happen: each step with its reason. Its id in the report is -1."""
    events = injected(body.events)
    report = conveyor_of(request).simulator.try_contact(
        workspace, body.definition, body.contact, events, body.days
    )
    return report.as_dict(SYNTHETIC_ID)
