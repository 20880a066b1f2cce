"""SQL behind the panel's automation pages: 30-day entries and conversions of a workspace's
automations, and the recent steps of one node with the contacts they were for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, case, func, select

from conveyor.store.records import NodeStepRecord
from conveyor.store.schema import contacts, runs, steps


class AutomationStatsQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def window(self, workspace_id: int, since: datetime) -> dict[int, tuple[int, int, int]]:
        """Per automation id: (runs entered since `since`, runs active now, runs entered since
        `since` that reached a goal). One pass over the workspace's runs."""
        recent = runs.c.entered_at >= since
        stmt = (
            select(
                runs.c.automation_id,
                func.sum(case((recent, 1), else_=0)),
                func.sum(case((runs.c.status == "active", 1), else_=0)),
                func.sum(case(((recent) & (runs.c.outcome == "goal_reached"), 1), else_=0)),
            )
            .where(runs.c.workspace_id == workspace_id)
            .group_by(runs.c.automation_id)
        )
        return {
            row[0]: (int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
            for row in self.conn.execute(stmt)
        }

    def node_steps(self, automation_id: int, node: str, limit: int) -> list[NodeStepRecord]:
        """The newest steps of one node, with the contact each was for."""
        stmt = (
            select(
                steps.c.id,
                steps.c.contact_id,
                steps.c.outcome,
                steps.c.reason,
                steps.c.at,
                steps.c.version,
                contacts.c.email,
                contacts.c.first_name,
                contacts.c.last_name,
            )
            .join(contacts, contacts.c.id == steps.c.contact_id, isouter=True)
            .where(steps.c.automation_id == automation_id, steps.c.node == node)
            .order_by(steps.c.id.desc())
            .limit(limit)
        )
        return [NodeStepRecord.from_row(r) for r in self.conn.execute(stmt)]
