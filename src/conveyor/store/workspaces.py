"""SQL for workspaces and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from conveyor.store.records import ApiKeyRecord, LiveKey, WorkspaceRecord
from conveyor.store.schema import api_keys, applied_resources, workspaces


class WorkspaceQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def create(self, name: str, secret: str, settings: dict[str, Any], now: datetime) -> int:
        return self.conn.execute(
            insert(workspaces)
            .values(name=name, secret=secret, settings=settings, created_at=now)
            .returning(workspaces.c.id)
        ).scalar_one()

    def get(self, workspace_id: int) -> WorkspaceRecord | None:
        row = self.conn.execute(select(workspaces).where(workspaces.c.id == workspace_id)).first()
        return WorkspaceRecord.from_row(row) if row is not None else None

    def by_name(self, name: str) -> WorkspaceRecord | None:
        row = self.conn.execute(select(workspaces).where(workspaces.c.name == name)).first()
        return WorkspaceRecord.from_row(row) if row is not None else None

    def all(self) -> list[WorkspaceRecord]:
        return [
            WorkspaceRecord.from_row(row)
            for row in self.conn.execute(select(workspaces).order_by(workspaces.c.id))
        ]

    def count(self) -> int:
        return len(self.conn.execute(select(workspaces.c.id)).all())

    def set_settings(self, workspace_id: int, settings: dict[str, Any]) -> None:
        self.conn.execute(
            update(workspaces).where(workspaces.c.id == workspace_id).values(settings=settings)
        )

    # --- API keys -------------------------------------------------------------------------

    def add_key(
        self, workspace_id: int, kind: str, name: str, prefix: str, key_hash: str, now: datetime
    ) -> int:
        return self.conn.execute(
            insert(api_keys)
            .values(
                workspace_id=workspace_id,
                kind=kind,
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                created_at=now,
            )
            .returning(api_keys.c.id)
        ).scalar_one()

    def key_by_hash(self, key_hash: str) -> LiveKey | None:
        """The live key with this hash, with its workspace."""
        row = self.conn.execute(
            select(api_keys.c.id.label("key_id"), api_keys.c.kind, workspaces)
            .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        ).first()
        return LiveKey.from_row(row) if row is not None else None

    def keys(self, workspace_id: int) -> list[ApiKeyRecord]:
        return [
            ApiKeyRecord.from_row(row)
            for row in self.conn.execute(
                select(api_keys)
                .where(api_keys.c.workspace_id == workspace_id)
                .order_by(api_keys.c.id)
            )
        ]

    def key(self, workspace_id: int, key_id: int) -> ApiKeyRecord | None:
        row = self.conn.execute(
            select(api_keys).where(api_keys.c.workspace_id == workspace_id, api_keys.c.id == key_id)
        ).first()
        return ApiKeyRecord.from_row(row) if row is not None else None

    def revoke_key(self, workspace_id: int, key_id: int, now: datetime) -> bool:
        """Compare-and-set: False when the key does not exist here or was already revoked."""
        result = self.conn.execute(
            update(api_keys)
            .where(
                api_keys.c.workspace_id == workspace_id,
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return result.rowcount == 1

    # --- workspace as code: what a folder last applied ----------------------------------------

    def applied(self, workspace_id: int) -> dict[tuple[str, str], str]:
        """(kind, key) → the digest `apply DIR` recorded for it."""
        rows = self.conn.execute(
            select(
                applied_resources.c.kind, applied_resources.c.key, applied_resources.c.digest
            ).where(applied_resources.c.workspace_id == workspace_id)
        )
        return {(row.kind, row.key): row.digest for row in rows}

    def record_applied(
        self, workspace_id: int, rows: list[tuple[str, str, str, str | None]], now: datetime
    ) -> None:
        """Replace the record with these (kind, key, digest, source) rows."""
        self.conn.execute(
            delete(applied_resources).where(applied_resources.c.workspace_id == workspace_id)
        )
        if rows:
            self.conn.execute(
                insert(applied_resources),
                [
                    {
                        "workspace_id": workspace_id,
                        "kind": kind,
                        "key": key,
                        "digest": digest,
                        "source": source,
                        "applied_at": now,
                    }
                    for kind, key, digest, source in rows
                ],
            )
