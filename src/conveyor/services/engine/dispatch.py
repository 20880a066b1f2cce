"""The engine's side of the event log: triggers enroll contacts, events wake the runs waiting
for them, and double opt-in requests become confirmation emails."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.domain.automations.triggers import TriggerIndex, trigger_properties
from conveyor.services.conditions import ConditionContext
from conveyor.services.engine.tick import Tick


def on_events(tick: Tick, rows: list[Any], index: TriggerIndex[int]) -> None:
    """Each event in log order: enroll where it triggers and wake the contact's runs that wait
    for it; then advance them all. A run entered by an earlier event of the batch advances before
    a later event triggers its automation again, so that event meets the run where it really is
    (finished, or inside), while entries of one moment into different automations all enter
    before any runs (so a higher priority still preempts a lower one that came first)."""
    tick.load({row.contact_id for row in rows})
    for event in rows:
        if event.contact_id not in tick.facts:
            continue
        props = event.properties or {}
        for automation_id, _ in index.matching(event.name, props):
            if tick.pending(event.contact_id, automation_id):
                tick.drain()
            trigger = trigger_properties(event.name, event.kind, props)
            tick.enroll(
                automation_id,
                event.contact_id,
                trigger,
                source=event.name,
                request_id=event.request_id,
            )
        if from_engine(event):
            continue  # the tick that wrote it woke what it concerns
        for run in list(tick.inside.get(event.contact_id, ())):
            if run.status != "active" or run.new or id(run) in tick.planned:
                continue
            if tick.watches(run, event.name, props):
                tick.plan(run)
    tick.settle()


def confirmation_requests(
    ctx: ConditionContext, rows: list[Any], now: datetime
) -> list[dict[str, Any]]:
    """The double opt-in email for each `list.confirmation_requested`: transactional (it goes
    to people not yet subscribed), once per request (keyed by the event)."""
    lists = {row.key: row for row in ctx.list_rows}
    out = []
    for event in rows:
        if event.name != "list.confirmation_requested":
            continue
        found = lists.get((event.properties or {}).get("list"))
        if found is None:
            continue
        out.append(
            {
                "workspace_id": event.workspace_id,
                "channel": "email",
                "template": f"confirm-{found.key}",
                "contact_id": event.contact_id,
                "run_id": None,
                "node": None,
                "message_class": "transactional",
                "payload": {"config": {"confirm_list": found.id}, "trigger": {"list": found.key}},
                "idempotency_key": f"confirm:{event.id}",
                "status": "pending",
                "created_at": now,
                "send_after": now,
            }
        )
    return out


def from_engine(event: Any) -> bool:
    """Written by an engine tick (whose `settle` already woke the runs it concerns)."""
    return event.kind == "system" and event.source == "automation"
