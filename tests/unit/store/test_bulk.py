"""Bulk writes encode values exactly as SQLAlchemy stores them, so both paths read back alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select

from conveyor.store import bulk
from conveyor.store.schema import events, metadata


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        datetime(234, 8, 17, 9, 58, 37, tzinfo=UTC),  # a year strftime would not pad
        datetime(2026, 3, 29, 2, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_a_bulk_row_reads_back_like_a_sqlalchemy_row(moment):
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[events])
    row = {
        "workspace_id": 1, "contact_id": 2, "kind": "track", "name": "x",
        "properties": {"n": [1, "ü"]}, "context": None, "message_id": None,
        "timestamp": moment, "received_at": moment,
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(events.insert(), [{**row, "message_id": "orm"}])
        bulk.insert(conn, events, [{**row, "message_id": "bulk"}])
        stored = {
            r.message_id: (r.timestamp, r.properties, r.context)
            for r in conn.execute(select(events))
        }
        raw = dict(conn.exec_driver_sql("SELECT message_id, timestamp FROM events").all())
    assert stored["orm"] == stored["bulk"]
    assert raw["orm"] == raw["bulk"]
    engine.dispose()
