"""The sales side as a user manages it: team members, contact owners, pipelines (also as YAML),
deals with their board and forecast, and notes (tasks are `tasks.Tasks`).

Each call is one transaction in one workspace; changes go through a CrmWriter, so they land in
the contact's event log like any other change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from conveyor.clock import Clock
from conveyor.domain import crm
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.fields import define_field, normalize_email
from conveyor.domain.workspaces import Workspace
from conveyor.services.crm.views import deal_view, member_view, pipeline_view
from conveyor.services.crm.writer import CrmWriter, DealDraft, pipeline_of, write
from conveyor.store.records import DealRecord
from conveyor.store.store import Store, Tx

T = TypeVar("T")


class Crm:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _write(self, workspace: Workspace, work: Callable[[Tx, CrmWriter], T]) -> T:
        return write(self.store, self.clock, workspace, work)

    # --- members -------------------------------------------------------------------------

    def members(self, workspace: Workspace) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [member_view(m) for m in tx.crm.members(workspace.id)]

    def member(self, workspace: Workspace, member_id: int) -> dict[str, Any]:
        with self.store.read() as tx:
            return member_view(self._member(tx, workspace, member_id))

    def add_member(self, workspace: Workspace, name: str, email: str, role: str) -> dict[str, Any]:
        values = _member_values(name, email, role)

        def work(tx: Tx) -> dict[str, Any]:
            if tx.crm.member_by_email(workspace.id, values["email"]) is not None:
                raise Conflict(f"a member with email {values['email']} exists", field="email")
            member_id = tx.crm.add_member(workspace.id, values, self.clock.now())
            return member_view(self._member(tx, workspace, member_id))

        return self.store.transact(work)

    def change_member(
        self, workspace: Workspace, member_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        def work(tx: Tx) -> dict[str, Any]:
            member = self._member(tx, workspace, member_id)
            values = _member_values(
                changes.get("name", member.name),
                changes.get("email", member.email),
                changes.get("role", member.role),
            )
            other = tx.crm.member_by_email(workspace.id, values["email"])
            if other is not None and other.id != member_id:
                raise Conflict(f"a member with email {values['email']} exists", field="email")
            tx.crm.change_member(member_id, values)
            return member_view(self._member(tx, workspace, member_id))

        return self.store.transact(work)

    def remove_member(self, workspace: Workspace, member_id: int) -> None:
        """Their deals and tasks keep going, unowned and unassigned; their contacts lose them."""

        def work(tx: Tx) -> None:
            self._member(tx, workspace, member_id)
            tx.crm.remove_member(member_id)

        self.store.transact(work)

    @staticmethod
    def _member(tx: Tx, workspace: Workspace, member_id: int) -> Any:
        found = tx.crm.member(workspace.id, member_id)
        if found is None:
            raise NotFound(f"no member {member_id} in this workspace")
        return found

    # --- contact owners ------------------------------------------------------------------

    def owner(self, workspace: Workspace, contact_id: int) -> dict[str, Any] | None:
        with self.store.read() as tx:
            if not tx.crm.contact_exists(workspace.id, contact_id):
                raise NotFound(f"no contact {contact_id} in this workspace")
            owner_id = tx.crm.owner_of(contact_id)
            member = tx.crm.member(workspace.id, owner_id) if owner_id else None
            return member_view(member) if member else None

    def set_owner(
        self, workspace: Workspace, contact_id: int, member: Any
    ) -> dict[str, Any] | None:
        def work(tx: Tx, w: CrmWriter) -> dict[str, Any] | None:
            if not tx.crm.contact_exists(workspace.id, contact_id):
                raise NotFound(f"no contact {contact_id} in this workspace")
            found = w.member(member, "member_id") if member is not None else None
            w.set_contact_owner(contact_id, found)
            return member_view(found) if found else None

        return self._write(workspace, work)

    # --- pipelines -----------------------------------------------------------------------

    def pipelines(self, workspace: Workspace) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [pipeline_view(p) for p in tx.crm.pipelines(workspace.id)]

    def pipeline(self, workspace: Workspace, key: str) -> dict[str, Any]:
        with self.store.read() as tx:
            return pipeline_view(self._pipeline(tx, workspace, key))

    def apply_pipeline(self, workspace: Workspace, raw: Any) -> tuple[dict[str, Any], str]:
        """Create the pipeline or change its name and stages: "created", "changed",
        "unchanged". A stage that deals are in cannot go (409 naming it)."""
        pipeline = crm.parse_pipeline(raw)
        stages = pipeline.as_dict()["stages"]

        def work(tx: Tx) -> tuple[dict[str, Any], str]:
            now = self.clock.now()
            found = tx.crm.pipeline(workspace.id, pipeline.key)
            if found is None:
                tx.crm.add_pipeline(
                    workspace.id,
                    {"key": pipeline.key, "name": pipeline.name, "stages": stages},
                    now,
                )
                result = "created"
            elif found.name == pipeline.name and found.stages == stages:
                result = "unchanged"
            else:
                kept = {s.name for s in pipeline.stages}
                gone = sorted(tx.crm.stages_in_use(found.id) - kept)
                if gone:
                    raise Conflict(
                        f"deals are in stage '{gone[0]}'; move them before removing it",
                        field="stages",
                    )
                values = {"name": pipeline.name, "stages": stages, "updated_at": now}
                tx.crm.change_pipeline(found.id, values)
                result = "changed"
            return pipeline_view(self._pipeline(tx, workspace, pipeline.key)), result

        return self.store.transact(work)

    def remove_pipeline(self, workspace: Workspace, key: str) -> None:
        def work(tx: Tx) -> None:
            found = self._pipeline(tx, workspace, key)
            if tx.crm.stages_in_use(found.id):
                raise Conflict(f"pipeline '{key}' has deals; delete or move them first")
            tx.crm.remove_pipeline(found.id)

        self.store.transact(work)

    @staticmethod
    def _pipeline(tx: Tx, workspace: Workspace, key: str) -> Any:
        found = tx.crm.pipeline(workspace.id, key)
        if found is None:
            raise NotFound(f"no pipeline '{key}' in this workspace")
        return found

    def board(self, workspace: Workspace, key: str) -> dict[str, Any]:
        """The pipeline's open deals by stage, in stage order, with counts and sums."""
        with self.store.read() as tx:
            record = self._pipeline(tx, workspace, key)
            pipeline = pipeline_of(record)
            deals = tx.crm.deals(workspace.id, pipeline_id=record.id, status="open", limit=10**6)
            extra = tx.crm.deal_contacts(d.id for d in deals)
            columns = []
            for stage in pipeline.stages:
                here = [d for d in deals if d.stage == stage.name]
                totals: dict[str, int] = {}
                for d in here:
                    totals[d.currency] = totals.get(d.currency, 0) + d.value_minor
                columns.append(
                    {
                        "stage": stage.name,
                        "probability": stage.probability,
                        "count": len(here),
                        "value": {c: crm.from_minor(v) for c, v in sorted(totals.items())},
                        "deals": [deal_view(d, key, extra.get(d.id, [])) for d in here],
                    }
                )
            return {"pipeline": key, "name": pipeline.name, "stages": columns}

    def forecast(self, workspace: Workspace, pipeline: str | None = None) -> dict[str, Any]:
        with self.store.read() as tx:
            pipelines = {p.id: p for p in tx.crm.pipelines(workspace.id)}
            if pipeline is not None and pipeline not in {p.key for p in pipelines.values()}:
                raise NotFound(f"no pipeline '{pipeline}' in this workspace")
            members = {m.id: m.email for m in tx.crm.members(workspace.id)}
            rows = []
            for deal in tx.crm.open_deals(workspace.id):
                record = pipelines[deal.pipeline_id]
                if pipeline is not None and record.key != pipeline:
                    continue
                stages = {s["name"]: s["probability"] for s in record.stages}
                rows.append(
                    crm.ForecastDeal(
                        pipeline=record.key,
                        stage=deal.stage,
                        owner=members.get(deal.owner_id) if deal.owner_id else None,
                        month=deal.expected_close[:7] if deal.expected_close else None,
                        currency=deal.currency,
                        value_minor=deal.value_minor,
                        probability=stages.get(deal.stage, 0),
                    )
                )
            return crm.forecast(rows)

    # --- deal fields ---------------------------------------------------------------------

    def deal_fields(self, workspace: Workspace) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [
                {"key": r.key, "type": r.type, "label": r.label, "choices": r.choices}
                for r in tx.crm.deal_fields(workspace.id)
            ]

    def declare_deal_field(
        self, workspace: Workspace, key: str, type_: str, label: str | None, choices: Any
    ) -> dict[str, Any]:
        definition = define_field(key, type_, label, choices)

        def work(tx: Tx) -> dict[str, Any]:
            if any(r.key == key for r in tx.crm.deal_fields(workspace.id)):
                raise Conflict(f"deal field '{key}' exists", field="key")
            values = {
                "key": definition.key,
                "type": str(definition.type),
                "label": definition.label,
                "choices": list(definition.choices) if definition.choices else None,
            }
            tx.crm.add_deal_field(workspace.id, values, self.clock.now())
            return values

        return self.store.transact(work)

    # --- deals ---------------------------------------------------------------------------

    def deals(self, workspace: Workspace, **filters: Any) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            query: dict[str, Any] = {
                k: filters[k] for k in ("contact_id", "status", "owner_id", "after", "limit")
                if filters.get(k) is not None
            }  # fmt: skip
            pipelines = {p.id: p.key for p in tx.crm.pipelines(workspace.id)}
            if filters.get("pipeline") is not None:
                ids = [i for i, k in pipelines.items() if k == filters["pipeline"]]
                if not ids:
                    raise InvalidInput("pipeline", f"no pipeline '{filters['pipeline']}'")
                query["pipeline_id"] = ids[0]
            deals = tx.crm.deals(workspace.id, **query)
            extra = tx.crm.deal_contacts(d.id for d in deals)
            return [deal_view(d, pipelines[d.pipeline_id], extra.get(d.id, [])) for d in deals]

    def deal(self, workspace: Workspace, deal_id: int) -> dict[str, Any]:
        with self.store.read() as tx:
            deal = self._deal(tx, workspace, deal_id)
            return self._view(tx, workspace, deal, notes=True)

    def create_deal(self, workspace: Workspace, draft: DealDraft) -> dict[str, Any]:
        def work(tx: Tx, w: CrmWriter) -> dict[str, Any]:
            return self._view(tx, workspace, w.create_deal(draft))

        return self._write(workspace, work)

    def update_deal(
        self, workspace: Workspace, deal_id: int, changes: dict[str, Any], contacts: Any = None
    ) -> dict[str, Any]:
        def work(tx: Tx, w: CrmWriter) -> dict[str, Any]:
            deal = w.update_deal(self._deal(tx, workspace, deal_id), changes)
            if contacts is not None:
                w.set_deal_contacts(deal, contacts)
            return self._view(tx, workspace, deal)

        return self._write(workspace, work)

    def remove_deal(self, workspace: Workspace, deal_id: int) -> None:
        def work(tx: Tx, w: CrmWriter) -> None:
            deal = self._deal(tx, workspace, deal_id)
            tx.crm.remove_deal(deal.id)
            w.writer.record(w.writer.by_id(deal.contact_id), "deal.deleted", {"deal_id": deal.id})

        self._write(workspace, work)

    def add_note(
        self, workspace: Workspace, deal_id: int, body: Any, author: Any = None
    ) -> dict[str, Any]:
        def work(tx: Tx, w: CrmWriter) -> dict[str, Any]:
            deal = self._deal(tx, workspace, deal_id)
            note_id = w.add_note(body, deal=deal, contact_id=None, author=author)
            return {"id": note_id, "deal_id": deal.id, "body": body}

        return self._write(workspace, work)

    @staticmethod
    def _deal(tx: Tx, workspace: Workspace, deal_id: int) -> DealRecord:
        found = tx.crm.deal(workspace.id, deal_id)
        if found is None:
            raise NotFound(f"no deal {deal_id} in this workspace")
        return found

    @staticmethod
    def _view(
        tx: Tx, workspace: Workspace, deal: DealRecord, notes: bool = False
    ) -> dict[str, Any]:
        key = next(p.key for p in tx.crm.pipelines(workspace.id) if p.id == deal.pipeline_id)
        view = deal_view(deal, key, tx.crm.deal_contacts([deal.id]).get(deal.id, []))
        if notes:
            view["notes"] = [
                {"id": n.id, "body": n.body, "author_id": n.author_id, "created_at": n.created_at}
                for n in tx.crm.notes(workspace.id, deal_id=deal.id)
            ]
        return view


def _member_values(name: Any, email: Any, role: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidInput("name", "1-255 characters")
    if role not in crm.ROLES:
        raise InvalidInput("role", f"one of {', '.join(crm.ROLES)}")
    try:
        address = normalize_email(email)
    except InvalidInput:
        raise InvalidInput("email", "a valid email address") from None
    return {"name": name.strip(), "email": address, "role": role}
