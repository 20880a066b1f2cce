"""SQL for messages on their way out: claiming due outbox rows under a lease, recording what
the provider said (compare-and-set on the claim), and the suppression list."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from conveyor.store.records import MessageRecord, RecentSend, SuppressionRecord
from conveyor.store.schema import UTCDateTime, contact_policies, outbox, suppressions

_CHUNK = 500


class MessageQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def any_due(self, now: datetime) -> bool:
        """Whether any message is due (an unlocked look)."""
        return self.conn.execute(_any_due(), {"now": now}).first() is not None

    def claim(self, now: datetime, limit: int, lease: timedelta) -> list[MessageRecord]:
        """Due messages (pending and due, or claimed by a worker whose lease ran out), marked
        `sending` until `now + lease` for this worker: those whose lease ran out first (they
        were claimed before any pending one), then the pending by higher priority, then oldest
        due. Two statements, each read in order from an index (see `_claims`).

        A worker that dies between sending and recording leaves its rows `sending`; once the
        lease runs out another worker sends them again (at-least-once, same idempotency key).
        """
        expired, pending = _claims(self.dialect == "postgresql")
        ids = list(self.conn.execute(expired, {"now": now, "limit": limit}).scalars())
        if len(ids) < limit:
            params = {"now": now, "limit": limit - len(ids)}
            ids += self.conn.execute(pending, params).scalars()
        if not ids:
            return []
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            # `sent_at` marks the claim: a message being sent counts against caps right away.
            .values(
                status="sending",
                lease_until=now + lease,
                attempts=outbox.c.attempts + 1,
                sent_at=now,
            )
        )
        rows = self.conn.execute(select(outbox).where(outbox.c.id.in_(ids)))
        order = {id_: i for i, id_ in enumerate(ids)}
        return sorted(map(MessageRecord.from_row, rows), key=lambda r: order[r.id])

    def finish(self, rows: list[dict[str, Any]]) -> int:
        """Record outcomes of claimed rows. Each row has `id`, `claimed_attempts` and the columns
        to set; a row another worker has claimed since (its lease ran out) is left alone.
        How many rows were updated."""
        done = 0
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        for columns, group in by_columns.items():
            values = {
                c: bindparam(f"v_{c}") for c in columns if c not in ("id", "claimed_attempts")
            }
            stmt = (
                update(outbox)
                .where(
                    outbox.c.id == bindparam("b_id"),
                    outbox.c.status == "sending",
                    outbox.c.attempts == bindparam("b_attempts"),
                )
                .values(values)
            )
            params = [
                {
                    "b_id": r["id"],
                    "b_attempts": r["claimed_attempts"],
                    **{f"v_{c}": r[c] for c in values},
                }
                for r in group
            ]
            result = self.conn.execute(stmt, params)
            done += result.rowcount if result.rowcount >= 0 else len(group)
        return done

    def lock_contacts(self, contact_ids: Iterable[int]) -> None:
        """Serialize policy decisions about the same contacts across workers (PostgreSQL; SQLite
        has one writer): a second worker then sees the first one's claimed messages."""
        ids = sorted(set(contact_ids))
        if self.dialect == "postgresql" and ids:
            self.conn.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(7364, (c %% 2147483647)::int)"
                " FROM unnest(%(ids)s::bigint[]) AS c",
                {"ids": ids},
            )

    def recent_sends(
        self, contact_ids: Iterable[int], since: datetime, exclude: Iterable[int]
    ) -> list[RecentSend]:
        """Marketing messages sent, or being sent, to these contacts since `since`."""
        ids, skip = sorted(set(contact_ids)), set(exclude)
        out: list[RecentSend] = []
        for start in range(0, len(ids), _CHUNK):
            out += [
                RecentSend.from_row(row)
                for row in self.conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.contact_id,
                        outbox.c.channel,
                        outbox.c.template,
                        outbox.c.sent_at,
                        outbox.c.automation_id,
                    ).where(
                        outbox.c.contact_id.in_(ids[start : start + _CHUNK]),
                        outbox.c.message_class == "marketing",
                        outbox.c.status.in_(("sent", "sending")),
                        outbox.c.sent_at > since,
                    )
                )
                if row.id not in skip
            ]
        return out

    def postpone(self, rows: list[dict[str, Any]]) -> None:
        """Claimed messages the policy holds back: pending again until `send_after` (not an
        attempt), or skipped. Each row has id, status, send_after, error."""
        if rows:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id == bindparam("b_id"), outbox.c.status == "sending")
                .values(
                    status=bindparam("b_status"),
                    send_after=bindparam("b_after"),
                    error=bindparam("b_error"),
                    attempts=outbox.c.attempts - 1,
                    lease_until=None,
                    sent_at=None,
                ),
                [
                    {
                        "b_id": r["id"],
                        "b_status": r["status"],
                        "b_after": r["send_after"],
                        "b_error": r["error"],
                    }
                    for r in rows
                ],
            )

    def contact_policies(self, contact_ids: Iterable[int]) -> dict[int, Any]:
        ids = sorted(set(contact_ids))
        found: dict[int, Any] = {}
        for start in range(0, len(ids), _CHUNK):
            for row in self.conn.execute(
                select(contact_policies.c.contact_id, contact_policies.c.policy).where(
                    contact_policies.c.contact_id.in_(ids[start : start + _CHUNK])
                )
            ):
                found[row.contact_id] = row.policy
        return found

    def set_contact_policy(
        self, workspace_id: int, contact_id: int, policy: dict[str, Any] | None, now: datetime
    ) -> None:
        self.conn.execute(
            delete(contact_policies).where(contact_policies.c.contact_id == contact_id)
        )
        if policy:
            self.conn.execute(
                insert(contact_policies).values(
                    contact_id=contact_id, workspace_id=workspace_id, policy=policy, updated_at=now
                )
            )

    def get(self, workspace_id: int, message_id: int) -> MessageRecord | None:
        row = self.conn.execute(
            select(outbox).where(outbox.c.workspace_id == workspace_id, outbox.c.id == message_id)
        ).first()
        return MessageRecord.from_row(row) if row is not None else None

    def by_id(self, message_id: int) -> MessageRecord | None:
        row = self.conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
        return MessageRecord.from_row(row) if row is not None else None

    def by_provider_ids(
        self, workspace_id: int, provider_ids: Iterable[str]
    ) -> dict[str, MessageRecord]:
        wanted = [p for p in set(provider_ids) if p]
        found: dict[str, MessageRecord] = {}
        for start in range(0, len(wanted), _CHUNK):
            for row in self.conn.execute(
                select(outbox).where(
                    outbox.c.workspace_id == workspace_id,
                    outbox.c.provider_id.in_(wanted[start : start + _CHUNK]),
                )
            ):
                found[row.provider_id] = MessageRecord.from_row(row)
        return found

    def page(
        self,
        workspace_id: int,
        *,
        contact_id: int | None = None,
        status: str | None = None,
        channel: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[MessageRecord]:
        """A keyset page by id; `newest_first` pages downwards (`after_id` is then the last id
        seen, and the page holds smaller ones)."""
        stmt = select(outbox).where(outbox.c.workspace_id == workspace_id)
        if contact_id is not None:
            stmt = stmt.where(outbox.c.contact_id == contact_id)
        if status is not None:
            stmt = stmt.where(outbox.c.status == status)
        if channel is not None:
            stmt = stmt.where(outbox.c.channel == channel)
        if after_id is not None:
            stmt = stmt.where(outbox.c.id < after_id if newest_first else outbox.c.id > after_id)
        order = outbox.c.id.desc() if newest_first else outbox.c.id
        return [
            MessageRecord.from_row(row)
            for row in self.conn.execute(stmt.order_by(order).limit(limit))
        ]

    def set_status(self, message_id: int, status: str) -> None:
        """A site message the visitor clicked or dismissed: no longer offered."""
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id == message_id, outbox.c.status == "sent")
            .values(status=status)
        )

    def retry(self, workspace_id: int, message_id: int, now: datetime) -> bool:
        """Send a dead or failed message again, from a fresh count of attempts."""
        result = self.conn.execute(
            update(outbox)
            .where(
                outbox.c.workspace_id == workspace_id,
                outbox.c.id == message_id,
                outbox.c.status.in_(("dead", "failed")),
            )
            .values(status="pending", send_after=now, attempts=0, error=None, lease_until=None)
        )
        return result.rowcount == 1

    def status_counts(self, workspace_id: int) -> dict[tuple[str, str], int]:
        rows = self.conn.execute(
            select(outbox.c.channel, outbox.c.status, func.count())
            .where(outbox.c.workspace_id == workspace_id)
            .group_by(outbox.c.channel, outbox.c.status)
        )
        return {(channel, status): n for channel, status, n in rows}

    # --- suppressions ------------------------------------------------------------------------

    def suppressed(
        self, workspace_id: int, channel: str, addresses: Iterable[str]
    ) -> dict[str, SuppressionRecord]:
        """Which of `addresses` (emails, "@domain"s, phone numbers) are suppressed, with why."""
        wanted = sorted({a for a in addresses if a})
        found: dict[str, SuppressionRecord] = {}
        for start in range(0, len(wanted), _CHUNK):
            for row in self.conn.execute(
                select(suppressions).where(
                    suppressions.c.workspace_id == workspace_id,
                    suppressions.c.channel == channel,
                    suppressions.c.address.in_(wanted[start : start + _CHUNK]),
                )
            ):
                found[row.address] = SuppressionRecord.from_row(row)
        return found

    def suppress(
        self,
        workspace_id: int,
        channel: str,
        address: str,
        reason: str,
        detail: str | None,
        now: datetime,
    ) -> bool:
        """Add an address to the suppression list; False if it was there already (kept as is,
        except that a bounce or complaint outranks an unsubscribe or a manual entry)."""
        existing = self.suppressed(workspace_id, channel, [address]).get(address)
        if existing is None:
            self.conn.execute(
                insert(suppressions).values(
                    workspace_id=workspace_id,
                    channel=channel,
                    address=address,
                    reason=reason,
                    detail=detail,
                    created_at=now,
                )
            )
            return True
        if reason in ("bounced", "complained") and existing.reason not in ("bounced", "complained"):
            self.conn.execute(
                update(suppressions)
                .where(
                    suppressions.c.workspace_id == workspace_id,
                    suppressions.c.channel == channel,
                    suppressions.c.address == address,
                )
                .values(reason=reason, detail=detail)
            )
        return False

    def unsuppress(self, workspace_id: int, channel: str, address: str) -> bool:
        result = self.conn.execute(
            delete(suppressions).where(
                suppressions.c.workspace_id == workspace_id,
                suppressions.c.channel == channel,
                suppressions.c.address == address,
            )
        )
        return result.rowcount == 1

    def suppression_page(
        self, workspace_id: int, channel: str | None, after: str | None, limit: int
    ) -> list[SuppressionRecord]:
        stmt = select(suppressions).where(suppressions.c.workspace_id == workspace_id)
        if channel is not None:
            stmt = stmt.where(suppressions.c.channel == channel)
        if after is not None:
            stmt = stmt.where(suppressions.c.address > after)
        return [
            SuppressionRecord.from_row(row)
            for row in self.conn.execute(
                stmt.order_by(suppressions.c.address, suppressions.c.channel).limit(limit)
            )
        ]


