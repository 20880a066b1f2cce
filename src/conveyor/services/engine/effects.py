"""The effects of a run's steps, carried out in the tick's transaction: messages queued, the
contact, deals and the log changed, other automations entered or ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.domain.automations import (
    Automation,
    ContactChange,
    CrmChange,
    EndOther,
    Enroll,
    Record,
    Send,
)
from conveyor.domain.automations.run import Done
from conveyor.domain.errors import InvalidInput
from conveyor.services.crm import effects as crm_effects
from conveyor.services.engine.runs import LiveRun

if TYPE_CHECKING:
    from conveyor.services.engine.tick import Tick


def carry_out(tick: Tick, run: LiveRun, automation: Automation, done: Done) -> None:
    """Do what one effect of a step says: queue a message, change the contact, a deal, the
    log, or another automation's runs. An effect that fails its checks is a failed step."""
    effect = done.effect
    if isinstance(effect, Send):
        if effect.channel == "team":
            try:
                effect = crm_effects.team_recipients(tick.crm, run.contact_id, run.trigger, effect)
            except InvalidInput as exc:
                tick.step(run, done.node, "failed", {"why": exc.detail, "field": exc.field})
                return
        message = run.message(effect, done.node, tick.now, automation.level)
        tick.messages.append((run, done.step, {**message, "workspace_id": tick.workspace.id}))
    elif isinstance(effect, ContactChange):
        try:
            state = tick.writer.by_id(run.contact_id)
            if state is not None:
                tick.writer.apply_change(state, effect)
        except InvalidInput as exc:
            tick.step(run, done.node, "failed", {"why": exc.detail})
    elif isinstance(effect, CrmChange):
        # A change that fails its checks writes no deal, task or note (only a round-robin
        # turn it took may stay taken).
        try:
            crm_effects.apply(tick.crm, run.contact_id, effect)
        except InvalidInput as exc:
            tick.step(run, done.node, "failed", {"why": exc.detail, "field": exc.field})
    elif isinstance(effect, Record):
        tick.record(run.contact_id, effect.name, effect.properties)
    elif isinstance(effect, Enroll):
        row = tick.by_key.get(effect.automation)
        if row is not None and row.status == "active":
            source = f"automation {automation.key}"
            tick.enroll(
                row.id, run.contact_id, run.trigger, source=source, request_id=run.request_id
            )
    elif isinstance(effect, EndOther):
        row = tick.by_key.get(effect.automation)
        for other in list(tick.inside.get(run.contact_id, ())):
            if row is not None and other.automation_id == row.id:
                tick.finish(other, "ended")
