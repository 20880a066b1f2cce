"""The one way deals, tasks, notes and owners change, inside the caller's transaction.

The API and the engine both go through a CrmWriter opened on a ContactWriter: every change is
validated first, then written, and recorded as an event in the contact's log by that writer
(`deal.created`, `deal.stage_changed`, …), so it commits with whatever else the transaction
does — for the engine, with the step that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from conveyor.clock import Clock
from conveyor.domain import crm
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.fields import FieldDefinition, FieldType, coerce, parse_datetime
from conveyor.domain.workspaces import Workspace
from conveyor.services.contact_writer import ContactWriter
from conveyor.store.records import DealRecord, MemberRecord, PipelineRecord, TaskRecord
from conveyor.store.store import Store, Tx

T = TypeVar("T")


@dataclass
class DealDraft:
    """A deal's values as given (API body or automation node), not yet checked."""

    values: dict[str, Any]
    contacts: list[int] = field(default_factory=list)


def write(
    store: Store, clock: Clock, workspace: Workspace, work: Callable[[Tx, CrmWriter], T]
) -> T:
    """`work` in one write transaction with a CrmWriter, its events flushed at the end."""

    def run(tx: Tx) -> T:
        writer = ContactWriter(tx, workspace, clock.now(), source="api")
        result = work(tx, CrmWriter(tx, writer))
        writer.flush()
        return result

    return store.transact(run)


def pipeline_of(record: PipelineRecord) -> crm.Pipeline:
    return crm.parse_pipeline({"key": record.key, "name": record.name, "stages": record.stages})


def deal_fields(tx: Tx, workspace_id: int) -> dict[str, FieldDefinition]:
    return {
        r.key: FieldDefinition(r.key, FieldType(r.type), r.label, tuple(r.choices or ()) or None)
        for r in tx.crm.deal_fields(workspace_id)
    }


