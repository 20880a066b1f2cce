"""What conditions need from a workspace, and what they depend on.

`ConditionContext` reads a workspace's catalog (fields, lists, automations, segments) once per
transaction; `dependencies` says which events can change a condition's verdict, so consumers of
the log look only at what an event can affect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.domain.conditions import (
    AUTOMATION_CHANGES,
    DEAL_EVENTS,
    All,
    AnyOf,
    Condition,
    FieldIs,
    HasDeal,
    HasTags,
    InAutomation,
    InList,
    InSegment,
    Never,
    Not,
    Parser,
    Performed,
    ScoreIs,
    parse_condition,
)
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.fields import FieldDefinition, FieldType
from conveyor.domain.scoring import Decay, ScoringModel, parse_model
from conveyor.domain.workspaces import Workspace
from conveyor.store.conditions import AudienceScope
from conveyor.store.store import Tx

RELATIVE_OPS = {"within_last", "more_than_ago", "within_next", "today", "this_month", "anniversary"}


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
    scores: set[str] = field(default_factory=set)  # named scores of the scoring model
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
            if properties.get("score", "score") == "score":
                return "score" in self.fields or self.any_change
            return _names(properties, "score", self.scores)
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
    elif isinstance(condition, HasDeal):
        deps.events.update(DEAL_EVENTS)  # every change to a deal records one for its contact
    elif isinstance(condition, ScoreIs):
        deps.scores.add(condition.score)
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
    if isinstance(condition, ScoreIs):
        return True  # a named score may decay: its value moves with the clock alone
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
        self.field_rows = tx.catalog.fields(workspace.id)
        for row in self.field_rows:
            choices = tuple(row.choices) if row.choices is not None else None
            self.fields[row.key] = FieldDefinition(row.key, FieldType(row.type), row.label, choices)
        self.list_rows = tx.catalog.lists(workspace.id)
        self.lists = {row.key: row.id for row in self.list_rows}
        self.list_keys = {v: k for k, v in self.lists.items()}
        self.automation_rows = {row.id: row for row in tx.automations.all(workspace.id)}
        self.automations = {row.id: row.key for row in self.automation_rows.values()}
        # The scoring model (before segments, whose conditions may use its scores).
        self.scoring_row = tx.scoring.model(workspace.id)
        self.scoring = ScoringModel()
        self.scoring_error: str | None = None
        if self.scoring_row is not None:
            try:
                self.scoring = parse_model(
                    self.scoring_row.definition, Parser(self.fields, set(self.lists))
                )
            except InvalidInput as exc:  # a field or list it used was deleted since
                self.scoring_error = f"{exc.field}: {exc.detail}"
        epoch = self.scoring_row.epoch if self.scoring_row is not None else workspace_epoch()
        self.score_decays: dict[str, Decay | None] = {
            name: spec.decay(epoch) for name, spec in self.scoring.scores.items()
        }
        self.rows = {row.key: row for row in tx.segments.all(workspace.id)}
        self.conditions: dict[str, Condition] = {}
        for key, row in self.rows.items():
            try:
                self.conditions[key] = self.parse(row.condition, strict=False)
            except InvalidInput as exc:
                # A field or list it used was deleted since: it matches no one until fixed.
                self.conditions[key] = Never(f"segment {key} is broken: {exc.detail}")
        self.timezone = workspace.settings.get("timezone", "UTC")
        # Decided split tests (automation id → node → path): a split hands on its winner.
        self.winners: dict[int, dict[str, str]] = tx.experiments.winners(workspace.id)
        # What consumers derive from this catalog (trigger index, event names), kept with it.
        self.derived: dict[str, Any] = {}

    def parse(self, raw: Any, *, strict: bool = True) -> Condition:
        return parse_condition(
            raw,
            self.fields,
            set(self.lists) if strict else None,
            set(self.rows) if strict else None,
            set(self.automations.values()) if strict else None,
            set(self.scoring.scores) if strict else None,
        )

    def scope(self, now: datetime) -> AudienceScope:
        """What `tx.audiences` decides this workspace's conditions against, at `now`."""
        return AudienceScope(
            self.workspace.id,
            now,
            self.lists,
            self.conditions,
            default_timezone=self.timezone,
            scores=self.score_decays,
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


class Contexts:
    """Condition contexts kept between transactions, one per workspace, until its catalog
    changes: the store bumps a workspace's `catalog_version` (a database trigger) whenever its
    fields, lists, automations or segments change, or its name or settings, so every process
    sees every change."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[int, ConditionContext]] = {}

    def get(self, tx: Tx, row: Any) -> ConditionContext:
        """The context of the workspace `row` (as read in this transaction)."""
        kept = self._kept.get(row.id)
        if kept is None or kept[0] != row.catalog_version:
            kept = (row.catalog_version, ConditionContext(tx, _workspace(row)))
            self._kept[row.id] = kept
        return kept[1]

    def current(self, tx: Tx, workspace_id: int, catalog_version: int) -> ConditionContext:
        """The context of a workspace whose catalog version is known: read only if it moved."""
        kept = self._kept.get(workspace_id)
        if kept is not None and kept[0] == catalog_version:
            return kept[1]
        row = tx.workspaces.get(workspace_id)
        if row is None:
            raise NotFound(f"no workspace {workspace_id}")
        return self.get(tx, row)


def workspace_epoch() -> datetime:
    """Decay's epoch before a model is stored (never used for a value: no scores exist yet)."""
    return datetime(2026, 1, 1, tzinfo=UTC)


def _workspace(row: Any) -> Workspace:
    return Workspace(id=row.id, name=row.name, secret=row.secret, settings=dict(row.settings or {}))
