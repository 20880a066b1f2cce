"""Conditions compiled to SQL over `contacts`, for SQLite and PostgreSQL, and the audiences
they describe (`AudienceQueries`: counted, as ids, or a page of contacts).

Every predicate compiles to an expression that is never NULL, so `NOT` and `OR` behave as in
the single-contact evaluator (`conveyor.domain.evaluation`), whose rules this mirrors: wrong JSON
types count as missing, negative comparisons hold for missing values, calendar days are the
contact's own. A property test checks that both give the same members.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

import orjson
from sqlalchemy import (
    Boolean,
    Connection,
    Double,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.sql.elements import ColumnElement

from conveyor.domain.conditions import (
    AUTOMATION_EVENTS,
    COMPLETED_OUTCOMES,
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
    Performed,
    PropertyIs,
    ScoreIs,
    Window,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import anniversary_days, local_today, local_window
from conveyor.domain.fields import FieldType, format_datetime
from conveyor.domain.scoring import Decay, compare, factor
from conveyor.store.records import ContactRecord
from conveyor.store.schema import (
    automations,
    contact_scores,
    contact_tags,
    contacts,
    deals,
    events,
    pipelines,
    runs,
    subscriptions,
)

Expr = ColumnElement[Any]
_ZONES = sorted(available_timezones())
_CMP = {
    "gt": "__gt__",
    "gte": "__ge__",
    "lt": "__lt__",
    "lte": "__le__",
    "eq": "__eq__",
    "ne": "__ne__",
}


def _cmp(op: str, left: Any, right: Any) -> Expr:
    return getattr(left, _CMP[op])(right)


class ConditionSQL:
    """Compiles conditions for one workspace, at one moment."""

    def __init__(
        self,
        dialect: str,
        workspace_id: int,
        now: datetime,
        *,
        lists: dict[str, int],
        segments: dict[str, Condition] | None = None,
        default_timezone: str = "UTC",
        scores: dict[str, Decay | None] | None = None,
    ) -> None:
        self.scores = scores or {}
        self.pg = dialect == "postgresql"
        self.ws = workspace_id
        self.now = now
        self.lists = lists
        self.segments = segments or {}
        self.default_timezone = default_timezone

    def where(self, condition: Condition) -> Expr:
        return self._compile(condition, ())

    def count_query(self, condition: Condition) -> Any:
        return (
            select(func.count())
            .select_from(contacts)
            .where(contacts.c.workspace_id == self.ws, self.where(condition))
        )

    def members_query(
        self, condition: Condition, *, after_id: int | None, limit: int | None
    ) -> Any:
        stmt = select(contacts).where(contacts.c.workspace_id == self.ws, self.where(condition))
        if after_id is not None:
            stmt = stmt.where(contacts.c.id > after_id)
        stmt = stmt.order_by(contacts.c.id)
        return stmt.limit(limit) if limit is not None else stmt

    def _member(self, ids: Any) -> Expr:
        """Whether the contact's id is among those `ids` (a select of contact ids) yields.

        On PostgreSQL as EXISTS over the subquery: PostgreSQL turns that into a semi join, and
        its negation into an anti join, computing the subquery once. `NOT (id IN (…))` instead
        becomes a subplan that is scanned again for every contact once the ids outgrow
        work_mem: "not tagged newsletter" over 1M contacts did not finish in a minute.
        SQLite materializes `IN (…)` once, either way."""
        if not self.pg:
            return contacts.c.id.in_(ids)
        found = ids.subquery()
        return (
            select(literal(1)).select_from(found).where(list(found.c)[0] == contacts.c.id).exists()
        )

    def _not_member(self, ids: Any) -> Expr:
        return not_(self._member(ids)) if self.pg else contacts.c.id.not_in(ids)

    def _compile(self, c: Condition, seen: tuple[str, ...]) -> Expr:
        if isinstance(c, All):
            return and_(*(self._compile(i, seen) for i in c.items))
        if isinstance(c, AnyOf):
            return or_(*(self._compile(i, seen) for i in c.items))
        if isinstance(c, Not):
            return not_(self._compile(c.item, seen))
        if isinstance(c, FieldIs):
            return self._field(c)
        if isinstance(c, HasTags):
            return self._tags(c)
        if isinstance(c, InList):
            list_id = self.lists.get(c.list)
            if list_id is None:
                return false()
            members = select(subscriptions.c.contact_id).where(
                subscriptions.c.list_id == list_id, subscriptions.c.status.in_(c.statuses)
            )
            return self._member(members)
        if isinstance(c, Performed):
            return self._performed(c)
        if isinstance(c, InAutomation):
            return self._in_automation(c)
        if isinstance(c, HasDeal):
            return self._has_deal(c)
        if isinstance(c, ScoreIs):
            return self._score(c)
        if isinstance(c, Never):
            return false()
        if isinstance(c, InSegment):
            inner = self.segments.get(c.key)
            if inner is None or c.key in seen:
                return false()
            return self._compile(inner, (*seen, c.key))
        raise TypeError(f"not a condition: {c!r}")

    def _score(self, c: ScoreIs) -> Expr:
        """A named score's value now: norm * factor + fixed, with the factor computed here (in
        Python, as the evaluator does) and bound, so both compute the same double; 0 without a
        row."""
        if c.score not in self.scores:  # not (or no longer) a score of the model: 0
            return true() if compare(c.op, 0.0, c.value) else false()
        f = factor(self.scores[c.score], self.now)
        raw = contact_scores.c.norm * literal(f, Double()) + contact_scores.c.fixed
        value = (
            select(self._exact(raw))
            .where(
                contact_scores.c.contact_id == contacts.c.id,
                contact_scores.c.score == c.score,
            )
            .scalar_subquery()
        )
        x = func.coalesce(value, literal(0.0, Double()))
        if c.op == "between":
            low, high = c.value
            return and_(x >= literal(low, Double()), x <= literal(high, Double()))
        return _cmp(c.op, x, literal(c.value, Double()))

    def _exact(self, x: Expr) -> Expr:
        """floor(x * 1e6 + 0.5) / 1e6, as `conveyor.domain.scoring.exact` computes it (SQLite
        may lack floor(): a cast truncates towards zero, one less below it)."""
        y = x * literal(1e6, Double()) + literal(0.5, Double())
        if self.pg:
            return func.floor(y) / literal(1e6, Double())
        whole = cast(y, Integer)
        return (whole - case((y < whole, 1), else_=0)) / literal(1e6, Double())

    # --- fields ----------------------------------------------------------------------------

    def _value(self, c: FieldIs) -> Expr:
        """The field's value, NULL when unset or of the wrong JSON type."""
        if c.standard:
            if c.field == "email_domain":
                at = (
                    func.strpos(contacts.c.email, "@")
                    if self.pg
                    else func.instr(contacts.c.email, "@")
                )
                return case((at > 0, func.substr(contacts.c.email, at + 1)), else_=None)
            return contacts.c[c.field]
        kind = {
            FieldType.NUMBER: "number",
            FieldType.BOOLEAN: "boolean",
            FieldType.MULTI_CHOICE: "array",
        }.get(c.type, "string")
        return self._json_value(contacts.c.fields, (c.field,), kind)

    def _json_value(self, column: Any, path: tuple[str, ...], kind: str) -> Expr:
        """A typed value out of a JSON column: text, float, boolean (0/1 on SQLite) or the array."""
        if self.pg:
            elem = column.op("#>")(array(list(path)))
            as_text = column.op("#>>", return_type=String)(array(list(path)))
            typeof = func.jsonb_typeof(elem)
            if kind == "array":
                return case((typeof == "array", elem), else_=None)
            if kind == "number":
                # CASE, not AND: PostgreSQL may evaluate a cast before a guard beside it.
                return case((typeof == "number", cast(as_text, Float)), else_=None)
            if kind == "boolean":
                return case((typeof == "boolean", as_text == "true"), else_=None)
            return case((typeof == "string", as_text), else_=None)
        jpath = _sqlite_path(path)
        typeof = func.json_type(column, jpath)
        wanted = _SQLITE_JSON_TYPES[kind]
        if kind == "array":
            return case((typeof == "array", func.json_extract(column, jpath)), else_=None)
        return case((typeof.in_(wanted), func.json_extract(column, jpath)), else_=None)

    def _field(self, c: FieldIs) -> Expr:
        x = self._value(c)
        op, v = c.op, c.value
        if c.type is FieldType.MULTI_CHOICE:
            return self._multi(c, x)
        if op == "is_set":
            return (
                and_(x.is_not(None), x != "")
                if c.type in (FieldType.TEXT, FieldType.CHOICE)
                else x.is_not(None)
            )
        if op == "is_empty":
            return (
                or_(x.is_(None), x == "")
                if c.type in (FieldType.TEXT, FieldType.CHOICE)
                else x.is_(None)
            )
        if c.type is FieldType.BOOLEAN and not self.pg:
            v = int(v)
        if c.type is FieldType.DATE:
            return self._date(op, x, v)
        if c.type is FieldType.DATETIME:
            return self._datetime(c, op, x, v)
        if op == "ne":
            return or_(x.is_(None), x != v)
        if op == "not_in":
            return or_(x.is_(None), x.not_in(v))
        if op == "not_contains":
            return or_(x.is_(None), self._position(x, v) == 0)
        if op in ("eq", "in") and not self.pg and not c.standard and c.type is not FieldType.NUMBER:
            return self._sqlite_text_match(c, op, v)
        return and_(x.is_not(None), self._positive(op, x, v))

    def _sqlite_text_match(self, c: FieldIs, op: str, v: Any) -> Expr:
        """`eq`/`in` on a text field in SQLite's JSON: compare the extracted value first and check
        its JSON type only on a match. The guarded value `_value` parses the document twice and
        `x IS NOT NULL AND x = v` uses it twice — four parses per contact, where this takes one
        for most (a 1M-contact `country = DE` count: 880 → 600 ms). Same truth: a match of
        another JSON type fails the type check, and it is 0 or 1, never NULL, as `_field`'s
        other answers (a negation around it keeps contacts without the field)."""
        jpath = _sqlite_path((c.field,))
        raw = func.json_extract(contacts.c.fields, jpath)
        wanted = _SQLITE_JSON_TYPES["boolean" if c.type is FieldType.BOOLEAN else "string"]
        matched = raw.in_(v) if op == "in" else raw == v
        return case((matched, func.json_type(contacts.c.fields, jpath).in_(wanted)), else_=0)

    def _positive(self, op: str, x: Expr, v: Any) -> Expr:
        if op == "in":
            return x.in_(v)
        if op == "contains":
            return self._position(x, v) > 0
        if op == "starts_with":
            return func.substr(x, 1, len(v)) == v
        if op == "ends_with":
            return (func.right(x, len(v)) if self.pg else func.substr(x, -len(v))) == v
        if op == "between":
            return x.between(v[0], v[1])
        return _cmp(op, x, v)

    def _position(self, x: Expr, v: str) -> Expr:
        return func.strpos(x, v) if self.pg else func.instr(x, v)

    def _multi(self, c: FieldIs, x: Expr) -> Expr:
        op, v = c.op, c.value
        if self.pg:

            def has(item: str) -> Expr:
                return x.op("@>", return_type=Boolean)(
                    cast(literal(orjson.dumps([item]).decode()), JSONB)
                )

            length = func.jsonb_array_length(x)
        else:

            def has(item: str) -> Expr:
                each = func.json_each(contacts.c.fields, _sqlite_path((c.field,))).table_valued(
                    "value"
                )
                return select(1).select_from(each).where(each.c.value == item).exists()

            length = func.json_array_length(x)
        if op == "is_set":
            return and_(x.is_not(None), length > 0)
        if op == "is_empty":
            return or_(x.is_(None), length == 0)
        if op == "not_contains":
            return or_(x.is_(None), not_(has(v)))
        if op == "contains":
            return and_(x.is_not(None), has(v))
        parts = [has(item) for item in v]
        return and_(x.is_not(None), or_(*parts) if op == "contains_any" else and_(*parts))

    def _zone_groups(self, key: Any) -> dict[Any, list[str]]:
        """IANA zones grouped by what `key(zone)` says (their local today, say)."""
        groups: dict[Any, list[str]] = defaultdict(list)
        for zone in _ZONES:
            groups[key(zone)].append(zone)
        return groups

    def _by_zone(self, key: Any, predicate: Any) -> Expr:
        zone = func.coalesce(contacts.c.timezone, self.default_timezone)
        return or_(
            *(and_(zone.in_(zones), predicate(k)) for k, zones in self._zone_groups(key).items())
        )

    def _date(self, op: str, x: Expr, v: Any) -> Expr:
        if op in ("eq", "before", "after", "between"):
            positive = {
                "eq": lambda: x == v,
                "before": lambda: x < v,
                "after": lambda: x > v,
                "between": lambda: x.between(v[0], v[1]),
            }[op]()
            return and_(x.is_not(None), positive)

        def today(zone: str) -> Any:
            return local_today(zone, self.now)

        def on(day: Any) -> Expr:
            iso = day.isoformat()
            if op == "today":
                return x == iso
            if op == "this_month":
                return func.substr(x, 1, 7) == iso[:7]
            if op == "anniversary":
                return func.substr(x, 6, 5).in_(sorted(anniversary_days(day + timedelta(days=v))))
            days = timedelta(days=v // 86400)
            if op == "within_last":
                return x.between((day - days).isoformat(), iso)
            if op == "more_than_ago":
                return x < (day - days).isoformat()
            return x.between(iso, (day + days).isoformat())

        return and_(x.is_not(None), self._by_zone(today, on))

    def _datetime(self, c: FieldIs, op: str, x: Expr, v: Any) -> Expr:
        def bound(moment: datetime) -> Any:
            # Custom date-time fields hold ISO text; the standard ones are timestamp columns.
            return moment if c.standard else format_datetime(moment)

        if op in ("today", "this_month"):

            def window(zone: str) -> tuple[datetime, datetime]:
                return local_window(op, zone, self.now)

            return and_(
                x.is_not(None),
                self._by_zone(window, lambda w: and_(x >= bound(w[0]), x < bound(w[1]))),
            )
        if op == "eq":
            positive = x == bound(v)
        elif op == "before":
            positive = x < bound(v)
        elif op == "after":
            positive = x > bound(v)
        elif op == "between":
            positive = x.between(bound(v[0]), bound(v[1]))
        else:
            span = timedelta(seconds=v)
            positive = {
                "within_last": lambda: x.between(bound(self.now - span), bound(self.now)),
                "more_than_ago": lambda: x < bound(self.now - span),
                "within_next": lambda: x.between(bound(self.now), bound(self.now + span)),
            }[op]()
        return and_(x.is_not(None), positive)

    # --- tags ----------------------------------------------------------------------------

    def _tags(self, c: HasTags) -> Expr:
        wanted = sorted(set(c.tags))
        having = select(contact_tags.c.contact_id).where(
            contact_tags.c.workspace_id == self.ws, contact_tags.c.tag.in_(wanted)
        )
        if c.mode == "all" and len(wanted) > 1:
            having = having.group_by(contact_tags.c.contact_id).having(func.count() == len(wanted))
        return self._member(having)

    # --- behaviour -------------------------------------------------------------------------

    def _performed(self, c: Performed) -> Expr:
        base = select(events.c.contact_id).where(
            events.c.workspace_id == self.ws,
            events.c.name == c.name,
            events.c.contact_id.is_not(None),
            *self._window(c.window, events.c.timestamp),
            *(self._property(f) for f in c.where),
        )
        by_contact = base.group_by(events.c.contact_id)
        if c.aggregate is not None:
            value = self._json_value(events.c.properties, c.property, "number")
            if c.aggregate == "sum":
                total = func.coalesce(func.sum(value), 0)
                if _holds(c.op, 0, c.value):  # no events at all also satisfies it
                    return self._not_member(by_contact.having(not_(_cmp(c.op, total, c.value))))
                return self._member(by_contact.having(_cmp(c.op, total, c.value)))
            agg = {"avg": func.avg, "min": func.min, "max": func.max}[c.aggregate](value)
            return self._member(
                base.where(value.is_not(None))
                .group_by(events.c.contact_id)
                .having(_cmp(c.op, agg, c.value))
            )
        if c.first_last is not None:
            moment = (
                func.min(events.c.timestamp)
                if c.first_last == "first"
                else func.max(events.c.timestamp)
            )
            limit = self.now - timedelta(seconds=c.recency_seconds)  # type: ignore[arg-type]
            test = moment >= limit if c.recency_op == "within_last" else moment < limit
            return self._member(by_contact.having(test))
        n = c.count
        if c.count_op == "gte":
            if n == 0:
                return true()
            return self._member(base if n == 1 else by_contact.having(func.count() >= n))
        if c.count_op == "lte":
            return self._not_member(by_contact.having(func.count() > n))
        if n == 0:
            return self._not_member(base)
        return self._member(by_contact.having(func.count() == n))

    def _window(self, window: Window | None, column: Any) -> list[Expr]:
        if window is None:
            return []
        if window.since_entry:
            raise InvalidInput(
                "within", "'since_entry' only works inside an automation, not for a segment"
            )
        start, end = window.bounds(self.now)
        out = []
        if start is not None:
            out.append(column >= start)
        if end is not None:
            out.append(column <= end)
        return out

    def _in_automation(self, c: InAutomation) -> Expr:
        """Inside now from the runs; the rest from the engine's events (see AUTOMATION_EVENTS)."""
        if c.status == "active":
            automation = select(automations.c.id).where(
                automations.c.workspace_id == self.ws, automations.c.key == c.automation
            )
            inside = select(runs.c.contact_id).where(
                runs.c.automation_id.in_(automation),
                runs.c.status.in_(("active", "queued")),
                *self._window(c.window, runs.c.entered_at),
            )
            return self._member(inside)
        conditions = [
            events.c.workspace_id == self.ws,
            events.c.name.in_(AUTOMATION_EVENTS[c.status]),
            events.c.kind == "system",
            events.c.contact_id.is_not(None),
            *self._window(c.window, events.c.timestamp),
            self._equal(("automation",), c.automation),
        ]
        if c.status == "completed":
            conditions.append(or_(*(self._equal(("outcome",), o) for o in COMPLETED_OUTCOMES)))
        if c.goal is not None:
            conditions.append(self._equal(("goal",), c.goal))
        return self._member(select(events.c.contact_id).where(*conditions))

    def _has_deal(self, c: HasDeal) -> Expr:
        found = select(deals.c.contact_id).where(deals.c.workspace_id == self.ws)
        if c.pipeline is not None:
            pipeline = select(pipelines.c.id).where(
                pipelines.c.workspace_id == self.ws, pipelines.c.key == c.pipeline
            )
            found = found.where(deals.c.pipeline_id.in_(pipeline))
        if c.stage is not None:
            found = found.where(deals.c.stage == c.stage)
        if c.status is not None:
            found = found.where(deals.c.status == c.status)
        if c.value_op is not None:
            found = found.where(_cmp(c.value_op, deals.c.value_minor, c.value_minor))
        return self._member(found)

    def _property(self, f: PropertyIs) -> Expr:
        column = events.c.properties
        if f.op == "exists":
            if self.pg:
                typeof = func.jsonb_typeof(column.op("#>")(array(list(f.path))))
            else:
                typeof = func.json_type(column, _sqlite_path(f.path))
            return and_(typeof.is_not(None), typeof != "null")
        if f.op == "ne":
            return not_(self._equal(f.path, f.value))
        if f.op == "eq":
            return self._equal(f.path, f.value)
        if f.op == "in":
            return or_(*(self._equal(f.path, v) for v in f.value))
        if f.op == "contains":
            text = self._json_value(column, f.path, "string")
            return and_(text.is_not(None), self._position(text, f.value) > 0)
        number = self._json_value(column, f.path, "number")
        return and_(number.is_not(None), _cmp(f.op, number, f.value))

    def _equal(self, path: tuple[str, ...], value: Any) -> Expr:
        """JSON equality that keeps types apart (1 is not true, "1" is not 1); never NULL."""
        kind = (
            "boolean"
            if isinstance(value, bool)
            else "number"
            if isinstance(value, int | float)
            else "string"
        )
        x = self._json_value(events.c.properties, path, kind)
        if kind == "boolean" and not self.pg:
            value = int(value)
        return and_(x.is_not(None), x == value)


@dataclass(frozen=True)
class AudienceScope:
    """What a condition is decided against: one workspace's lists (key → id) and segments
    (key → condition), the timezone of contacts without one, and the moment."""

    workspace_id: int
    now: datetime
    lists: dict[str, int]
    segments: dict[str, Condition] = field(default_factory=dict)
    default_timezone: str = "UTC"
    scores: dict[str, Decay | None] = field(default_factory=dict)  # named scores' decay


class AudienceQueries:
    """Who meets a condition, in one statement: how many, their ids, or a page of them."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    def _compiler(self, scope: AudienceScope) -> ConditionSQL:
        return ConditionSQL(
            self._dialect,
            scope.workspace_id,
            scope.now,
            lists=scope.lists,
            segments=scope.segments,
            default_timezone=scope.default_timezone,
            scores=scope.scores,
        )

    def count(self, scope: AudienceScope, condition: Condition) -> int:
        stmt = self._compiler(scope).count_query(condition)
        return int(self._conn.execute(stmt).scalar_one())

    def member_ids(
        self, scope: AudienceScope, condition: Condition, among: list[int] | None = None
    ) -> set[int]:
        """Who meets it: everyone, or those of `among` (ids of the workspace's contacts)."""
        stmt = select(contacts.c.id).where(
            contacts.c.workspace_id == scope.workspace_id,
            self._compiler(scope).where(condition),
        )
        if among is None:
            return set(self._conn.execute(stmt).scalars())
        wanted = set(among)
        if not wanted:
            return set()
        low, high = min(wanted), max(wanted)
        if high - low < 4 * len(wanted):  # dense (a page of contacts): the range they span
            spanned = stmt.where(contacts.c.id.between(low, high))
            return {cid for cid in self._conn.execute(spanned).scalars() if cid in wanted}
        found: set[int] = set()
        ids = sorted(wanted)
        for start in range(0, len(ids), 1000):
            chunk = stmt.where(contacts.c.id.in_(ids[start : start + 1000]))
            found.update(self._conn.execute(chunk).scalars())
        return found

    def members(
        self,
        scope: AudienceScope,
        condition: Condition,
        *,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[ContactRecord]:
        """The contacts who meet it, by id, from after `after_id`; all of them without a limit."""
        stmt = self._compiler(scope).members_query(condition, after_id=after_id, limit=limit)
        return [ContactRecord.from_row(row) for row in self._conn.execute(stmt)]


def _holds(op: str, left: float, right: float) -> bool:
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
        "ne": left != right,
    }[op]


# What SQLite's json_type() answers for each kind of value `_json_value` reads.
_SQLITE_JSON_TYPES = {
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "array": ("array",),
    "string": ("text",),
}


def _sqlite_path(path: tuple[str, ...]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if part.isdigit() else '."' + part.replace('"', '""') + '"'
    return out


__all__ = ["AudienceQueries", "AudienceScope", "ConditionSQL", "String"]
