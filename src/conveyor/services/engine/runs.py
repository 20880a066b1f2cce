"""A run as the shell holds it during a tick: loaded or new, changed in memory, written once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.domain.automations import Send


@dataclass(eq=False)
class LiveRun:
    id: int | None  # None until the tick's flush stores a run entered in this tick
    automation_id: int
    version: int
    contact_id: int
    status: str  # queued | active | finished
    node: str | None
    state: dict[str, Any]
    wake_at: datetime | None
    steps: int
    trigger: dict[str, Any]
    entered_at: datetime
    outcome: str | None = None
    finished_at: datetime | None = None
    new: bool = False
    changed: bool = False
    advanced: int = 0  # times advanced in this tick
    request_id: str | None = None  # the HTTP request whose event started it

    @classmethod
    def from_row(cls, row: Any) -> LiveRun:
        return cls(
            id=row.id,
            automation_id=row.automation_id,
            version=row.version,
            contact_id=row.contact_id,
            status=row.status,
            node=row.node,
            state=dict(row.state or {}),
            wake_at=row.wake_at,
            steps=row.steps,
            trigger=dict(row.trigger or {}),
            entered_at=row.entered_at,
            outcome=row.outcome,
            finished_at=row.finished_at,
            request_id=row.request_id,
        )

    def finish(self, outcome: str, now: datetime) -> None:
        self.status, self.outcome, self.finished_at = "finished", outcome, now
        self.wake_at, self.state, self.changed = None, {}, True

    def columns(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "node": self.node,
            "state": self.state,
            "wake_at": self.wake_at,
            "steps": self.steps,
            "outcome": self.outcome,
            "entered_at": self.entered_at,
            "finished_at": self.finished_at,
        }

    def message(self, send: Send, node: str, now: datetime, priority: int) -> dict[str, Any]:
        """The outbox row a send step of this run makes (its id and key come at flush)."""
        return {
            "channel": send.channel,
            "template": send.template,
            "contact_id": self.contact_id,
            "automation_id": self.automation_id,
            "version": self.version,
            "node": node,
            "message_class": send.message_class,
            "payload": {"config": send.config, "trigger": self.trigger},
            "status": "pending",
            "created_at": now,
            "send_after": now,
            "priority": priority,
            "request_id": self.request_id,
        }

    def insert_row(self, workspace_id: int) -> dict[str, Any]:
        return {
            "workspace_id": workspace_id,
            "automation_id": self.automation_id,
            "version": self.version,
            "contact_id": self.contact_id,
            "trigger": self.trigger,
            "request_id": self.request_id,
            **self.columns(),
        }
