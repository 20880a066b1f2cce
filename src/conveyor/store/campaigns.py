"""SQL for campaigns: their rows (state changes are compare-and-set), the audience frozen into
`campaign_recipients` and queued into the outbox set-based (INSERT … SELECT, never loaded into
Python), the withdrawal of queued messages on pause and cancel, and the campaign's counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    case,
    cast,
    distinct,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from conveyor.store.audiences import AudienceIds, audience_where
from conveyor.store.records import CampaignRecord
from conveyor.store.schema import (
    Json,
    UTCDateTime,
    campaign_recipients,
    campaigns,
    contacts,
    events,
    outbox,
)

# Outbox statuses a campaign's message can still be withdrawn from (not handed to delivery).
WITHDRAWABLE = ("pending", "held")
UNFINISHED = ("pending", "held", "sending")


def waiting_clause(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """True when a scheduled campaign's start has come or a campaign is sending (for
    `CampaignSender.run_due`, which starts, finishes and decides them)."""
    c = campaigns.c
    return or_(
        exists().where(c.status == "scheduled", c.starts_at <= now),
        exists().where(c.status == "sending"),
    )


class CampaignQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- rows ------------------------------------------------------------------------------

    def get(self, workspace_id: int, key: str) -> CampaignRecord | None:
        row = self.conn.execute(
            select(campaigns).where(
                campaigns.c.workspace_id == workspace_id, campaigns.c.key == key
            )
        ).first()
        return CampaignRecord.from_row(row) if row is not None else None

    def by_id(self, campaign_id: int) -> CampaignRecord | None:
        row = self.conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).first()
        return CampaignRecord.from_row(row) if row is not None else None

    def all(self, workspace_id: int) -> list[CampaignRecord]:
        rows = self.conn.execute(
            select(campaigns)
            .where(campaigns.c.workspace_id == workspace_id)
            .order_by(campaigns.c.id)
        )
        return [CampaignRecord.from_row(r) for r in rows]

    def add(self, values: dict[str, Any]) -> int:
        return int(self.conn.execute(insert(campaigns).values(values)).inserted_primary_key[0])

    def change(self, campaign_id: int, values: dict[str, Any], *, when: Sequence[str]) -> bool:
        """Set `values` if the campaign's status is one of `when` (compare-and-set)."""
        result = self.conn.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id, campaigns.c.status.in_(tuple(when)))
            .values(values)
        )
        return result.rowcount == 1

    def due(self, now: datetime, limit: int = 10) -> list[CampaignRecord]:
        """Scheduled campaigns whose start has come."""
        stmt = (
            select(campaigns)
            .where(campaigns.c.status == "scheduled", campaigns.c.starts_at <= now)
            .order_by(campaigns.c.starts_at, campaigns.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [CampaignRecord.from_row(r) for r in self.conn.execute(stmt)]

    def sending(self) -> list[CampaignRecord]:
        rows = self.conn.execute(select(campaigns).where(campaigns.c.status == "sending"))
        return [CampaignRecord.from_row(r) for r in rows]

    # --- audience --------------------------------------------------------------------------

    def count_audience(self, audience: AudienceIds) -> int:
        stmt = select(func.count()).select_from(contacts).where(audience_where(audience))
        return int(self.conn.execute(stmt).scalar_one())

    def freeze(self, campaign_id: int, audience: AudienceIds) -> int:
        """Copy the audience into the campaign's recipients, numbered by contact id, with their
        timezones; how many."""
        members = (
            select(contacts.c.id, contacts.c.timezone).where(audience_where(audience)).subquery()
        )
        numbered = select(
            literal(campaign_id),
            members.c.id,
            func.row_number().over(order_by=members.c.id),
            members.c.timezone,
        )
        self.conn.execute(
            insert(campaign_recipients).from_select(
                ["campaign_id", "contact_id", "seq", "timezone"], numbered
            )
        )
        # rowcount is -1 here on PostgreSQL through SQLAlchemy: count (the primary key's prefix).
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(campaign_recipients)
                .where(campaign_recipients.c.campaign_id == campaign_id)
            ).scalar_one()
        )

    def recipient_zones(self, campaign_id: int) -> list[str | None]:
        """The distinct timezones of a campaign's recipients (NULL: none given)."""
        stmt = (
            select(campaign_recipients.c.timezone)
            .distinct()
            .where(campaign_recipients.c.campaign_id == campaign_id)
        )
        return list(self.conn.execute(stmt).scalars())

    def queue(
        self,
        campaign: CampaignRecord,
        payload: dict[str, Any],
        now: datetime,
        *,
        send_after: datetime,
        by_zone: dict[str, datetime] | None = None,
        seq_range: tuple[int, int] | None = None,
        template: str | None = None,
        sample: tuple[int, int, int] | None = None,
        rest: int | None = None,
    ) -> None:
        """Queue the recipients' messages in one INSERT … SELECT: due at `send_after`, or at
        their timezone's instant in `by_zone` (others at `send_after`); `seq_range` (inclusive)
        takes one throttle slot. A/B: `sample` = (percent, variants, i) takes variant i's share
        of the sample (see `domain.campaigns.sample_slot`), `rest` = percent the others, with
        `template` instead of the campaign's."""
        r = campaign_recipients
        due: Any = literal(send_after, UTCDateTime)
        if by_zone:
            due = case(
                {zone: literal(at, UTCDateTime) for zone, at in by_zone.items()},
                value=r.c.timezone,
                else_=literal(send_after, UTCDateTime),
            )
        source = select(
            literal(campaign.workspace_id),
            literal(campaign.channel),
            literal(template or campaign.template),
            r.c.contact_id,
            literal("marketing"),
            literal(0),
            literal(payload, Json),
            literal(f"campaign:{campaign.id}:") + cast(r.c.contact_id, String),
            literal("pending"),
            literal(now, UTCDateTime),
            due,
            literal(0),
            literal(campaign.id),
        ).where(r.c.campaign_id == campaign.id)
        if seq_range is not None:
            source = source.where(r.c.seq.between(*seq_range))
        slot = (r.c.seq * 37) % 100  # domain.campaigns.sample_slot, in SQL
        if sample is not None:
            percent, variants, i = sample
            source = source.where(slot < percent, slot % variants == i)
        if rest is not None:
            source = source.where(slot >= rest)
        columns = [
            "workspace_id",
            "channel",
            "template",
            "contact_id",
            "message_class",
            "priority",
            "payload",
            "idempotency_key",
            "status",
            "created_at",
            "send_after",
            "attempts",
            "campaign_id",
        ]
        self.conn.execute(insert(outbox).from_select(columns, source))

    def queued_by_template(self, campaign_id: int) -> dict[str, int]:
        """The campaign's outbox rows by template (its A/B variants)."""
        rows = self.conn.execute(
            select(outbox.c.template, func.count())
            .where(outbox.c.campaign_id == campaign_id)
            .group_by(outbox.c.template)
        )
        return {str(t): int(n) for t, n in rows}

    # --- withdrawing -----------------------------------------------------------------------

    def hold(self, campaign_id: int) -> int:
        """Pause: queued messages not yet claimed by delivery wait (`held`)."""
        return self._move(campaign_id, ("pending",), "held")

    def release(self, campaign_id: int) -> int:
        return self._move(campaign_id, ("held",), "pending")

    def withdraw(self, campaign_id: int) -> int:
        """Cancel: queued messages not yet claimed by delivery are `cancelled`, in one statement;
        a message delivery has claimed (`sending`) finishes as it would have."""
        return self._move(campaign_id, WITHDRAWABLE, "cancelled", error="campaign cancelled")

    def _move(
        self, campaign_id: int, old: tuple[str, ...], new: str, error: str | None = None
    ) -> int:
        values: dict[str, Any] = {"status": new}
        if error is not None:
            values["error"] = error
        result = self.conn.execute(
            update(outbox)
            .where(outbox.c.campaign_id == campaign_id, outbox.c.status.in_(old))
            .values(values)
        )
        return max(result.rowcount, 0)

    def unfinished(self, campaign_id: int) -> bool:
        """Whether any of its messages is still queued, held or being sent."""
        stmt = (
            select(outbox.c.id)
            .where(outbox.c.campaign_id == campaign_id, outbox.c.status.in_(UNFINISHED))
            .limit(1)
        )
        return self.conn.execute(stmt).first() is not None

    # --- counts ----------------------------------------------------------------------------

    def status_counts(self, campaign_id: int) -> dict[str, int]:
        rows = self.conn.execute(
            select(outbox.c.status, func.count())
            .where(outbox.c.campaign_id == campaign_id)
            .group_by(outbox.c.status)
        )
        return {status: int(n) for status, n in rows}

    def reasons(self, campaign_id: int, statuses: Sequence[str]) -> dict[str, int]:
        """How many of its messages ended in `statuses`, by the reason recorded."""
        rows = self.conn.execute(
            select(outbox.c.error, func.count())
            .where(outbox.c.campaign_id == campaign_id, outbox.c.status.in_(tuple(statuses)))
            .group_by(outbox.c.error)
        )
        return {str(error or "unknown"): int(n) for error, n in rows}

    def reactions(
        self, workspace_id: int, campaign_id: int, since: datetime, names: Sequence[str]
    ) -> dict[str, int]:
        """Distinct messages of the campaign with each of these events (opened, clicked, …)."""
        tagged = events.c.properties["campaign"].as_integer()
        message = events.c.properties["message"].as_integer()
        rows = self.conn.execute(
            select(events.c.name, func.count(distinct(message)))
            .where(
                events.c.workspace_id == workspace_id,
                events.c.name.in_(tuple(names)),
                events.c.timestamp >= since,
                tagged == campaign_id,
            )
            .group_by(events.c.name)
        )
        return {name: int(n) for name, n in rows}

    def sent_by_template(self, campaign_id: int) -> dict[str, int]:
        """Messages sent, by template (an A/B test's variants)."""
        rows = self.conn.execute(
            select(outbox.c.template, func.count())
            .where(outbox.c.campaign_id == campaign_id, outbox.c.status == "sent")
            .group_by(outbox.c.template)
        )
        return {str(t): int(n) for t, n in rows}

    def reactions_by_template(
        self, workspace_id: int, campaign_id: int, since: datetime, names: Sequence[str]
    ) -> dict[tuple[str, str], int]:
        """Distinct messages with each event, by (event name, template)."""
        tagged = events.c.properties["campaign"].as_integer()
        message = events.c.properties["message"].as_integer()
        template = events.c.properties["template"].as_string()
        rows = self.conn.execute(
            select(events.c.name, template, func.count(distinct(message)))
            .where(
                events.c.workspace_id == workspace_id,
                events.c.name.in_(tuple(names)),
                events.c.timestamp >= since,
                tagged == campaign_id,
            )
            .group_by(events.c.name, template)
        )
        return {(name, str(t)): int(n) for name, t, n in rows}

    def conversions_by_template(self, campaign_id: int, event: str) -> dict[str, int]:
        """Recipients who did `event` after their message was sent, by template."""
        converted = (
            select(events.c.id)
            .where(
                events.c.contact_id == outbox.c.contact_id,
                events.c.name == event,
                events.c.timestamp >= outbox.c.sent_at,
            )
            .exists()
        )
        rows = self.conn.execute(
            select(outbox.c.template, func.count())
            .where(outbox.c.campaign_id == campaign_id, outbox.c.status == "sent", converted)
            .group_by(outbox.c.template)
        )
        return {str(t): int(n) for t, n in rows}
