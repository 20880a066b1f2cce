"""Segments: saved conditions, their audiences (in SQL), explanations (per contact), and
membership over time — `segment.entered` / `segment.exited` as contacts come and go.

Membership moves two ways. `process_log` follows the event log and re-decides only the
segments an event can affect (derived from their predicates) for only the contacts it touched.
`sweep` recomputes the segments whose membership changes with the clock alone ("ordered in the
last 30 days" loses members while nothing happens).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.condition_schema import condition_schema
from conveyor.domain.conditions import (
    OPS_BY_TYPE,
    STANDARD_TYPES,
    Condition,
    find_cycle,
    segment_refs,
)
from conveyor.domain.contacts import Contact
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.evaluation import Evaluator, Snapshot, Verdict, event_names
from conveyor.domain.workspaces import Workspace
from conveyor.services import snapshots
from conveyor.services.conditions import (
    ConditionContext,
    Segment,
    dependencies,
    is_time_based,
)
from conveyor.services.contacts import Contacts, decode_cursor, encode_cursor
from conveyor.services.exports import ContactExport
from conveyor.services.log import LogConsumer
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "segments"
SEGMENT_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


class Segments:
    def __init__(self, store: Store, clock: Clock, contacts: Contacts) -> None:
        self.store = store
        self.clock = clock
        self.contacts = contacts
        self.log = LogConsumer(store, clock, [(LOG_CONSUMER, self.on_events)])

    def _context(self, tx: Tx, workspace: Workspace) -> ConditionContext:
        return ConditionContext(tx, workspace)

    # --- definitions -------------------------------------------------------------------------

    def all(self, workspace: Workspace) -> list[Segment]:
        with self.store.read() as tx:
            ctx = self._context(tx, workspace)
            return [ctx.segment(key) for key in ctx.rows]

    def get(self, workspace: Workspace, key: str) -> Segment:
        with self.store.read() as tx:
            return self._context(tx, workspace).segment(key)

    def validate(self, workspace: Workspace, raw: Any) -> Condition:
        with self.store.read() as tx:
            return self._context(tx, workspace).parse(raw)

    def save(
        self, workspace: Workspace, key: str, name: str | None, raw: Any, *, create: bool
    ) -> Segment:
        if not key or len(key) > 64 or not set(key) <= SEGMENT_KEY_CHARS:
            raise InvalidInput("key", "a segment key is 1-64 of a-z, 0-9, - and _")

        def work(tx: Tx) -> Segment:
            ctx = self._context(tx, workspace)
            existing = ctx.rows.get(key)
            if create and existing is not None:
                raise Conflict(f"segment '{key}' exists already", field="key")
            if not create and existing is None:
                raise NotFound(f"no segment '{key}' in this workspace")
            try:
                condition = ctx.parse(raw if raw is not None else existing.condition)
            except InvalidInput as exc:
                raise exc.prefixed("condition") from None
            graph = {k: segment_refs(c) for k, c in ctx.conditions.items()}
            graph[key] = segment_refs(condition)
            cycle = find_cycle(graph, start=key)
            if cycle:
                raise InvalidInput(
                    "condition",
                    "segments would refer to each other in a cycle: " + " → ".join(cycle),
                )
            conditions = {**ctx.conditions, key: condition}
            values = {
                "name": (name or (existing.name if existing is not None else key)).strip()[:255]
                or key,
                "condition": raw if raw is not None else existing.condition,
                "time_based": is_time_based(condition, conditions),
            }
            now = self.clock.now()
            if existing is None:
                tx.segments.add(workspace.id, {"key": key, **values}, now)
            else:
                tx.segments.change(existing.id, {**values, "updated_at": now})
            ctx = self._context(tx, workspace)
            segment = ctx.segment(key)
            self._refresh(tx, ctx, segment, now)
            return segment

        return self.store.transact(work)

    def delete(self, workspace: Workspace, key: str) -> None:
        def work(tx: Tx) -> None:
            ctx = self._context(tx, workspace)
            segment = ctx.segment(key)
            users = sorted(
                k for k, c in ctx.conditions.items() if key in segment_refs(c) and k != key
            )
            if users:
                raise Conflict(
                    f"segment '{key}' is used by segment(s) {', '.join(users)}; change those first"
                )
            automations = sorted(
                row.key
                for row in tx.automations.all(workspace.id)
                if row.status != "archived"
                and _mentions_segment(tx.automations.definition(row.id, row.version), key)
            )
            if automations:
                raise Conflict(
                    f"segment '{key}' is used by automation(s) {', '.join(automations)}; "
                    "change or archive those first"
                )
            tx.segments.remove(segment.id)

        self.store.transact(work)

    def vocabulary(self, workspace: Workspace) -> dict[str, Any]:
        """What a condition can name in this workspace, for an editor's pickers, with the
        condition language's JSON Schema (the editor builds each predicate's form from it)."""
        with self.store.read() as tx:
            ctx = self._context(tx, workspace)
            fields = [
                {"key": k, "type": str(t), "label": k.replace("_", " "), "standard": True}
                for k, t in STANDARD_TYPES.items()
            ] + [
                {
                    "key": f.key,
                    "type": str(f.type),
                    "label": f.label or f.key,
                    "choices": list(f.choices) if f.choices else None,
                    "standard": False,
                }
                for f in ctx.fields.values()
            ]
            return {
                "schema": condition_schema(),
                "fields": fields,
                "ops": {str(t): sorted(ops) for t, ops in OPS_BY_TYPE.items()},
                "lists": sorted(ctx.lists),
                "segments": [{"key": k, "name": r.name} for k, r in sorted(ctx.rows.items())],
                "automations": sorted(ctx.automations.values()),
                "scores": sorted({"score", *ctx.scoring.scores}),
                "tags": tx.catalog.tag_names(workspace.id),
                "events": tx.catalog.event_names(workspace.id),
                "templates": sorted(row.key for row in tx.templates.all(workspace.id)),
                "pipelines": sorted(row.key for row in tx.crm.pipelines(workspace.id)),
            }

    # --- audiences ---------------------------------------------------------------------------

    def count(self, workspace: Workspace, key: str | None = None, raw: Any = None) -> int:
        with self.store.read() as tx:
            ctx = self._context(tx, workspace)
            condition = ctx.segment(key).condition if key else ctx.parse(raw)
            return tx.audiences.count(ctx.scope(self.clock.now()), condition)

    def members(
        self, workspace: Workspace, key: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Contact], str | None]:
        if not 1 <= limit <= 500:
            raise InvalidInput("limit", "must be between 1 and 500")
        with self.store.read() as tx:
            ctx = self._context(tx, workspace)
            rows = tx.audiences.members(
                ctx.scope(self.clock.now()),
                ctx.segment(key).condition,
                after_id=decode_cursor(cursor),
                limit=limit + 1,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            items = self.contacts._views(tx, workspace, rows)
        return items, encode_cursor(rows[-1].id) if more else None

    def export_csv(self, workspace: Workspace, key: str) -> Iterator[str]:
        """The audience as CSV (the contacts export's columns), streamed page by page."""
        with self.store.read() as tx:
            fields = [row.key for row in tx.catalog.fields(workspace.id)]
            lists = [row.key for row in tx.catalog.lists(workspace.id)]
        return ContactExport(fields, lists).stream(
            lambda cursor: self.members(workspace, key, cursor=cursor, limit=500)
        )

    def explain(
        self,
        workspace: Workspace,
        contact_id: int,
        key: str | None = None,
        raw: Any = None,
        entered_at: datetime | None = None,
    ) -> Verdict:
        """Decide the condition for one contact now, saying which predicates held and why."""
        with self.store.read() as tx:
            ctx = self._context(tx, workspace)
            condition = ctx.segment(key).condition if key else ctx.parse(raw)
            snaps = self.snapshots(tx, ctx, [contact_id], event_names(condition, ctx.conditions))
            if contact_id not in snaps:
                raise NotFound(f"no contact {contact_id} in this workspace")
            snaps[contact_id].entered_at = entered_at
            return Evaluator(ctx.conditions).evaluate(
                condition, snaps[contact_id], self.clock.now()
            )

    def snapshots(
        self, tx: Tx, ctx: ConditionContext, contact_ids: list[int], names: set[str]
    ) -> dict[int, Snapshot]:
        return snapshots.load(tx, ctx, contact_ids, names).snapshots

    # --- membership over time ----------------------------------------------------------------

    def _refresh(
        self, tx: Tx, ctx: ConditionContext, segment: Segment, now: datetime
    ) -> tuple[int, int]:
        """Recompute one segment's members in SQL; record who entered and who left."""
        current = tx.audiences.member_ids(ctx.scope(now), segment.condition)
        stored = tx.segments.member_ids(segment.id)
        entered, exited = sorted(current - stored), sorted(stored - current)
        tx.segments.enter([(segment.id, c) for c in entered], now)
        tx.segments.leave_all(segment.id, exited)
        rows = [
            _membership_event(ctx.workspace.id, c, "segment.entered", segment.key, now)
            for c in entered
        ]
        rows += [
            _membership_event(ctx.workspace.id, c, "segment.exited", segment.key, now)
            for c in exited
        ]
        tx.events.append(rows)
        tx.segments.change(segment.id, {"refreshed_at": now})
        return len(entered), len(exited)

    def refresh(self, workspace: Workspace, key: str) -> tuple[int, int]:
        def work(tx: Tx) -> tuple[int, int]:
            ctx = self._context(tx, workspace)
            return self._refresh(tx, ctx, ctx.segment(key), self.clock.now())

        return self.store.transact(work)

    def sweep(self) -> int:
        """Recompute every segment whose membership moves with time; how many changed."""
        with self.store.read() as tx:
            targets = [(row.workspace_id, row.key) for row in tx.segments.time_based()]
            workspaces = {row.id: row for row in tx.workspaces.all()}
        changed = 0
        for workspace_id, key in targets:
            entered, exited = self.refresh(workspace_from_row(workspaces[workspace_id]), key)
            changed += entered + exited
        return changed

    def process_log(self, limit: int = 1000) -> int:
        """Follow the event log from this consumer's cursor; how many events it went through."""
        return self.log.process(limit)

    def on_events(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        """The log consumer: re-decide the segments these events can affect."""
        if ctx.rows:
            self._reconsider(tx, ctx, rows, now)

    def _reconsider(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        deps = {key: dependencies(c) for key, c in ctx.conditions.items()}
        affected: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            for key, dep in deps.items():
                if dep.touched_by(row.name, row.properties or {}):
                    affected[key].add(row.contact_id)
        if not affected:
            return
        contact_ids = sorted(set().union(*affected.values()))
        names = set().union(*(event_names(ctx.conditions[k], ctx.conditions) for k in affected))
        snaps = self.snapshots(tx, ctx, contact_ids, names)
        stored = tx.segments.memberships(contact_ids)
        evaluator = Evaluator(ctx.conditions)
        entered, exited, log = [], [], []
        for key in sorted(affected):
            segment = ctx.segment(key)
            for contact_id in sorted(affected[key]):
                snap = snaps.get(contact_id)
                inside = snap is not None and evaluator.evaluate(segment.condition, snap, now).ok
                was = (segment.id, contact_id) in stored
                if inside and not was:
                    entered.append((segment.id, contact_id))
                    log.append(
                        _membership_event(ctx.workspace.id, contact_id, "segment.entered", key, now)
                    )
                elif was and not inside:
                    exited.append((segment.id, contact_id))
                    log.append(
                        _membership_event(ctx.workspace.id, contact_id, "segment.exited", key, now)
                    )
        tx.segments.enter(entered, now)
        tx.segments.leave(exited)
        tx.events.append(log)


def _membership_event(
    workspace_id: int, contact_id: int, name: str, key: str, now: datetime
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "kind": "system",
        "name": name,
        "properties": {"segment": key},
        "context": {"source": "segments"},
        "message_id": None,
        "timestamp": now,
        "received_at": now,
    }


def _mentions_segment(definition: Any, key: str) -> bool:
    """Whether an automation definition refers to the segment (a condition or a trigger)."""
    if isinstance(definition, dict):
        for name, value in definition.items():
            if name in ("segment", "segment_entered", "segment_exited") and value == key:
                return True
            if _mentions_segment(value, key):
                return True
    elif isinstance(definition, list):
        return any(_mentions_segment(item, key) for item in definition)
    return False
