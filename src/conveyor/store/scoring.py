"""SQL for lead scoring: a workspace's model, its contacts' named scores and the awards ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from conveyor.store import bulk
from conveyor.store.records import ContactScoreRecord, ScoreAwardRecord, ScoringModelRecord
from conveyor.store.schema import contact_scores, contacts, events, score_awards, scoring_models

_CHUNK = 500


def due_clause(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """True when a score's decay has crossed a threshold by `now`: the earliest crossing, one
    step into its index (not `EXISTS`, which a prepared statement's plan turned into a scan of
    every score: tests/integration/test_queue_plans.py)."""
    return select(func.min(contact_scores.c.cross_at)).scalar_subquery() <= now


class ScoringQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- the model ---------------------------------------------------------------------------

    def model(self, workspace_id: int) -> ScoringModelRecord | None:
        row = self.conn.execute(
            select(scoring_models).where(scoring_models.c.workspace_id == workspace_id)
        ).first()
        return ScoringModelRecord.from_row(row) if row is not None else None

    def save_model(
        self, workspace_id: int, definition: dict[str, Any], epoch: datetime, now: datetime
    ) -> int:
        """Store the model (a new version) with decay's epoch; returns the version."""
        found = self.model(workspace_id)
        version = 1 if found is None else found.version + 1
        values = {
            "definition": definition,
            "version": version,
            "epoch": epoch,
            "armed": {},
            "updated_at": now,
        }
        if found is None:
            self.conn.execute(insert(scoring_models).values(workspace_id=workspace_id, **values))
        else:
            self.conn.execute(
                update(scoring_models)
                .where(scoring_models.c.workspace_id == workspace_id)
                .values(**values)
            )
        return version

    def models(self) -> list[ScoringModelRecord]:
        return [ScoringModelRecord.from_row(r) for r in self.conn.execute(select(scoring_models))]

    def rebase(self, workspace_id: int, factors: dict[str, float], epoch: datetime) -> None:
        """Move decay's epoch to `epoch`, each score's norms scaled by its factor (values stay)."""
        for score, k in factors.items():
            if k != 1.0:
                self.conn.execute(
                    update(contact_scores)
                    .where(
                        contact_scores.c.workspace_id == workspace_id,
                        contact_scores.c.score == score,
                    )
                    .values(norm=contact_scores.c.norm * k)
                )
        self.conn.execute(
            update(scoring_models)
            .where(scoring_models.c.workspace_id == workspace_id)
            .values(epoch=epoch)
        )

    def set_armed(self, workspace_id: int, armed: dict[str, list[float]]) -> None:
        self.conn.execute(
            update(scoring_models)
            .where(scoring_models.c.workspace_id == workspace_id)
            .values(armed=armed)
        )

    # --- contacts' scores -------------------------------------------------------------------

    def states(
        self, workspace_id: int, contact_ids: Iterable[int]
    ) -> dict[tuple[int, str], ContactScoreRecord]:
        wanted = sorted(set(contact_ids))
        out: dict[tuple[int, str], ContactScoreRecord] = {}
        for start in range(0, len(wanted), _CHUNK):
            stmt = select(contact_scores).where(
                # `+ 0`: on the primary key by contact, never the (workspace, score) index
                (contact_scores.c.workspace_id + 0) == workspace_id,
                contact_scores.c.contact_id.in_(wanted[start : start + _CHUNK]),
            )
            for row in self.conn.execute(stmt):
                record = ContactScoreRecord.from_row(row)
                out[(record.contact_id, record.score)] = record
        return out

    def save_states(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update contacts' scores (rows with every column of contact_scores)."""
        if not rows:
            return
        make = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = make(contact_scores)
        stmt = stmt.on_conflict_do_update(
            index_elements=["contact_id", "score"],
            set_={c: stmt.excluded[c] for c in ("norm", "fixed", "checked_at", "cross_at")},
        )
        for start in range(0, len(rows), 5000):
            self.conn.execute(stmt, list(rows[start : start + 5000]))

    def add_states(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert new contacts' scores (none of them may exist): the recompute's fast path."""
        bulk.insert(self.conn, contact_scores, rows)

    def any_due(self, now: datetime) -> bool:
        return bool(self.conn.execute(select(due_clause(now))).scalar())

    def claim_due(self, now: datetime, limit: int) -> list[ContactScoreRecord]:
        """Scores whose decay has crossed a threshold by `now` (locked, SKIP LOCKED on PG)."""
        stmt = (
            select(contact_scores)
            .where(contact_scores.c.cross_at <= now)
            .order_by(contact_scores.c.cross_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [ContactScoreRecord.from_row(row) for row in self.conn.execute(stmt)]

    def rearm(self, workspace_id: int, now: datetime) -> int:
        """Ask for every decaying score of the workspace to be looked at again (its thresholds
        changed): settled up to now, so only crossings from now on count."""
        result = self.conn.execute(
            update(contact_scores)
            .where(
                contact_scores.c.workspace_id == workspace_id,
                contact_scores.c.norm != 0,
                (contact_scores.c.cross_at.is_(None)) | (contact_scores.c.cross_at > now),
            )
            .values(checked_at=now, cross_at=now)
        )
        return int(result.rowcount or 0)

    def clear(self, workspace_id: int) -> None:
        """Forget every score and award of the workspace (before a recompute)."""
        self.conn.execute(delete(score_awards).where(score_awards.c.workspace_id == workspace_id))
        self.conn.execute(
            delete(contact_scores).where(contact_scores.c.workspace_id == workspace_id)
        )

    def clear_contacts(self, workspace_id: int, contact_ids: Sequence[int]) -> None:
        # `+ 0`: by contact (SQLite without statistics took the (workspace, score) index and
        # read every score of the workspace for each page of a recompute)
        for table in (score_awards, contact_scores):
            self.conn.execute(
                delete(table).where(
                    (table.c.workspace_id + 0) == workspace_id, table.c.contact_id.in_(contact_ids)
                )
            )

    # --- the ledger -------------------------------------------------------------------------

    def add_awards(self, rows: Sequence[dict[str, Any]]) -> None:
        bulk.insert(self.conn, score_awards, rows)

    def awards_since(
        self, workspace_id: int, contact_ids: Iterable[int], rules: Iterable[str], since: datetime
    ) -> list[ScoreAwardRecord]:
        """Awards of these rules (as 'score/rule') to these contacts after `since`: what caps
        count."""
        wanted = sorted(set(contact_ids))
        keys = sorted(set(rules))
        if not wanted or not keys:
            return []
        out = []
        for start in range(0, len(wanted), _CHUNK):
            stmt = select(score_awards).where(
                score_awards.c.workspace_id == workspace_id,
                score_awards.c.contact_id.in_(wanted[start : start + _CHUNK]),
                (score_awards.c.score + "/" + score_awards.c.rule).in_(keys),
                score_awards.c.at > since,
            )
            out += [ScoreAwardRecord.from_row(row) for row in self.conn.execute(stmt)]
        return out

    def events_of(
        self, workspace_id: int, contact_ids: Sequence[int], names: set[str], up_to: int
    ) -> list[Any]:
        """The events of these names for these contacts (a page of the workspace's contacts,
        by id) up to log position `up_to`, in log order: what a recompute scores.

        Read as the contact id range the page spans, on the (contact_id, id) index: the name,
        workspace and log position are compared as expressions (`name || ''`, `+ 0`) that no
        index serves, and the rows sorted here. With plain columns (or ORDER BY id) SQLite,
        without statistics, scanned the log by id or by (workspace, name, timestamp) for every
        page: a recompute quadratic in the log (300,000 events × 100 pages)."""
        if not contact_ids:
            return []
        wanted = set(contact_ids)
        stmt = select(
            events.c.id,
            events.c.contact_id,
            events.c.name,
            events.c.properties,
            events.c.timestamp,
        ).where(
            events.c.contact_id.between(min(wanted), max(wanted)),
            (events.c.id + 0) <= up_to,
            events.c.name.concat("").in_(sorted(names)),
            (events.c.workspace_id + 0) == workspace_id,
        )
        rows = [row for row in self.conn.execute(stmt) if row.contact_id in wanted]
        rows.sort(key=lambda row: row.id)  # log order (sorted here: see above)
        return rows

    def awards_of(self, workspace_id: int, contact_id: int) -> list[ScoreAwardRecord]:
        stmt = (
            select(score_awards)
            .where(
                score_awards.c.workspace_id == workspace_id,
                score_awards.c.contact_id == contact_id,
            )
            .order_by(score_awards.c.id)
        )
        return [ScoreAwardRecord.from_row(row) for row in self.conn.execute(stmt)]

    def count(self, workspace_id: int) -> int:
        return int(
            self.conn.execute(
                select(func.count()).where(contact_scores.c.workspace_id == workspace_id)
            ).scalar_one()
        )

    def contact_ids(self, workspace_id: int, after_id: int, limit: int) -> list[int]:
        """The workspace's contacts by id, a page at a time (what a recompute walks)."""
        stmt = (
            select(contacts.c.id)
            .where(and_(contacts.c.workspace_id == workspace_id, contacts.c.id > after_id))
            .order_by(contacts.c.id)
            .limit(limit)
        )
        return list(self.conn.execute(stmt).scalars())

    def contact_count(self, workspace_id: int) -> int:
        return int(
            self.conn.execute(
                select(func.count()).where(contacts.c.workspace_id == workspace_id)
            ).scalar_one()
        )
