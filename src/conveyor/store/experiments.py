"""SQL for split tests: who took which path, the events that count, the stored decisions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from conveyor.store.records import ExperimentRecord, LoggedEvent, PathStep
from conveyor.store.schema import events, experiments, steps, workspaces


class ExperimentQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self, workspace_id: int, automation_id: int | None = None) -> list[ExperimentRecord]:
        stmt = select(experiments).where(experiments.c.workspace_id == workspace_id)
        if automation_id is not None:
            stmt = stmt.where(experiments.c.automation_id == automation_id)
        return [
            ExperimentRecord.from_row(r) for r in self.conn.execute(stmt.order_by(experiments.c.id))
        ]

    def winners(self, workspace_id: int) -> dict[int, dict[str, str]]:
        """Per automation id: node → the winning path of each decided split test."""
        out: dict[int, dict[str, str]] = {}
        for automation_id, node, winner in self.conn.execute(
            select(experiments.c.automation_id, experiments.c.node, experiments.c.winner).where(
                experiments.c.workspace_id == workspace_id,
                experiments.c.status == "decided",
                experiments.c.winner.is_not(None),
            )
        ):
            out.setdefault(automation_id, {})[node] = winner
        return out

    def path_steps(self, automation_id: int, node: str, paths: Iterable[str]) -> list[PathStep]:
        """Every contact that took one of this split's paths, when (all versions)."""
        return [
            PathStep.from_row(r)
            for r in self.conn.execute(
                select(steps.c.run_id, steps.c.contact_id, steps.c.outcome, steps.c.at)
                .where(
                    steps.c.automation_id == automation_id,
                    steps.c.node == node,
                    steps.c.outcome.in_(list(paths)),
                )
                .order_by(steps.c.id)
            )
        ]

    def events_named(
        self, workspace_id: int, names: Iterable[str], since: datetime
    ) -> list[LoggedEvent]:
        """The workspace's events of these names since `since` (the log's name/time index)."""
        return [
            LoggedEvent.from_row(r)
            for r in self.conn.execute(
                select(events.c.contact_id, events.c.name, events.c.properties, events.c.timestamp)
                .where(
                    events.c.workspace_id == workspace_id,
                    events.c.name.in_(list(names)),
                    events.c.timestamp >= since,
                )
                .order_by(events.c.id)
            )
        ]

    def save(
        self, workspace_id: int, automation_id: int, node: str, values: dict[str, Any]
    ) -> None:
        """Insert or update the test's row (the caller's transaction holds SQLite's writer
        lock; on PostgreSQL the unique key makes a racing insert fail and the transaction
        retry). A new winner moves the workspace's catalog version: kept contexts re-read it."""
        found = self.conn.execute(
            update(experiments)
            .where(experiments.c.automation_id == automation_id, experiments.c.node == node)
            .values(**values)
        ).rowcount
        if not found:
            self.conn.execute(
                insert(experiments).values(
                    workspace_id=workspace_id, automation_id=automation_id, node=node, **values
                )
            )
        if values.get("winner") is not None:
            self.conn.execute(
                update(workspaces)
                .where(workspaces.c.id == workspace_id)
                .values(catalog_version=workspaces.c.catalog_version + 1)
            )
