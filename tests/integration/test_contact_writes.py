"""A contact is written back column by column: an update sets only the columns that changed.

SQLite rewrites the entries of every index on a column an UPDATE sets, changed or not: writing
each contact whole made every tag or field change also rewrite its email, external id and phone
index entries. What the update leaves out must still be what is stored. Both databases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from conveyor.services.contacts import ContactChange


@contextmanager
def contact_updates(conveyor) -> Iterator[list[set[str]]]:
    """The columns each UPDATE of `contacts` sets while the block runs."""
    found: list[set[str]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE CONTACTS SET"):
            assignments = statement.split(" SET ", 1)[1].rsplit(" WHERE ", 1)[0]
            found.append(set(re.findall(r'"?(\w+)"?\s*=', assignments)))

    engine = conveyor.store.db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_a_tag_or_a_field_sets_only_what_changed(conveyor, tenant, clock):
    ws = tenant.workspace
    conveyor.catalog.declare_field(ws, "plan", "text", None, None)
    made = conveyor.contacts.create(
        ws,
        ContactChange(
            {"email": "ann@example.com", "external_id": "u-ann", "phone": "+4915112345678"}
        ),
    )
    with contact_updates(conveyor) as updates:
        clock.advance(timedelta(minutes=1))
        conveyor.contacts.update(ws, made.id, ContactChange({}, add_tags=["vip"]))
        clock.advance(timedelta(minutes=1))
        conveyor.contacts.update(ws, made.id, ContactChange({"plan": "pro"}))
        clock.advance(timedelta(minutes=1))
        conveyor.contacts.update(ws, made.id, ContactChange({"plan": "pro"}))  # no change
    assert updates == [{"updated_at"}, {"fields", "updated_at"}]
    stored = conveyor.contacts.get(ws, made.id)
    assert (stored.email, stored.external_id, stored.phone) == (
        "ann@example.com",
        "u-ann",
        "+4915112345678",
    )
    assert stored.tags == ["vip"] and stored.fields == {"plan": "pro"}


def test_keys_moved_between_contacts_in_one_batch_are_all_written(conveyor, tenant):
    """Freeing a key that moves clears both keys of the contact it left (release_unique): the
    update writes both back, though one of them did not change."""
    ws = tenant.workspace
    calls = [
        {"type": "identify", "userId": "a", "traits": {"email": "one@example.com"}},
        {"type": "identify", "userId": "b", "traits": {"email": "two@example.com"}},
    ]
    assert conveyor.ingest.calls(ws, calls).accepted == 2
    swap = [
        {"type": "identify", "userId": "a", "traits": {"email": "three@example.com"}},
        {"type": "identify", "userId": "b", "traits": {"email": "one@example.com"}},
    ]
    assert conveyor.ingest.calls(ws, swap).accepted == 2
    a = conveyor.contacts.lookup(ws, external_id="a")
    b = conveyor.contacts.lookup(ws, external_id="b")
    assert (a.external_id, a.email) == ("a", "three@example.com")
    assert (b.external_id, b.email) == ("b", "one@example.com")

