"""Token buckets in the database, so every worker process draws on the same rate limit."""

from __future__ import annotations

import math

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from conveyor.store.schema import rate_buckets


class RateLimitQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def take(self, key: str, want: int, rate: float, burst: float, now: float) -> int:
        """Up to `want` tokens of bucket `key` (refilled at `rate` a second since its last take,
        holding at most `burst`), as many as it has; how many were granted. The row is locked
        (PostgreSQL) or the transaction is the only writer (SQLite), so two workers never
        take the same token."""
        stmt = select(rate_buckets.c.tokens, rate_buckets.c.stamp).where(rate_buckets.c.key == key)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        if row is None:
            if self.dialect == "postgresql":
                self.conn.execute(
                    pg_insert(rate_buckets)
                    .values(key=key, tokens=burst, stamp=now)
                    .on_conflict_do_nothing()
                )
            else:
                self.conn.execute(insert(rate_buckets).values(key=key, tokens=burst, stamp=now))
            row = self.conn.execute(stmt).one()
        tokens = min(burst, row.tokens + max(0.0, now - row.stamp) * rate)
        granted = min(want, math.floor(tokens))
        self.conn.execute(
            update(rate_buckets)
            .where(rate_buckets.c.key == key)
            .values(tokens=tokens - granted, stamp=max(now, row.stamp))
        )
        return granted