def _due(now: Any) -> Any:
    """Pending and due, or claimed by a worker whose lease ran out."""
    return or_(
        and_(outbox.c.status == "pending", outbox.c.send_after <= now),
        and_(outbox.c.status == "sending", outbox.c.lease_until <= now),
    )


@functools.cache
def _any_due() -> Select[Any]:
    """`any_due`'s statement, built once, the clock a bound parameter."""
    return select(outbox.c.id).where(_due(bindparam("now", type_=UTCDateTime()))).limit(1)


@functools.cache
def _claims(skip_locked: bool) -> tuple[Select[Any], Select[Any]]:
    """The claim's two looks, built once: messages whose lease ran out (by id, from
    `ix_outbox_status_id`; a few at most, a worker's claim), then the pending and due in
    (priority, send_after, id) order, straight from `ix_outbox_claim`. As one statement over
    both (an OR), PostgreSQL read and sorted every due message to keep the first few hundred
    — a newsletter's whole audience on every claim (tests/integration/test_queue_plans.py)."""
    now, limit = bindparam("now", type_=UTCDateTime()), bindparam("limit")
    c = outbox.c
    expired = (
        select(c.id).where(c.status == "sending", c.lease_until <= now).order_by(c.id).limit(limit)
    )
    pending = (
        select(c.id)
        .where(c.status == "pending", c.send_after <= now)
        .order_by(c.priority.desc(), c.send_after, c.id)
        .limit(limit)
    )
    if skip_locked:
        expired = expired.with_for_update(skip_locked=True)
        pending = pending.with_for_update(skip_locked=True)
    return expired, pending
