"""Date triggers: contacts whose day it is (their local day, at their local time) enter.

The one kind of trigger that looks back: a contact whose day it is enters even if the
automation was activated later that day. Each occurrence enrolls once.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from conveyor.domain.automations.triggers import falls_today
from conveyor.services.engine.tick import Tick


def sweep(tick: Tick, automation_ids: list[int]) -> int:
    """Enroll today's contacts into these automations (active, with date triggers)."""
    now, ctx, entered = tick.now, tick.ctx, 0
    for automation_id in automation_ids:
        row = tick.rows[automation_id]
        automation = tick.automation(row.id, row.version)
        for trigger in automation.triggers:
            if trigger.date is None or trigger.date.field not in ctx.fields:
                continue
            people = tick.tx.audiences.members(ctx.scope(now), falls_today(trigger.date))
            recent = tick.tx.automations.recent_triggers(
                row.id, [p.id for p in people], now - timedelta(days=2)
            )
            for person in people:
                local = now.astimezone(ZoneInfo(person.timezone or ctx.timezone))
                if local.strftime("%H:%M") < trigger.date.at:
                    continue
                occurrence = {"date": local.date().isoformat(), "field": trigger.date.field}
                if (person.id, occurrence["date"]) in recent:
                    continue
                recent.add((person.id, occurrence["date"]))
                decision = tick.enroll(row.id, person.id, occurrence, source="date")
                entered += decision.outcome == "enter"
                tick.drain()
    tick.settle()
    return entered