class CrmWriter:
    def __init__(self, tx: Tx, writer: ContactWriter) -> None:
        self.tx = tx
        self.writer = writer
        self.workspace_id = writer.workspace.id
        self._pipelines: dict[str, PipelineRecord | None] = {}
        self._by_id: dict[int, PipelineRecord] = {}
        self._fields: dict[str, FieldDefinition] | None = None

    @property
    def now(self) -> datetime:
        return self.writer.now

    # --- lookups ---------------------------------------------------------------------------

    def pipeline(
        self, key: Any, field_name: str = "pipeline"
    ) -> tuple[PipelineRecord, crm.Pipeline]:
        if not isinstance(key, str):
            raise InvalidInput(field_name, "names a pipeline by its key")
        if key not in self._pipelines:
            record = self.tx.crm.pipeline(self.workspace_id, key)
            self._pipelines[key] = record
            if record is not None:
                self._by_id[record.id] = record
        record = self._pipelines[key]
        if record is None:
            raise InvalidInput(field_name, f"no pipeline '{key}' in this workspace")
        return record, pipeline_of(record)

    def pipeline_by_id(self, pipeline_id: int) -> tuple[PipelineRecord, crm.Pipeline]:
        if pipeline_id not in self._by_id:
            found = [p for p in self.tx.crm.pipelines(self.workspace_id) if p.id == pipeline_id]
            if not found:
                raise NotFound(f"no pipeline {pipeline_id}")
            self._by_id[pipeline_id] = found[0]
        record = self._by_id[pipeline_id]
        return record, pipeline_of(record)

    def member(self, ref: Any, field_name: str) -> MemberRecord:
        """A member of this workspace by id or email; another workspace's is not found."""
        found = None
        if isinstance(ref, int) and not isinstance(ref, bool):
            found = self.tx.crm.member(self.workspace_id, ref) if 0 < ref < 2**31 else None
        elif isinstance(ref, str) and ref.strip():
            text = ref.strip()
            if text.isdigit() and len(text) < 10:
                found = self.tx.crm.member(self.workspace_id, int(text))
            else:
                found = self.tx.crm.member_by_email(self.workspace_id, text.lower())
        else:
            raise InvalidInput(field_name, "a member's id or email")
        if found is None:
            raise InvalidInput(field_name, f"no member '{ref}' in this workspace")
        return found

    def round_robin(self, role: str, field_name: str = "role") -> MemberRecord:
        if role not in crm.ROLES:
            raise InvalidInput(field_name, f"one of {', '.join(crm.ROLES)}")
        candidates = {m.id: m for m in self.tx.crm.members(self.workspace_id) if m.role == role}
        if not candidates:
            raise InvalidInput(field_name, f"no member has the role '{role}'")
        last = self.tx.crm.rotation(self.workspace_id, role)
        chosen = crm.next_member(list(candidates), last)
        self.tx.crm.rotate(self.workspace_id, role, chosen, existed=last is not None)
        return candidates[chosen]

    def fields(self) -> dict[str, FieldDefinition]:
        if self._fields is None:
            self._fields = deal_fields(self.tx, self.workspace_id)
        return self._fields

    def _contact(self, contact_id: Any, field_name: str) -> int:
        if not isinstance(contact_id, int) or isinstance(contact_id, bool) or contact_id < 1:
            raise InvalidInput(field_name, "a contact id")
        if self.writer.by_id(contact_id) is None:
            raise InvalidInput(field_name, f"no contact {contact_id} in this workspace")
        return contact_id

    def _record(self, contact_id: int | None, name: str, properties: dict[str, Any]) -> None:
        state = self.writer.by_id(contact_id) if contact_id is not None else None
        self.writer.record(state, name, properties)

    # --- owners ----------------------------------------------------------------------------

    def set_contact_owner(self, contact_id: int, member: MemberRecord | None) -> bool:
        old = self.tx.crm.owner_of(contact_id)
        new = member.id if member is not None else None
        if old == new:
            return False
        self.tx.crm.set_owner(self.workspace_id, contact_id, new, self.now)
        self._record(contact_id, "contact.owner_changed", {"from": old, "to": new})
        return True

    # --- deals -----------------------------------------------------------------------------

    def create_deal(self, draft: DealDraft) -> DealRecord:
        v = draft.values
        record, pipeline = self.pipeline(v.get("pipeline"))
        stage = v.get("stage") or pipeline.stages[0].name
        pipeline.stage(stage)
        contact_id = self._contact(v.get("contact_id"), "contact_id")
        others = [self._contact(c, f"contacts.{i}") for i, c in enumerate(draft.contacts)]
        status = crm.check_status(v.get("status", "open"), v.get("lost_reason"))
        owner = v.get("owner_id")
        owner_id = self.member(owner, "owner_id").id if owner is not None else None
        title = v.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 255:
            raise InvalidInput("title", "1-255 characters")
        values = {
            "workspace_id": self.workspace_id,
            "pipeline_id": record.id,
            "title": title.strip(),
            "value_minor": crm.to_minor(v.get("value", 0)),
            "currency": crm.check_currency(v.get("currency", "EUR")),
            "contact_id": contact_id,
            "owner_id": owner_id,
            "stage": stage,
            "status": status,
            "lost_reason": v.get("lost_reason"),
            "expected_close": crm.check_close_date(v.get("expected_close")),
            "fields": self._deal_fields(v.get("fields") or {}, {}),
            "created_at": self.now,
            "updated_at": self.now,
            "closed_at": self.now if status != "open" else None,
        }
        deal_id = self.tx.crm.add_deal(values)
        others = [c for c in dict.fromkeys(others) if c != contact_id]
        self.tx.crm.set_deal_contacts(deal_id, others)
        deal = DealRecord(id=deal_id, **values)
        self._record(contact_id, "deal.created", self._about(deal, pipeline.key))
        if status != "open":
            self._closed(deal, pipeline.key)
        return deal

    def update_deal(self, deal: DealRecord, changes: dict[str, Any]) -> DealRecord:
        """Apply changes (stage, stages: several moves, value, currency, status, lost_reason,
        owner_id, title, expected_close, fields) and record an event for each that matters."""
        _, pipeline = self.pipeline_by_id(deal.pipeline_id)
        moves = list(changes.get("stages") or [])
        if "stage" in changes and changes["stage"] is not None:
            moves.append(changes["stage"])
        crm.check_moves(pipeline, moves)
        values: dict[str, Any] = {}
        if "title" in changes:
            title = changes["title"]
            if not isinstance(title, str) or not title.strip() or len(title) > 255:
                raise InvalidInput("title", "1-255 characters")
            values["title"] = title.strip()
        if "value" in changes:
            values["value_minor"] = crm.to_minor(changes["value"])
        if "currency" in changes:
            values["currency"] = crm.check_currency(changes["currency"])
        if "expected_close" in changes:
            values["expected_close"] = crm.check_close_date(changes["expected_close"])
        status = changes.get("status") or deal.status
        lost_reason = changes.get("lost_reason", deal.lost_reason if status == "lost" else None)
        crm.check_status(status, lost_reason)
        if "owner_id" in changes:
            owner = changes["owner_id"]
            values["owner_id"] = self.member(owner, "owner_id").id if owner is not None else None
        if "fields" in changes:
            values["fields"] = self._deal_fields(changes["fields"] or {}, deal.fields)
        if status != deal.status:
            values["status"] = status
            values["closed_at"] = self.now if status != "open" else None
        values["lost_reason"] = lost_reason
        if moves:
            values["stage"] = moves[-1]
        values["updated_at"] = self.now
        new = replace(deal, **values)
        self.tx.crm.change_deal(deal.id, values)
        about = self._about(new, pipeline.key)
        here = deal.stage
        for stage in moves:
            if stage != here:
                self._record(
                    deal.contact_id, "deal.stage_changed", {**about, "from": here, "to": stage}
                )
                here = stage
        quiet = ("title", "value_minor", "currency", "expected_close", "fields")
        if any(getattr(new, k) != getattr(deal, k) for k in quiet):
            self._record(deal.contact_id, "deal.updated", about)
        if new.owner_id != deal.owner_id:
            self._record(
                deal.contact_id,
                "deal.owner_changed",
                {**about, "from": deal.owner_id, "to": new.owner_id},
            )
        if new.status != deal.status:
            if new.status == "open":
                self._record(deal.contact_id, "deal.reopened", about)
            else:
                self._closed(new, pipeline.key)
        return new

    def set_deal_contacts(self, deal: DealRecord, contact_ids: list[int]) -> None:
        others = [self._contact(c, f"contacts.{i}") for i, c in enumerate(contact_ids)]
        self.tx.crm.set_deal_contacts(
            deal.id, [c for c in dict.fromkeys(others) if c != deal.contact_id]
        )

    def _closed(self, deal: DealRecord, pipeline: str) -> None:
        name = "deal.won" if deal.status == "won" else "deal.lost"
        about = self._about(deal, pipeline)
        if deal.status == "lost":
            about["lost_reason"] = deal.lost_reason
        self._record(deal.contact_id, name, about)

    @staticmethod
    def _about(deal: DealRecord, pipeline: str) -> dict[str, Any]:
        return {
            "deal_id": deal.id,
            "title": deal.title,
            "pipeline": pipeline,
            "stage": deal.stage,
            "status": deal.status,
            "value": crm.from_minor(deal.value_minor),
            "currency": deal.currency,
            "owner": deal.owner_id,
        }

    def _deal_fields(self, raw: Any, current: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise InvalidInput("fields", "a mapping of deal field key → value")
        out = dict(current)
        definitions = self.fields()
        for key, value in raw.items():
            definition = definitions.get(key)
            if definition is None:
                raise InvalidInput(
                    f"fields.{key}",
                    "is not a declared deal field; declare it with POST /deal-fields",
                )
            try:
                stored = coerce(definition, value)
            except InvalidInput as exc:
                raise exc.prefixed("fields") from None
            if stored is None:
                out.pop(key, None)
            else:
                out[key] = stored
        return out

    # --- notes and tasks ------------------------------------------------------------------

    def add_note(
        self, body: Any, *, deal: DealRecord | None, contact_id: int | None, author: Any = None
    ) -> int:
        if not isinstance(body, str) or not body.strip() or len(body) > 10000:
            raise InvalidInput("body", "1-10000 characters")
        if deal is None and contact_id is None:
            raise InvalidInput("deal_id", "a note is about a deal or a contact")
        if contact_id is not None:
            self._contact(contact_id, "contact_id")
        author_id = self.member(author, "author_id").id if author is not None else None
        note_id = self.tx.crm.add_note(
            {
                "workspace_id": self.workspace_id,
                "deal_id": deal.id if deal else None,
                "contact_id": contact_id if contact_id is not None else (deal and deal.contact_id),
                "author_id": author_id,
                "body": body,
                "created_at": self.now,
            }
        )
        about = contact_id if contact_id is not None else deal.contact_id  # type: ignore[union-attr]
        self._record(
            about, "note.added", {"note_id": note_id, "deal_id": deal.id if deal else None}
        )
        return note_id

    def create_task(self, values: dict[str, Any]) -> TaskRecord:
        kind = values.get("type", "todo")
        if kind not in crm.TASK_TYPES:
            raise InvalidInput("type", f"one of {', '.join(crm.TASK_TYPES)}")
        title = values.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 255:
            raise InvalidInput("title", "1-255 characters")
        due = moment(values.get("due_at"), "due_at")
        assignee = values.get("assignee_id")
        assignee_id = self.member(assignee, "assignee_id").id if assignee is not None else None
        deal = None
        if values.get("deal_id") is not None:
            deal = self.tx.crm.deal(self.workspace_id, int(values["deal_id"]))
            if deal is None:
                raise InvalidInput("deal_id", f"no deal {values['deal_id']} in this workspace")
        contact_id = values.get("contact_id")
        if contact_id is not None:
            self._contact(contact_id, "contact_id")
        elif deal is not None:
            contact_id = deal.contact_id
        row = {
            "workspace_id": self.workspace_id,
            "type": kind,
            "title": title.strip(),
            "due_at": due,
            "assignee_id": assignee_id,
            "contact_id": contact_id,
            "deal_id": deal.id if deal else None,
            "done_at": None,
            "overdue_at": None,
            "created_at": self.now,
        }
        task = TaskRecord(id=self.tx.crm.add_task(row), **row)
        self._record(contact_id, "task.created", task_about(task))
        return task

    def complete_task(self, task: TaskRecord) -> TaskRecord:
        if task.done_at is not None:
            return task
        self.tx.crm.change_task(task.id, {"done_at": self.now})
        done = replace(task, done_at=self.now)
        self._record(task.contact_id, "task.completed", task_about(done))
        return done

    def overdue(self, task: TaskRecord) -> None:
        """The sweep claimed this task as overdue: its one event."""
        self._record(task.contact_id, "task.overdue", task_about(task))


def moment(value: Any, field_name: str) -> datetime | None:
    """An aware UTC date-time from a datetime or ISO text (None stays None)."""
    if value is None:
        return None
    found = value if isinstance(value, datetime) else parse_datetime(value)
    try:
        if found is None or found.tzinfo is None:
            raise ValueError
        return found.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            field_name, "a date-time with its offset, like 2026-12-01T09:00:00Z"
        ) from None


def task_about(task: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "type": task.type,
        "title": task.title,
        "due_at": task.due_at.isoformat() if task.due_at else None,
        "assignee": task.assignee_id,
        "deal_id": task.deal_id,
    }
