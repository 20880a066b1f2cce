"""The store's audiences: who meets a condition, counted, as ids and page by page; and a value
the database refuses comes back as a domain error, not a driver's."""

from __future__ import annotations

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.services.segments import ConditionContext
from conveyor.store.records import ContactRecord

GMAIL = {"field": "email_domain", "op": "eq", "value": "gmail.com"}


def test_count_ids_and_pages_agree(conveyor, clock):
    workspace, _ = conveyor.workspaces.create("audiences")
    calls = [
        {"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@{domain}"}}
        for i, domain in enumerate(["gmail.com", "example.com"] * 5)
    ]
    assert conveyor.ingest.calls(workspace, calls).accepted == 10
    with conveyor.store.read() as tx:
        ctx = ConditionContext(tx, workspace)
        scope, condition = ctx.scope(clock.now()), ctx.parse(GMAIL)
        count = tx.audiences.count(scope, condition)
        ids = tx.audiences.member_ids(scope, condition)
        everyone = tx.audiences.members(scope, condition)
        first = tx.audiences.members(scope, condition, limit=3)
        rest = tx.audiences.members(scope, condition, after_id=first[-1].id, limit=3)
    assert count == len(ids) == len(everyone) == 5
    assert all(isinstance(c, ContactRecord) for c in everyone)
    assert {c.email.rpartition("@")[2] for c in everyone} == {"gmail.com"}
    assert [c.id for c in everyone] == sorted(ids)
    assert [c.id for c in first + rest] == sorted(ids)


def test_a_refused_value_is_invalid_input(conveyor, clock):
    if conveyor.store.dialect == "sqlite":
        pytest.skip("SQLite stores a NUL character")
    workspace, _ = conveyor.workspaces.create("refusals")
    with pytest.raises(InvalidInput, match="could not be stored"):
        conveyor.store.transact(
            lambda tx: tx.catalog.add_list(workspace.id, "nul", "a\x00b", False, clock.now())
        )
