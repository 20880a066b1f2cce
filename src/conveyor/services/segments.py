"""Segments: saved conditions, their audiences (in SQL), explanations (per contact), and
membership over time — `segment.entered` / `segment.exited` as contacts come and go.

Membership moves two ways. `process_log` follows the event log and re-decides only the
segments an event can affect (derived from their predicates) for only the contacts it touched.
`sweep` recomputes the segments whose membership changes with the clock alone ("ordered in the
last 30 days" loses members while nothing happens).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.conditions import (
    AUTOMATION_CHANGES,
    All,
    AnyOf,
    Condition,
    FieldIs,
    HasTags,
    InAutomation,
    InList,
    InSegment,
    Never,
    Not,
    Performed,
    find_cycle,
    parse_condition,
    segment_refs,
)
from conveyor.domain.contacts import Contact
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.evaluation import (
    Evaluator,
    EventFact,
    RunFact,
    Snapshot,
    Verdict,
    event_names,
)
from conveyor.domain.fields import STANDARD_FIELDS, FieldDefinition, FieldType
from conveyor.domain.workspaces import Workspace
from conveyor.services.contacts import Contacts, decode_cursor, encode_cursor
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.conditions import AudienceScope, ConditionSQL
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "segments"
RELATIVE_OPS = {"within_last", "more_than_ago", "within_next", "today", "this_month", "anniversary"}
SEGMENT_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class Segment:
    id: int
    key: str
    name: str
    definition: dict[str, Any]
    condition: Condition
    time_based: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class Dependencies:
    """What a segment's membership depends on, so events that cannot change it are skipped."""

    events: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)
    automations: set[str] = field(default_factory=set)
    tags: bool = False
    lists: bool = False
    any_change: bool = False

    def touched_by(self, name: str, properties: dict[str, Any]) -> bool:
        if name in self.events or name in ("contact.created", "contact.merged"):
            return True
        if name == "field.changed":
            return self.any_change or _names(properties, "field", self.fields)
        if name in ("tag.added", "tag.removed"):
            return self.tags or self.any_change
        if name.startswith("list."):
            return self.lists or self.any_change
        if name == "score.changed":
            return "score" in self.fields or self.any_change
        if name in ("segment.entered", "segment.exited"):
            return _names(properties, "segment", self.segments)
        if name in AUTOMATION_CHANGES:
            return _names(properties, "automation", self.automations)
        return False


def _names(properties: dict[str, Any], key: str, names: set[str]) -> bool:
    # A tracked event may borrow a system event's name with any JSON in it: a list here must
    # not stop the log's consumers (`[] in names` raises).
    value = properties.get(key)
    return isinstance(value, str) and value in names


def dependencies(condition: Condition, deps: Dependencies | None = None) -> Dependencies:
    deps = deps or Dependencies()
    if isinstance(condition, All | AnyOf):
        for item in condition.items:
            dependencies(item, deps)
    elif isinstance(condition, Not):
        dependencies(condition.item, deps)
    elif isinstance(condition, FieldIs):
        deps.fields.add("email" if condition.field == "email_domain" else condition.field)
        if condition.field in ("updated_at",):
            deps.any_change = True
    elif isinstance(condition, HasTags):
        deps.tags = True
    elif isinstance(condition, InList):
        deps.lists = True
    elif isinstance(condition, Performed):
        deps.events.add(condition.name)
    elif isinstance(condition, InAutomation):
        # Every entry, goal and end of a run writes one of AUTOMATION_CHANGES in the same
        # transaction as the run itself, so these events cover the runs `active` reads too.
        deps.automations.add(condition.automation)
    elif isinstance(condition, InSegment):
        deps.segments.add(condition.key)
    return deps


def is_time_based(
    condition: Condition, segments: dict[str, Condition], seen: frozenset[str] = frozenset()
) -> bool:
    if isinstance(condition, All | AnyOf):
        return any(is_time_based(c, segments, seen) for c in condition.items)
    if isinstance(condition, Not):
        return is_time_based(condition.item, segments, seen)
    if isinstance(condition, FieldIs):
        return condition.op in RELATIVE_OPS
    if isinstance(condition, Performed):
        return condition.window is not None or condition.first_last is not None
    if isinstance(condition, InAutomation):
        return condition.window is not None
    if isinstance(condition, InSegment):
        inner = segments.get(condition.key)
        return (
            inner is not None
            and condition.key not in seen
            and is_time_based(inner, segments, seen | {condition.key})
        )
    return False


