"""SQL for the sales side: members, contact owners, pipelines, deals, notes and tasks.

Every method takes the workspace id and filters on it: a row of another workspace is simply
not found."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from conveyor.store.records import (
    DealRecord,
    FieldRecord,
    MemberRecord,
    NoteRecord,
    PipelineRecord,
    TaskRecord,
)
from conveyor.store.schema import (
    contact_owners,
    contacts,
    deal_contacts,
    deal_fields,
    deals,
    members,
    notes,
    pipelines,
    rotations,
    tasks,
)


class CrmQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- members -------------------------------------------------------------------------

    def members(self, workspace_id: int) -> list[MemberRecord]:
        rows = self.conn.execute(
            select(members).where(members.c.workspace_id == workspace_id).order_by(members.c.id)
        )
        return [MemberRecord.from_row(r) for r in rows]

    def member(self, workspace_id: int, member_id: int) -> MemberRecord | None:
        row = self.conn.execute(
            select(members).where(members.c.workspace_id == workspace_id, members.c.id == member_id)
        ).first()
        return MemberRecord.from_row(row) if row else None

    def member_by_email(self, workspace_id: int, email: str) -> MemberRecord | None:
        row = self.conn.execute(
            select(members).where(members.c.workspace_id == workspace_id, members.c.email == email)
        ).first()
        return MemberRecord.from_row(row) if row else None

    def add_member(self, workspace_id: int, values: dict[str, Any], now: datetime) -> int:
        return self.conn.execute(
            insert(members)
            .values(workspace_id=workspace_id, created_at=now, **values)
            .returning(members.c.id)
        ).scalar_one()

    def change_member(self, member_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(members).where(members.c.id == member_id).values(**values))

    def remove_member(self, member_id: int) -> None:
        self.conn.execute(delete(members).where(members.c.id == member_id))

    def rotation(self, workspace_id: int, role: str) -> int | None:
        query = select(rotations.c.last_member_id).where(
            rotations.c.workspace_id == workspace_id, rotations.c.role == role
        )
        if self.dialect == "postgresql":
            query = query.with_for_update()
        return self.conn.execute(query).scalar()

    def rotate(self, workspace_id: int, role: str, member_id: int, *, existed: bool) -> None:
        if existed:
            self.conn.execute(
                update(rotations)
                .where(rotations.c.workspace_id == workspace_id, rotations.c.role == role)
                .values(last_member_id=member_id)
            )
        else:
            self.conn.execute(
                insert(rotations).values(
                    workspace_id=workspace_id, role=role, last_member_id=member_id
                )
            )

    # --- contact owners ------------------------------------------------------------------

    def contact_exists(self, workspace_id: int, contact_id: int) -> bool:
        return (
            self.conn.execute(
                select(contacts.c.id).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.id == contact_id
                )
            ).first()
            is not None
        )

    def owner_of(self, contact_id: int) -> int | None:
        return self.conn.execute(
            select(contact_owners.c.member_id).where(contact_owners.c.contact_id == contact_id)
        ).scalar()

    def set_owner(
        self, workspace_id: int, contact_id: int, member_id: int | None, now: datetime
    ) -> None:
        self.conn.execute(delete(contact_owners).where(contact_owners.c.contact_id == contact_id))
        if member_id is not None:
            self.conn.execute(
                insert(contact_owners).values(
                    contact_id=contact_id,
                    workspace_id=workspace_id,
                    member_id=member_id,
                    updated_at=now,
                )
            )

    # --- pipelines -----------------------------------------------------------------------

    def pipelines(self, workspace_id: int) -> list[PipelineRecord]:
        rows = self.conn.execute(
            select(pipelines)
            .where(pipelines.c.workspace_id == workspace_id)
            .order_by(pipelines.c.key)
        )
        return [PipelineRecord.from_row(r) for r in rows]

    def pipeline(self, workspace_id: int, key: str) -> PipelineRecord | None:
        row = self.conn.execute(
            select(pipelines).where(
                pipelines.c.workspace_id == workspace_id, pipelines.c.key == key
            )
        ).first()
        return PipelineRecord.from_row(row) if row else None

    def add_pipeline(self, workspace_id: int, values: dict[str, Any], now: datetime) -> int:
        return self.conn.execute(
            insert(pipelines)
            .values(workspace_id=workspace_id, created_at=now, updated_at=now, **values)
            .returning(pipelines.c.id)
        ).scalar_one()

    def change_pipeline(self, pipeline_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(pipelines).where(pipelines.c.id == pipeline_id).values(**values))

    def remove_pipeline(self, pipeline_id: int) -> None:
        self.conn.execute(delete(pipelines).where(pipelines.c.id == pipeline_id))

    def stages_in_use(self, pipeline_id: int) -> set[str]:
        return set(
            self.conn.execute(
                select(deals.c.stage).where(deals.c.pipeline_id == pipeline_id).distinct()
            ).scalars()
        )

    # --- deal fields ---------------------------------------------------------------------

    def deal_fields(self, workspace_id: int) -> list[FieldRecord]:
        rows = self.conn.execute(
            select(deal_fields)
            .where(deal_fields.c.workspace_id == workspace_id)
            .order_by(deal_fields.c.key)
        )
        return [FieldRecord.from_row(r) for r in rows]

    def add_deal_field(self, workspace_id: int, values: dict[str, Any], now: datetime) -> None:
        self.conn.execute(
            insert(deal_fields).values(workspace_id=workspace_id, created_at=now, **values)
        )

    # --- deals ---------------------------------------------------------------------------

    def deal(self, workspace_id: int, deal_id: int) -> DealRecord | None:
        row = self.conn.execute(
            select(deals).where(deals.c.workspace_id == workspace_id, deals.c.id == deal_id)
        ).first()
        return DealRecord.from_row(row) if row else None

    def deals(
        self,
        workspace_id: int,
        *,
        pipeline_id: int | None = None,
        contact_id: int | None = None,
        status: str | None = None,
        owner_id: int | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[DealRecord]:
        query = select(deals).where(deals.c.workspace_id == workspace_id, deals.c.id > after)
        if pipeline_id is not None:
            query = query.where(deals.c.pipeline_id == pipeline_id)
        if contact_id is not None:
            extra = select(deal_contacts.c.deal_id).where(deal_contacts.c.contact_id == contact_id)
            query = query.where(or_(deals.c.contact_id == contact_id, deals.c.id.in_(extra)))
        if status is not None:
            query = query.where(deals.c.status == status)
        if owner_id is not None:
            query = query.where(deals.c.owner_id == owner_id)
        rows = self.conn.execute(query.order_by(deals.c.id).limit(limit))
        return [DealRecord.from_row(r) for r in rows]

    def deal_facts(self, contact_ids: list[int]) -> list[tuple[int, int, str, str, str, int]]:
        """(contact id, deal id, pipeline key, stage, status, value in minor units) of the
        deals these contacts are the main contact of."""
        out: list[tuple[int, int, str, str, str, int]] = []
        for start in range(0, len(contact_ids), 500):
            rows = self.conn.execute(
                select(
                    deals.c.contact_id,
                    deals.c.id,
                    pipelines.c.key,
                    deals.c.stage,
                    deals.c.status,
                    deals.c.value_minor,
                )  # fmt: skip
                .join(pipelines, pipelines.c.id == deals.c.pipeline_id)
                .where(deals.c.contact_id.in_(contact_ids[start : start + 500]))
                .order_by(deals.c.id)
            )
            out.extend(tuple(r) for r in rows)  # type: ignore[misc]
        return out

    def open_deals(self, workspace_id: int) -> list[DealRecord]:
        return self.deals(workspace_id, status="open", limit=10**9)

    def add_deal(self, values: dict[str, Any]) -> int:
        return self.conn.execute(insert(deals).values(**values).returning(deals.c.id)).scalar_one()

    def change_deal(self, deal_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(deals).where(deals.c.id == deal_id).values(**values))

    def remove_deal(self, deal_id: int) -> None:
        self.conn.execute(delete(deals).where(deals.c.id == deal_id))

    def deal_contacts(self, deal_ids: Iterable[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        ids = list(deal_ids)
        if not ids:
            return out
        for row in self.conn.execute(
            select(deal_contacts.c.deal_id, deal_contacts.c.contact_id)
            .where(deal_contacts.c.deal_id.in_(ids))
            .order_by(deal_contacts.c.contact_id)
        ):
            out.setdefault(row.deal_id, []).append(row.contact_id)
        return out

    def set_deal_contacts(self, deal_id: int, contact_ids: list[int]) -> None:
        self.conn.execute(delete(deal_contacts).where(deal_contacts.c.deal_id == deal_id))
        if contact_ids:
            self.conn.execute(
                insert(deal_contacts),
                [{"deal_id": deal_id, "contact_id": c} for c in contact_ids],
            )

    def existing_contacts(self, workspace_id: int, contact_ids: Iterable[int]) -> set[int]:
        ids = list(contact_ids)
        if not ids:
            return set()
        return set(
            self.conn.execute(
                select(contacts.c.id).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.id.in_(ids)
                )
            ).scalars()
        )

    # --- notes ---------------------------------------------------------------------------

    def add_note(self, values: dict[str, Any]) -> int:
        return self.conn.execute(insert(notes).values(**values).returning(notes.c.id)).scalar_one()

    def notes(
        self, workspace_id: int, *, deal_id: int | None = None, contact_id: int | None = None
    ) -> list[NoteRecord]:
        query = select(notes).where(notes.c.workspace_id == workspace_id)
        if deal_id is not None:
            query = query.where(notes.c.deal_id == deal_id)
        if contact_id is not None:
            query = query.where(notes.c.contact_id == contact_id)
        return [NoteRecord.from_row(r) for r in self.conn.execute(query.order_by(notes.c.id))]

    # --- tasks ---------------------------------------------------------------------------

    def task(self, workspace_id: int, task_id: int) -> TaskRecord | None:
        row = self.conn.execute(
            select(tasks).where(tasks.c.workspace_id == workspace_id, tasks.c.id == task_id)
        ).first()
        return TaskRecord.from_row(row) if row else None

    def tasks(
        self,
        workspace_id: int,
        *,
        assignee_id: int | None = None,
        deal_id: int | None = None,
        contact_id: int | None = None,
        done: bool | None = None,
        limit: int = 1000,
    ) -> list[TaskRecord]:
        query = select(tasks).where(tasks.c.workspace_id == workspace_id)
        for column, value in (
            (tasks.c.assignee_id, assignee_id),
            (tasks.c.deal_id, deal_id),
            (tasks.c.contact_id, contact_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if done is not None:
            query = query.where(tasks.c.done_at.is_not(None) if done else tasks.c.done_at.is_(None))
        rows = self.conn.execute(query.order_by(tasks.c.id).limit(limit))
        return [TaskRecord.from_row(r) for r in rows]

    def add_task(self, values: dict[str, Any]) -> int:
        return self.conn.execute(insert(tasks).values(**values).returning(tasks.c.id)).scalar_one()

    def change_task(self, task_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))

    def remove_task(self, task_id: int) -> None:
        self.conn.execute(delete(tasks).where(tasks.c.id == task_id))

    def any_overdue(self, now: datetime) -> bool:
        return (
            self.conn.execute(select(func.count()).select_from(self._overdue(now))).scalar_one() > 0
        )

    def claim_overdue(self, now: datetime, limit: int) -> list[TaskRecord]:
        """Open tasks past due whose overdue event is not yet recorded, marked recorded in the
        same statement's transaction (compare-and-set: a peer's claim finds none of them)."""
        query = select(tasks).where(self._overdue_clause(now)).order_by(tasks.c.id).limit(limit)
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = [TaskRecord.from_row(r) for r in self.conn.execute(query)]
        claimed = []
        for task in found:
            done = self.conn.execute(
                update(tasks)
                .where(tasks.c.id == task.id, tasks.c.overdue_at.is_(None))
                .values(overdue_at=now)
            ).rowcount
            if done:
                claimed.append(task)
        return claimed

    def _overdue_clause(self, now: datetime) -> Any:
        return and_(
            tasks.c.done_at.is_(None),
            tasks.c.overdue_at.is_(None),
            tasks.c.due_at.is_not(None),
            tasks.c.due_at < now,
        )

    def _overdue(self, now: datetime) -> Any:
        return select(tasks.c.id).where(self._overdue_clause(now)).limit(1).subquery()
