"""SQL for the deliverability guard: per-provider status rows, and what its rates are read from
(emails sent, hard bounces and complaints, with the recipient's address)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from conveyor.store.records import ProviderHealthRecord
from conveyor.store.schema import contacts, events, outbox, provider_health


class DeliverabilityQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def health(self, workspace_ids: Iterable[int]) -> dict[tuple[int, str], ProviderHealthRecord]:
        """Every stored provider row of these workspaces, by (workspace, provider)."""
        ids = list(workspace_ids)
        if not ids:
            return {}
        stmt = select(provider_health).where(provider_health.c.workspace_id.in_(ids))
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()  # the throttle counts are written in this transaction
        return {
            (r.workspace_id, r.provider): r
            for r in map(ProviderHealthRecord.from_row, self.conn.execute(stmt))
        }

    def save(self, workspace_id: int, provider: str, values: dict[str, Any]) -> None:
        found = self.conn.execute(
            update(provider_health)
            .where(
                provider_health.c.workspace_id == workspace_id,
                provider_health.c.provider == provider,
            )
            .values(**values)
        ).rowcount
        if not found:
            self.conn.execute(
                insert(provider_health).values(
                    workspace_id=workspace_id, provider=provider, **values
                )
            )

    def sent_to(self, workspace_id: int, since: datetime) -> list[tuple[str | None, datetime]]:
        """(recipient, sent_at) of every email sent since `since`."""
        return [
            (r.recipient, r.sent_at)
            for r in self.conn.execute(
                select(outbox.c.recipient, outbox.c.sent_at).where(
                    outbox.c.workspace_id == workspace_id,
                    outbox.c.channel == "email",
                    outbox.c.status == "sent",
                    outbox.c.sent_at >= since,
                )
            )
        ]

    def troubles(
        self, workspace_id: int, since: datetime
    ) -> list[tuple[str, dict[str, Any], datetime, str | None]]:
        """(name, properties, timestamp, the contact's email) of bounces and complaints."""
        return [
            (r.name, r.properties or {}, r.timestamp, r.email)
            for r in self.conn.execute(
                select(events.c.name, events.c.properties, events.c.timestamp, contacts.c.email)
                .select_from(events.outerjoin(contacts, contacts.c.id == events.c.contact_id))
                .where(
                    events.c.workspace_id == workspace_id,
                    events.c.name.in_(["email.bounced", "email.complained"]),
                    events.c.timestamp >= since,
                )
            )
        ]

    def release(self, workspace_id: int, reason_prefix: str, now: datetime) -> int:
        """Messages the guard held back with this reason: due now."""
        return self.conn.execute(
            update(outbox)
            .where(
                outbox.c.workspace_id == workspace_id,
                outbox.c.status == "pending",
                outbox.c.error.startswith(reason_prefix, autoescape=True),
            )
            .values(send_after=now)
        ).rowcount
