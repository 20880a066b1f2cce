"""SQL for contacts and what hangs off them: aliases, tags and list subscriptions."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)

from conveyor.store import bulk
from conveyor.store.records import ContactRecord
from conveyor.store.schema import contact_aliases, contact_tags, contacts, events, subscriptions

_CONTACT_COLUMNS = tuple(c.name for c in contacts.c)  # ContactRecord's fields, in order
# Writers about the same person take turns (PostgreSQL): an advisory lock per key, in key order.
_LOCK_KEYS = "SELECT pg_advisory_xact_lock(%(ws)s, hashtext(k)) FROM unnest(%(keys)s::text[]) AS k"
_CHUNK = 500  # keeps IN lists well under every driver's parameter limit


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class ContactQueries:
    def __init__(self, conn: Connection, lock_rows: bool = False) -> None:
        self.conn = conn
        # Inside write transactions on PostgreSQL, rows read for update are locked (SELECT … FOR
        # UPDATE) so two writers cannot both read-modify-write one contact's fields.
        self.lock_rows = lock_rows

    def lock_keys(self, workspace_id: int, keys: Iterable[str]) -> None:
        """Serialize writers about the same ids/emails (PostgreSQL; SQLite has one writer)."""
        keys = sorted(set(keys))
        if self.lock_rows and keys:
            self.conn.exec_driver_sql(_LOCK_KEYS, {"ws": workspace_id, "keys": keys})

    def by_keys(
        self,
        workspace_id: int,
        *,
        external_ids: Iterable[str] = (),
        emails: Iterable[str] = (),
        anonymous_ids: Iterable[str] = (),
    ) -> tuple[list[ContactRecord], list[ContactRecord], dict[str, int]]:
        """`lock_keys` on all the keys, then the contacts by external id, by email, and the
        targets of the anonymous ids (as `alias_targets`): one round trip to PostgreSQL (a
        pipeline), where these were four."""
        by_external, by_email, aliases, _ = self.by_keys_after(
            (),
            workspace_id,
            external_ids=external_ids,
            emails=emails,
            anonymous_ids=anonymous_ids,
        )
        return by_external, by_email, aliases

    def by_keys_after(
        self,
        first: Sequence[bulk.Lookup],
        workspace_id: int,
        *,
        external_ids: Iterable[str] = (),
        emails: Iterable[str] = (),
        anonymous_ids: Iterable[str] = (),
    ) -> tuple[list[ContactRecord], list[ContactRecord], dict[str, int], list[list[Any]]]:
        """`by_keys`, with other look-ups sent ahead of it in the same round trip (the ingest
        writer's log lock, message ids and field catalog): their rows come fourth."""
        external_ids, emails, anonymous_ids = list(external_ids), list(emails), list(anonymous_ids)
        keys = sorted({*external_ids, *emails, *anonymous_ids})
        lookups = list(first)
        if self.lock_rows and keys:
            lookups.append(bulk.Lookup(None, (), _LOCK_KEYS, {"ws": workspace_id, "keys": keys}))
        for key, values in (("external_id", external_ids), ("email", emails)):
            lookups.append(
                bulk.Lookup(contacts, _CONTACT_COLUMNS, key, values, workspace_id, self.lock_rows)
            )
        lookups.append(
            bulk.Lookup(
                contact_aliases,
                ("anonymous_id", "contact_id"),
                "anonymous_id",
                anonymous_ids,
                workspace_id,
            )
        )
        found = bulk.pipelined(self.conn, lookups)
        by_external, by_email, aliases = found[-3:]
        return (
            [ContactRecord(*row) for row in by_external],
            [ContactRecord(*row) for row in by_email],
            dict(aliases),  # type: ignore[arg-type]
            found[: len(first)],
        )

    def _select(self, stmt: Select[Any]) -> list[ContactRecord]:
        if self.lock_rows:
            stmt = stmt.order_by(contacts.c.id).with_for_update()
        return [ContactRecord.from_row(row) for row in self.conn.execute(stmt)]

    def by_ids(self, workspace_id: int, ids: Iterable[int]) -> list[ContactRecord]:
        rows: list[ContactRecord] = []
        for chunk in _chunks(ids):
            rows += self._select(
                select(contacts).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.id.in_(chunk)
                )
            )
        return rows

    def by_external_ids(
        self, workspace_id: int, external_ids: Iterable[str]
    ) -> list[ContactRecord]:
        return self._by_key("external_id", workspace_id, external_ids)

    def by_emails(self, workspace_id: int, emails: Iterable[str]) -> list[ContactRecord]:
        return self._by_key("email", workspace_id, emails)

    def _by_key(self, key: str, workspace_id: int, values: Iterable[str]) -> list[ContactRecord]:
        rows = bulk.select_in(
            self.conn,
            contacts,
            _CONTACT_COLUMNS,
            key,
            list(values),
            workspace_id=workspace_id,
            lock=self.lock_rows,
        )
        return [ContactRecord(*row) for row in rows]

    def by_phone(self, workspace_id: int, phone: str) -> ContactRecord | None:
        """The contact with this (E.164) phone number; the oldest if several share it."""
        row = self.conn.execute(
            select(contacts)
            .where(contacts.c.workspace_id == workspace_id, contacts.c.phone == phone)
            .order_by(contacts.c.id)
            .limit(1)
        ).first()
        return ContactRecord.from_row(row) if row is not None else None

    def alias_targets(self, workspace_id: int, anonymous_ids: Iterable[str]) -> dict[str, int]:
        rows = bulk.select_in(
            self.conn,
            contact_aliases,
            ("anonymous_id", "contact_id"),
            "anonymous_id",
            list(anonymous_ids),
            workspace_id=workspace_id,
        )
        return dict(rows)  # type: ignore[arg-type]

    def aliases_of(self, contact_ids: Iterable[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = defaultdict(list)
        for chunk in _chunks(contact_ids):
            for contact_id, anonymous_id in self.conn.execute(
                select(contact_aliases.c.contact_id, contact_aliases.c.anonymous_id)
                .where(contact_aliases.c.contact_id.in_(chunk))
                .order_by(contact_aliases.c.created_at, contact_aliases.c.anonymous_id)
            ):
                found[contact_id].append(anonymous_id)
        return found

    def tags_of(self, contact_ids: Iterable[int]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = defaultdict(set)
        for chunk in _chunks(contact_ids):
            for contact_id, tag in self.conn.execute(
                select(contact_tags.c.contact_id, contact_tags.c.tag).where(
                    contact_tags.c.contact_id.in_(chunk)
                )
            ):
                found[contact_id].add(tag)
        return found

    def subscriptions_of(self, contact_ids: Iterable[int]) -> dict[int, dict[int, str]]:
        found: dict[int, dict[int, str]] = defaultdict(dict)
        for chunk in _chunks(contact_ids):
            for contact_id, list_id, status in self.conn.execute(
                select(
                    subscriptions.c.contact_id, subscriptions.c.list_id, subscriptions.c.status
                ).where(subscriptions.c.contact_id.in_(chunk))
            ):
                found[contact_id][list_id] = status
        return found

    def ids(self, workspace_id: int) -> list[int]:
        """Every contact id of the workspace, ascending (a simulation draws its sample)."""
        stmt = select(contacts.c.id).where(contacts.c.workspace_id == workspace_id)
        return list(self.conn.execute(stmt.order_by(contacts.c.id)).scalars())

    def with_relations(
        self, workspace_id: int, ids: Iterable[int]
    ) -> tuple[list[ContactRecord], dict[int, set[str]], dict[int, dict[int, str]]]:
        """Contacts with their tags and list statuses, in one statement (the engine's load)."""
        stmt = _relations_statement(self.conn.dialect.name, self.lock_rows)
        records, tag_sets, subs = [], {}, {}
        width = len(contacts.c)
        for chunk in _chunks(ids):
            for row in bulk.fetch(self.conn, stmt, {"workspace_id": workspace_id, "ids": chunk}):
                record = ContactRecord.from_row(row[:width])
                records.append(record)
                tag_sets[record.id] = {t for t in row.relation_tags or () if t is not None}
                subs[record.id] = {
                    int(k): v for k, v in (row.relation_lists or {}).items() if v is not None
                }
        return records, tag_sets, subs

    # --- writes -----------------------------------------------------------------------------

    def insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert contacts; their new ids in the order given."""
        if not rows:
            return []
        if self.conn.dialect.name == "sqlite":
            return self._insert_sqlite(rows)
        if len(rows) >= 10:  # ids from the sequence first, then one COPY (PostgreSQL)
            ids = bulk.next_ids(self.conn, contacts, len(rows))
            bulk.copy(
                self.conn, contacts, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
            )
            return ids
        result = self.conn.execute(
            insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True), rows
        )
        return list(result.scalars())

    def _insert_sqlite(self, rows: list[dict[str, Any]]) -> list[int]:
        """The driver's executemany, then the new ids read back: a write transaction on SQLite
        holds the database's only write lock from its start (BEGIN IMMEDIATE), so nobody else
        inserts meanwhile, and SQLite gives each new row the next id above the largest. Half the
        cost of SQLAlchemy's INSERT … RETURNING for the ~40 contacts of an ingest group."""
        before = bulk.driver(self.conn, "SELECT coalesce(max(id), 0) FROM contacts", (), fetch=True)
        bulk.insert(self.conn, contacts, rows)
        found = bulk.driver(
            self.conn, "SELECT id FROM contacts WHERE id > ? ORDER BY id", before[0], fetch=True
        )
        ids = [row[0] for row in found]
        if len(ids) != len(rows):  # never, unless someone wrote beside the lock
            raise RuntimeError(f"inserted {len(rows)} contacts, found {len(ids)} new ids")
        return ids

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Write changed contacts; each row has `contact_id` and the columns to set (one
        statement per set of columns, in the order first seen)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            values = {k: v for k, v in row.items() if k != "contact_id"}
            values["id"] = row["contact_id"]
            groups.setdefault(tuple(values), []).append(values)
        for group in groups.values():
            bulk.update(self.conn, contacts, "id", group)

    def release_unique(self, contact_ids: list[int]) -> None:
        """Clear email and external id of contacts about to be rewritten with new ones."""
        for chunk in _chunks(contact_ids):
            self.conn.execute(
                update(contacts)
                .where(contacts.c.id.in_(chunk))
                .values(external_id=None, email=None)
            )

    def add_aliases(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(contact_aliases), rows)

    def add_tags(self, rows: list[dict[str, Any]]) -> None:
        bulk.append(self.conn, contact_tags, rows)

    def remove_tags(self, pairs: list[tuple[int, str]]) -> None:
        bulk.delete(self.conn, contact_tags, ("contact_id", "tag"), pairs)

    def add_subscriptions(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(subscriptions), rows)

    def update_subscriptions(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(
                update(subscriptions)
                .where(
                    subscriptions.c.contact_id == bindparam("cid"),
                    subscriptions.c.list_id == bindparam("lid"),
                )
                .values(status=bindparam("status"), updated_at=bindparam("at")),
                rows,
            )

    def absorb(self, winner_id: int, loser_id: int) -> None:
        """Move the loser's history and aliases to the winner, then delete the loser.

        Tags, subscriptions and fields are merged by the caller (with their system events);
        this only moves what the caller does not rewrite.
        """
        self.conn.execute(
            update(events).where(events.c.contact_id == loser_id).values(contact_id=winner_id)
        )
        self.conn.execute(
            update(contact_aliases)
            .where(contact_aliases.c.contact_id == loser_id)
            .values(contact_id=winner_id)
        )
        self.conn.execute(delete(contacts).where(contacts.c.id == loser_id))

    def delete(self, workspace_id: int, contact_id: int) -> bool:
        """Delete a contact with its tags, subscriptions, aliases and event history."""
        self.conn.execute(
            delete(events).where(
                events.c.workspace_id == workspace_id, events.c.contact_id == contact_id
            )
        )
        result = self.conn.execute(
            delete(contacts).where(
                contacts.c.workspace_id == workspace_id, contacts.c.id == contact_id
            )
        )
        return result.rowcount == 1

    # --- reads for listing ------------------------------------------------------------------

    def page(
        self,
        workspace_id: int,
        *,
        after_id: int | None,
        limit: int,
        email: str | None = None,
        tag: str | None = None,
        list_id: int | None = None,
        list_status: str | None = None,
        since: datetime | None = None,
    ) -> list[ContactRecord]:
        stmt = select(contacts).where(contacts.c.workspace_id == workspace_id)
        if after_id is not None:
            stmt = stmt.where(contacts.c.id > after_id)
        if email is not None:
            stmt = stmt.where(contacts.c.email == email)
        if since is not None:
            stmt = stmt.where(contacts.c.updated_at >= since)
        if tag is not None:
            stmt = stmt.where(
                contacts.c.id.in_(
                    select(contact_tags.c.contact_id).where(
                        contact_tags.c.workspace_id == workspace_id, contact_tags.c.tag == tag
                    )
                )
            )
        if list_id is not None:
            members = select(subscriptions.c.contact_id).where(subscriptions.c.list_id == list_id)
            if list_status is not None:
                members = members.where(subscriptions.c.status == list_status)
            stmt = stmt.where(contacts.c.id.in_(members))
        return [
            ContactRecord.from_row(row)
            for row in self.conn.execute(stmt.order_by(contacts.c.id).limit(limit))
        ]


@functools.cache
def _relations_statement(dialect: str, lock_rows: bool) -> Select[Any]:
    """`with_relations`' statement, built once per dialect and locking (building it each time
    cost the engine's load more CPU than running it)."""
    sqlite = dialect == "sqlite"
    tag_list = func.json_group_array if sqlite else func.json_agg
    status_map = func.json_group_object if sqlite else func.json_object_agg
    tags = (
        select(tag_list(contact_tags.c.tag))
        .where(contact_tags.c.contact_id == contacts.c.id)
        .scalar_subquery()
    )
    statuses = (
        select(status_map(subscriptions.c.list_id, subscriptions.c.status))
        .where(subscriptions.c.contact_id == contacts.c.id)
        .scalar_subquery()
    )
    stmt = select(
        contacts,
        type_coerce(tags, JSON).label("relation_tags"),
        type_coerce(statuses, JSON).label("relation_lists"),
    ).where(
        contacts.c.workspace_id == bindparam("workspace_id"),
        contacts.c.id.in_(bindparam("ids", expanding=True)),
    )
    if lock_rows:
        stmt = stmt.order_by(contacts.c.id).with_for_update(of=contacts)
    return stmt