class ConditionContext:
    """A workspace's catalog, as conditions need it, read inside one transaction."""

    def __init__(self, tx: Tx, workspace: Workspace) -> None:
        self.workspace = workspace
        self.dialect = tx.dialect
        self.fields: dict[str, FieldDefinition] = {}
        for row in tx.catalog.fields(workspace.id):
            choices = tuple(row.choices) if row.choices is not None else None
            self.fields[row.key] = FieldDefinition(row.key, FieldType(row.type), row.label, choices)
        self.lists = {row.key: row.id for row in tx.catalog.lists(workspace.id)}
        self.list_keys = {v: k for k, v in self.lists.items()}
        self.automations = {row.id: row.key for row in tx.automations.all(workspace.id)}
        self.rows = {row.key: row for row in tx.segments.all(workspace.id)}
        self.conditions: dict[str, Condition] = {}
        for key, row in self.rows.items():
            try:
                self.conditions[key] = self.parse(row.condition, strict=False)
            except InvalidInput as exc:
                # A field or list it used was deleted since: it matches no one until fixed.
                self.conditions[key] = Never(f"segment {key} is broken: {exc.detail}")
        self.timezone = workspace.settings.get("timezone", "UTC")

    def parse(self, raw: Any, *, strict: bool = True) -> Condition:
        return parse_condition(
            raw,
            self.fields,
            set(self.lists) if strict else None,
            set(self.rows) if strict else None,
            set(self.automations.values()) if strict else None,
        )

    def scope(self, now: datetime) -> AudienceScope:
        """What `tx.audiences` decides this workspace's conditions against, at `now`."""
        return AudienceScope(
            self.workspace.id,
            now,
            self.lists,
            self.conditions,
            default_timezone=self.timezone,
        )

    def sql(self, now: datetime) -> ConditionSQL:
        # Transitional, like `Tx.conn`: the engine's date sweep still compiles here; it moves
        # to `tx.audiences.members(ctx.scope(now), condition)` and this method goes.
        return ConditionSQL(
            self.dialect,
            self.workspace.id,
            now,
            lists=self.lists,
            segments=self.conditions,
            default_timezone=self.timezone,
        )

    def segment(self, key: str) -> Segment:
        row = self.rows.get(key)
        if row is None:
            raise NotFound(f"no segment '{key}' in this workspace")
        return Segment(
            row.id,
            row.key,
            row.name,
            row.condition,
            self.conditions[key],
            row.time_based,
            row.created_at,
            row.updated_at,
        )


class Segments:
    def __init__(self, store: Store, clock: Clock, contacts: Contacts) -> None:
        self.store = store
        self.clock = clock
        self.contacts = contacts

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
        """The audience as CSV, streamed page by page."""
        columns = ["id", *STANDARD_FIELDS, "score", "tags"]
        with self.store.read() as tx:
            custom = sorted(row.key for row in tx.catalog.fields(workspace.id))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns + custom)
        cursor: str | None = None
        while True:
            items, cursor = self.members(workspace, key, cursor=cursor, limit=500)
            for c in items:
                values = [
                    c.id,
                    *(getattr(c, name) for name in STANDARD_FIELDS),
                    c.score,
                    ";".join(c.tags),
                ]
                values += [_cell(c.fields.get(k)) for k in custom]
                writer.writerow(values)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return

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
        rows = tx.contacts.by_ids(ctx.workspace.id, contact_ids)
        ids = [row.id for row in rows]
        tags = tx.contacts.tags_of(ids)
        subs = tx.contacts.subscriptions_of(ids)
        history: dict[int, list[EventFact]] = defaultdict(list)
        for e in tx.segments.contact_events(ids, names):
            history[e.contact_id].append(EventFact(e.name, e.timestamp, e.properties or {}, e.kind))
        inside: dict[int, list[RunFact]] = defaultdict(list)
        if ctx.automations:  # one indexed read: cheaper than working out who needs it
            for run in tx.automations.of_contacts(ids, ("active", "queued")):
                key = ctx.automations.get(run.automation_id)
                if key is not None:
                    inside[run.contact_id].append(RunFact(key, run.entered_at))
        return {
            row.id: Snapshot(
                standard={name: getattr(row, name) for name in STANDARD_FIELDS},
                score=row.score,
                fields=dict(row.fields or {}),
                created_at=row.created_at,
                updated_at=row.updated_at,
                tags=set(tags.get(row.id, ())),
                lists={
                    ctx.list_keys[lid]: st
                    for lid, st in subs.get(row.id, {}).items()
                    if lid in ctx.list_keys
                },
                events=history.get(row.id, []),
                runs=inside.get(row.id, []),
                timezone=row.timezone or ctx.timezone,
            )
            for row in rows
        }

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
        with self.store.read() as tx:
            if not tx.segments.behind(LOG_CONSUMER):
                return 0  # nothing new: no need to make writers wait for the high-water mark
        high = self.store.db.committed_high_water()
        return self.store.transact(lambda tx: self._process(tx, high, limit))

    def _process(self, tx: Tx, high: int, limit: int) -> int:
        position = tx.segments.cursor(LOG_CONSUMER)
        if position is None:
            return 0  # another process is on it
        batch = tx.segments.events_after(position, high, limit)
        if not batch:
            return 0
        now = self.clock.now()
        by_workspace: dict[int, list[Any]] = defaultdict(list)
        for row in batch:
            if row.contact_id is not None:
                by_workspace[row.workspace_id].append(row)
        workspaces = {row.id: row for row in tx.workspaces.all()} if by_workspace else {}

        for workspace_id, rows in by_workspace.items():
            ctx = self._context(tx, workspace_from_row(workspaces[workspace_id]))
            if ctx.rows:
                self._reconsider(tx, ctx, rows, now)
        tx.segments.move_cursor(LOG_CONSUMER, batch[-1].id)
        return len(batch)

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


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value
