"""SQL for the builder's drafts: unfinished automation definitions, one row each, per workspace."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from conveyor.store.records import AutomationDraftRecord
from conveyor.store.schema import automation_drafts as drafts


class AutomationDraftQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, workspace_id: int, key: str | None, name: str, source: str, now: datetime) -> int:
        result = self.conn.execute(
            insert(drafts)
            .values(
                workspace_id=workspace_id,
                automation_key=key,
                name=name,
                source=source,
                created_at=now,
                updated_at=now,
            )
            .returning(drafts.c.id)
        )
        return int(result.scalar_one())

    def change(
        self,
        workspace_id: int,
        draft_id: int,
        key: str | None,
        name: str,
        source: str,
        now: datetime,
    ) -> bool:
        """Compare-and-set on the workspace: another workspace's id changes nothing."""
        result = self.conn.execute(
            update(drafts)
            .where(drafts.c.id == draft_id, drafts.c.workspace_id == workspace_id)
            .values(automation_key=key, name=name, source=source, updated_at=now)
        )
        return result.rowcount == 1

    def get(self, workspace_id: int, draft_id: int) -> AutomationDraftRecord | None:
        row = self.conn.execute(
            select(drafts).where(drafts.c.id == draft_id, drafts.c.workspace_id == workspace_id)
        ).first()
        return AutomationDraftRecord.from_row(row) if row else None

    def all(self, workspace_id: int, key: str | None = None) -> list[AutomationDraftRecord]:
        """Newest first; with `key`, only the drafts of that automation."""
        stmt = select(drafts).where(drafts.c.workspace_id == workspace_id)
        if key is not None:
            stmt = stmt.where(drafts.c.automation_key == key)
        rows = self.conn.execute(stmt.order_by(drafts.c.updated_at.desc(), drafts.c.id.desc()))
        return [AutomationDraftRecord.from_row(r) for r in rows]

    def remove(self, workspace_id: int, draft_id: int) -> bool:
        result = self.conn.execute(
            delete(drafts).where(drafts.c.id == draft_id, drafts.c.workspace_id == workspace_id)
        )
        return result.rowcount == 1
