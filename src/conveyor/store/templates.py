"""SQL for message templates and their versions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.store.records import CurrentTemplate, TemplateRecord, TemplateVersionRecord
from conveyor.store.schema import template_versions, templates


class TemplateQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self, workspace_id: int) -> list[TemplateRecord]:
        return [
            TemplateRecord.from_row(row)
            for row in self.conn.execute(
                select(templates)
                .where(templates.c.workspace_id == workspace_id)
                .order_by(templates.c.key)
            )
        ]

    def by_key(self, workspace_id: int, key: str) -> TemplateRecord | None:
        row = self.conn.execute(
            select(templates).where(
                templates.c.workspace_id == workspace_id, templates.c.key == key
            )
        ).first()
        return TemplateRecord.from_row(row) if row is not None else None

    def current(self, workspace_id: int, keys: Iterable[str]) -> dict[str, CurrentTemplate]:
        """The templates named, each with its current version's content (`content`)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        stmt = (
            select(templates, template_versions.c.content)
            .join(
                template_versions,
                and_(
                    template_versions.c.template_id == templates.c.id,
                    template_versions.c.version == templates.c.version,
                ),
            )
            .where(templates.c.workspace_id == workspace_id, templates.c.key.in_(wanted))
        )
        return {row.key: CurrentTemplate.from_row(row) for row in self.conn.execute(stmt)}

    def add(self, workspace_id: int, key: str, channel: str, name: str, now: datetime) -> int:
        return self.conn.execute(
            insert(templates)
            .values(
                workspace_id=workspace_id,
                key=key,
                channel=channel,
                name=name,
                version=0,
                created_at=now,
                updated_at=now,
            )
            .returning(templates.c.id)
        ).scalar_one()

    def add_version(
        self, template_id: int, version: int, content: dict[str, Any], now: datetime
    ) -> None:
        self.conn.execute(
            insert(template_versions).values(
                template_id=template_id, version=version, content=content, created_at=now
            )
        )
        self.conn.execute(
            update(templates)
            .where(templates.c.id == template_id)
            .values(version=version, updated_at=now)
        )

    def rename(self, template_id: int, name: str, now: datetime) -> None:
        self.conn.execute(
            update(templates).where(templates.c.id == template_id).values(name=name, updated_at=now)
        )

    def version(self, template_id: int, version: int) -> TemplateVersionRecord | None:
        row = self.conn.execute(
            select(template_versions).where(
                template_versions.c.template_id == template_id,
                template_versions.c.version == version,
            )
        ).first()
        return TemplateVersionRecord.from_row(row) if row is not None else None

    def versions(self, template_id: int) -> list[TemplateVersionRecord]:
        return [
            TemplateVersionRecord.from_row(row)
            for row in self.conn.execute(
                select(template_versions)
                .where(template_versions.c.template_id == template_id)
                .order_by(template_versions.c.version)
            )
        ]

    def delete(self, template_id: int) -> None:
        self.conn.execute(delete(templates).where(templates.c.id == template_id))
