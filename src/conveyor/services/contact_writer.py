"""The one way contacts change: a unit of work that batches SQL and writes the system events.

The API, the tracking endpoints, CSV import (and later the engine) all change contacts through a
ContactWriter opened on a write transaction. Each change is validated before anything is touched,
applied to in-memory state, and recorded as a system event; `flush()` writes it all with a handful
of bulk statements, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from conveyor import logs
from conveyor.domain.automations import ContactChange
from conveyor.domain.contacts import (
    Contact,
    ListInfo,
    SubscriptionStatus,
    SystemEvent,
    subscription_event,
)
from conveyor.domain.errors import Conflict, FieldError, InvalidInput
from conveyor.domain.fields import (
    STANDARD_FIELDS,
    FieldDefinition,
    FieldType,
    coerce,
    define_field,
    infer_type,
    is_field_key,
    normalize_standard,
)
from conveyor.domain.workspaces import Workspace
from conveyor.store.bulk import Lookup
from conveyor.store.store import Tx


class Catalog:
    """A workspace's declared fields and lists, read at most once per transaction, and only
    when a change needs them (a track call for a known contact needs neither)."""

    def __init__(
        self,
        tx: Tx,
        workspace_id: int,
        *,
        field_rows: list[Any] | None = None,
        list_rows: list[Any] | None = None,
    ) -> None:
        """`field_rows`, `list_rows`: the catalog as already read in this transaction."""
        self._tx, self._workspace_id = tx, workspace_id
        self._field_rows, self._list_rows = field_rows, list_rows
        self.pending_fields: list[FieldDefinition] = []
        # Declared by a prepared but not yet applied change; later items reuse the same type.
        self.pending: dict[str, FieldDefinition] = {}

    def given(self, field_rows: list[Any]) -> None:
        """The declared fields as read by the caller in this transaction (before any use)."""
        if "fields" not in self.__dict__:
            self._field_rows = field_rows

    @cached_property
    def fields(self) -> dict[str, FieldDefinition]:
        rows = self._field_rows
        if rows is None:
            rows = self._tx.catalog.fields(self._workspace_id)
        out = {}
        for row in rows:
            choices = tuple(row.choices) if row.choices is not None else None
            out[row.key] = FieldDefinition(row.key, FieldType(row.type), row.label, choices)
        return out

    @cached_property
    def lists(self) -> dict[str, ListInfo]:
        rows = self._list_rows
        if rows is None:
            rows = self._tx.catalog.lists(self._workspace_id)
        return {row.key: ListInfo(row.id, row.key, row.name, row.double_opt_in) for row in rows}

    @cached_property
    def lists_by_id(self) -> dict[int, ListInfo]:
        return {info.id: info for info in self.lists.values()}

    def declare(self, definition: FieldDefinition) -> None:
        if definition.key not in self.fields:
            self.fields[definition.key] = definition
            self.pending_fields.append(definition)

    def list_named(self, key: str, field_name: str) -> ListInfo:
        info = self.lists.get(key)
        if info is None:
            raise InvalidInput(field_name, f"no list '{key}' in this workspace; create it first")
        return info


@dataclass
class Prepared:
    """Validated, normalised values ready to apply: standard attributes and custom fields."""

    standard: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    declare: list[FieldDefinition] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.standard or self.fields)


@dataclass(eq=False)
class ContactState:
    id: int | None
    standard: dict[str, Any]
    score: int
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    new: bool = False
    dirty: bool = False
    merged_into: ContactState | None = None
    tags: set[str] | None = None
    tags_stored: set[str] = field(default_factory=set)
    subscriptions: dict[int, str] | None = None
    subscriptions_stored: dict[int, str] = field(default_factory=dict)
    new_aliases: list[str] = field(default_factory=list)
    stored_keys: tuple[str | None, str | None] = (None, None)  # (external_id, email) as stored
    stored: Any = None  # the row as read (a ContactRecord), None once written (`_changes`)

    def current(self) -> ContactState:
        state = self
        while state.merged_into is not None:
            state = state.merged_into
        return state

    @property
    def anonymous(self) -> bool:
        return self.standard.get("external_id") is None and self.standard.get("email") is None


class ContactWriter:
    def __init__(
        self,
        tx: Tx,
        workspace: Workspace,
        now: datetime,
        source: str,
        catalog: Catalog | None = None,
    ) -> None:
        self.tx = tx
        self.workspace = workspace
        self.now = now
        self.source = source
        # Stamped on every event recorded: the HTTP request (or the run it caused) that wrote it.
        self.request_id: str | None = logs.request_id.get()
        self.catalog = catalog or Catalog(tx, workspace.id)
        # Told of every event recorded for a stored contact (the engine keeps its facts current).
        self.observer: Callable[[int, str, dict[str, Any]], None] | None = None
        self._by_id: dict[int, ContactState] = {}
        self._by_external: dict[str, ContactState] = {}
        self._by_email: dict[str, ContactState] = {}
        self._by_alias: dict[str, ContactState] = {}
        self._missing_aliases: set[str] = set()
        # Keys looked up and known not to exist: not asked again within the transaction.
        self._missing_external: set[str] = set()
        self._missing_emails: set[str] = set()
        self._states: list[ContactState] = []
        self._merges: list[tuple[ContactState, ContactState]] = []
        self._events: list[tuple[ContactState | None, dict[str, Any]]] = []
        self._system_context: dict[str, Any] = {"source": source}

    # --- finding contacts -----------------------------------------------------------------

    def preload(
        self,
        *,
        ids: set[int] = frozenset(),  # type: ignore[assignment]
        external_ids: set[str] = frozenset(),  # type: ignore[assignment]
        emails: set[str] = frozenset(),  # type: ignore[assignment]
        anonymous_ids: set[str] = frozenset(),  # type: ignore[assignment]
        with_relations: bool = False,
        first: Sequence[Lookup] = (),
    ) -> list[list[Any]]:
        """Load many contacts with a few queries instead of one query per lookup. `first`:
        other look-ups to send in the same round trip, ahead of these (PostgreSQL); their rows
        are returned."""
        ws = self.workspace.id
        # Concurrent writers about the same person take turns (PostgreSQL), so a second batch
        # sees the contact the first one created instead of racing it to the unique index.
        # The keys' locks and look-ups go in one round trip (store: `by_keys`).
        by_external, by_email, targets, ahead = (
            self.tx.contacts.by_keys_after(
                first,
                ws,
                external_ids=external_ids,
                emails=emails,
                anonymous_ids=anonymous_ids,
            )
            if external_ids or emails or anonymous_ids or first
            else ([], [], {}, [])
        )
        loaded: list[ContactState] = []
        if ids:
            loaded += [self._adopt(row) for row in self.tx.contacts.by_ids(ws, ids)]
        if external_ids:
            loaded += [self._adopt(row) for row in by_external]
            self._missing_external |= set(external_ids) - {row.external_id for row in by_external}
        if emails:
            loaded += [self._adopt(row) for row in by_email]
            self._missing_emails |= set(emails) - {row.email for row in by_email}
        if anonymous_ids:
            self._missing_aliases |= set(anonymous_ids) - set(targets)
            wanted = {cid for cid in targets.values() if cid not in self._by_id}
            if wanted:
                loaded += [self._adopt(row) for row in self.tx.contacts.by_ids(ws, wanted)]
            for anonymous_id, contact_id in targets.items():
                if contact_id in self._by_id:
                    self._by_alias[anonymous_id] = self._by_id[contact_id]
        if with_relations:
            self._load_relations([s for s in loaded if s.tags is None])
        return ahead

    def adopt(
        self, rows: list[Any], tags: dict[int, set[str]], subscriptions: dict[int, dict[int, str]]
    ) -> None:
        """Take contacts someone already read in this transaction, with their tags and lists."""
        for row in rows:
            state = self._adopt(row)
            if state.tags is None:
                state.tags_stored = set(tags.get(row.id, ()))
                state.tags = set(state.tags_stored)
                state.subscriptions_stored = dict(subscriptions.get(row.id, {}))
                state.subscriptions = dict(state.subscriptions_stored)

    def by_id(self, contact_id: int) -> ContactState | None:
        state = self._by_id.get(contact_id)
        if state is None:
            rows = self.tx.contacts.by_ids(self.workspace.id, [contact_id])
            state = self._adopt(rows[0]) if rows else None
        return state if state is not None and state.merged_into is None else None

    def by_external_id(self, external_id: str) -> ContactState | None:
        state = self._by_external.get(external_id)
        if state is None and external_id not in self._missing_external:
            for row in self.tx.contacts.by_external_ids(self.workspace.id, [external_id]):
                self._adopt(row)
            state = self._by_external.get(external_id)
            if state is None:
                self._missing_external.add(external_id)
        return state

    def by_email(self, email: str) -> ContactState | None:
        state = self._by_email.get(email)
        if state is None and email not in self._missing_emails:
            for row in self.tx.contacts.by_emails(self.workspace.id, [email]):
                self._adopt(row)
            state = self._by_email.get(email)
            if state is None:
                self._missing_emails.add(email)
        return state

    def by_anonymous_id(self, anonymous_id: str) -> ContactState | None:
        state = self._by_alias.get(anonymous_id)
        if state is not None:
            return state.current()
        if anonymous_id in self._missing_aliases:
            return None
        target = self.tx.contacts.alias_targets(self.workspace.id, [anonymous_id]).get(anonymous_id)
        if target is None:
            self._missing_aliases.add(anonymous_id)
            return None
        state = self.by_id(target)
        if state is not None:
            self._by_alias[anonymous_id] = state
        return state

    def _adopt(self, row: Any) -> ContactState:
        known = self._by_id.get(row.id)
        if known is not None:
            return known
        state = ContactState(
            id=row.id,
            standard={name: getattr(row, name) for name in STANDARD_FIELDS},
            score=row.score,
            fields=dict(row.fields or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        state.stored_keys = _keys(state)
        state.stored = row
        self._register(state)
        return state

    def _register(self, state: ContactState) -> None:
        self._states.append(state)
        if state.id is not None:
            self._by_id[state.id] = state
        if state.standard.get("external_id") is not None:
            self._by_external[state.standard["external_id"]] = state
        if state.standard.get("email") is not None:
            self._by_email[state.standard["email"]] = state

    def _load_relations(self, states: list[ContactState]) -> None:
        stored = [s for s in states if s.id is not None and s.tags is None]
        if stored:
            ids = [s.id for s in stored]
            tags = self.tx.contacts.tags_of(ids)
            subs = self.tx.contacts.subscriptions_of(ids)
            for state in stored:
                state.tags_stored = set(tags.get(state.id, ()))  # type: ignore[arg-type]
                state.tags = set(state.tags_stored)
                state.subscriptions_stored = dict(subs.get(state.id, {}))  # type: ignore[arg-type]
                state.subscriptions = dict(state.subscriptions_stored)
        for state in states:
            if state.tags is None:  # new, never stored
                state.tags, state.subscriptions = set(), {}

    def _relations(self, state: ContactState) -> tuple[set[str], dict[int, str]]:
        if state.tags is None:
            self._load_relations([state])
        return state.tags, state.subscriptions  # type: ignore[return-value]

    # --- validating -----------------------------------------------------------------------

    def prepare(
        self, values: dict[str, Any], *, declare_unknown: bool = False, prefix: str = ""
    ) -> Prepared:
        """Validate attribute values (standard and custom) without changing anything.

        Raises InvalidInput listing every bad field. Unknown keys are an error unless
        `declare_unknown`, in which case they become new custom fields of an inferred type.
        """
        prepared = Prepared()
        errors: list[FieldError] = []
        for key, raw in values.items():
            name = f"{prefix}{key}"
            try:
                if key in STANDARD_FIELDS:
                    prepared.standard[key] = normalize_standard(
                        key, raw, self.workspace.default_country
                    )
                    continue
                definition = self.catalog.fields.get(key)
                if definition is None:
                    if not declare_unknown:
                        raise InvalidInput(
                            key, "is not a declared custom field; declare it with POST /fields"
                        )
                    inferred = infer_type(raw)
                    if inferred is None or not is_field_key(key):
                        continue  # kept in the event log, just not as a field
                    definition = self.catalog.pending.get(key) or define_field(key, inferred)
                    self.catalog.pending[key] = definition
                    prepared.declare.append(definition)
                prepared.fields[key] = coerce(definition, raw)
            except InvalidInput as exc:
                errors.append(FieldError(name, exc.reason))
        if errors:
            raise InvalidInput.many(errors)
        return prepared

    def check_unique(
        self, state: ContactState | None, prepared: Prepared, merging: tuple[ContactState, ...] = ()
    ) -> None:
        """Refuse an email or external id that belongs to another contact."""
        for key, finder in (("external_id", self.by_external_id), ("email", self.by_email)):
            value = prepared.standard.get(key)
            if value is None:
                continue
            owner = finder(value)
            if owner is not None and owner is not state and owner not in merging:
                raise Conflict(f"{key} '{value}' belongs to contact {owner.id} already", field=key)

    # --- changing -------------------------------------------------------------------------

    def create(self, prepared: Prepared | None = None) -> ContactState:
        state = ContactState(
            id=None,
            standard={name: None for name in STANDARD_FIELDS},
            score=0,
            fields={},
            created_at=self.now,
            updated_at=self.now,
            new=True,
            tags=set(),
            subscriptions={},
        )
        self._states.append(state)
        self.record(state, SystemEvent.CONTACT_CREATED, {})
        if prepared:
            self.apply(state, prepared)
        return state

    def apply(self, state: ContactState, prepared: Prepared) -> list[str]:
        """Set prepared values; a field.changed event for each value that really changed."""
        for definition in prepared.declare:
            self.catalog.declare(definition)
        changed: list[str] = []
        for key, value in prepared.standard.items():
            old = state.standard.get(key)
            if old == value:
                continue
            index = (
                self._by_external
                if key == "external_id"
                else self._by_email
                if key == "email"
                else None
            )
            if index is not None:
                if old is not None and index.get(old) is state:
                    del index[old]
                if value is not None:
                    index[value] = state
            state.standard[key] = value
            changed.append(key)
            self.record(state, SystemEvent.FIELD_CHANGED, {"field": key, "old": old, "new": value})
        for key, value in prepared.fields.items():
            old = state.fields.get(key)
            if old == value:
                continue
            if value is None:
                state.fields.pop(key, None)
            else:
                state.fields[key] = value
            changed.append(key)
            self.record(state, SystemEvent.FIELD_CHANGED, {"field": key, "old": old, "new": value})
        if changed:
            self._touch(state)
        return changed

    def add_tags(self, state: ContactState, tags: list[str]) -> list[str]:
        current, _ = self._relations(state)
        added = [tag for tag in dict.fromkeys(tags) if tag not in current]
        for tag in added:
            current.add(tag)
            self.record(state, SystemEvent.TAG_ADDED, {"tag": tag})
        if added:
            self._touch(state)
        return added

    def remove_tags(self, state: ContactState, tags: list[str]) -> list[str]:
        current, _ = self._relations(state)
        removed = [tag for tag in dict.fromkeys(tags) if tag in current]
        for tag in removed:
            current.discard(tag)
            self.record(state, SystemEvent.TAG_REMOVED, {"tag": tag})
        if removed:
            self._touch(state)
        return removed

    def set_subscription(
        self,
        state: ContactState,
        info: ListInfo,
        status: SubscriptionStatus,
        *,
        confirmed: bool = False,
    ) -> SubscriptionStatus | None:
        """Change a list status. Subscribing to a double opt-in list asks for confirmation first,
        unless `confirmed` (the contact clicked the link, or an import of known opt-ins)."""
        _, current = self._relations(state)
        old = current.get(info.id)
        if (
            status is SubscriptionStatus.SUBSCRIBED
            and info.double_opt_in
            and not confirmed
            and old != SubscriptionStatus.SUBSCRIBED
        ):
            status = SubscriptionStatus.UNCONFIRMED
        if old == status:
            return None
        current[info.id] = status
        self.record(
            state,
            subscription_event(status),
            {"list": info.key, "status": str(status), "old_status": old},
        )
        self._touch(state)
        return status

    def apply_change(self, state: ContactState, change: ContactChange) -> None:
        """Carry out an automation's change to the contact (validated like any other)."""
        if change.action == "add_tag":
            self.add_tags(state, [change.target])  # type: ignore[list-item]
        elif change.action == "remove_tag":
            self.remove_tags(state, [change.target])  # type: ignore[list-item]
        elif change.action in ("set_field", "clear_field"):
            value = None if change.action == "clear_field" else change.value
            self.apply(state, self.prepare({change.target: value}))
        elif change.action == "increment_field":
            current = state.fields.get(change.target) or 0
            self.apply(state, self.prepare({change.target: current + change.value}))
        elif change.action in ("subscribe", "unsubscribe"):
            info = self.catalog.list_named(change.target, "list")  # type: ignore[arg-type]
            status = (
                SubscriptionStatus.SUBSCRIBED
                if change.action == "subscribe"
                else SubscriptionStatus.UNSUBSCRIBED
            )
            self.set_subscription(state, info, status)
        elif change.action == "adjust_score" and change.target is not None:
            # A named score of the scoring model: the scoring consumer applies it from the log.
            self.record(state, "score.adjusted", {"score": change.target, "by": change.value})
        elif change.action == "adjust_score":
            self.set_score(state, state.score + int(change.value))

    def set_score(self, state: ContactState, score: int) -> bool:
        if not -(2**31) <= score < 2**31:
            raise InvalidInput("score", "a lead score is between -2147483648 and 2147483647")
        if score == state.score:
            return False
        old, state.score = state.score, score
        self.record(state, SystemEvent.SCORE_CHANGED, {"score": "score", "old": old, "new": score})
        self._touch(state)
        return True

    def add_alias(self, state: ContactState, anonymous_id: str) -> None:
        if self.by_anonymous_id(anonymous_id) is not None:
            return  # linked already: to this contact, or (first come) to another known user
        self._missing_aliases.discard(anonymous_id)
        state.new_aliases.append(anonymous_id)
        self._by_alias[anonymous_id] = state

    def merge(self, winner: ContactState, loser: ContactState) -> ContactState:
        """Fold `loser` (an anonymous visitor, usually) into `winner`, keeping all its history.

        The winner's own values win; it gains the loser's missing fields, tags, subscriptions,
        and score, each with its system event. Events, aliases and history move over at flush.
        A winner created in this very batch is folded into the stored loser instead, so the
        older contact keeps its id, while the newer values still win.
        """
        if winner is loser:
            return winner
        newer_wins = winner.id is None and loser.id is not None
        if newer_wins:
            winner, loser = loser, winner
        values = {
            k: v
            for k, v in loser.standard.items()
            if v is not None and (newer_wins or winner.standard.get(k) is None)
        }
        fields = {k: v for k, v in loser.fields.items() if newer_wins or k not in winner.fields}
        # Unique keys move with the loser: free them so the winner can take them.
        for key, index in (("external_id", self._by_external), ("email", self._by_email)):
            if key in values and index.get(values[key]) is loser:
                del index[values[key]]
        self.apply(winner, Prepared(standard=values, fields=fields))
        loser_tags, loser_subs = self._relations(loser)
        self.add_tags(winner, sorted(loser_tags))
        _, winner_subs = self._relations(winner)
        for list_id, status in loser_subs.items():
            if newer_wins or list_id not in winner_subs:
                info = self.catalog.lists_by_id[list_id]
                self.set_subscription(winner, info, SubscriptionStatus(status), confirmed=True)
        if loser.score:
            self.set_score(winner, winner.score + loser.score)
        loser.merged_into = winner
        for anonymous_id, state in list(self._by_alias.items()):
            if state is loser:
                self._by_alias[anonymous_id] = winner
        winner.new_aliases.extend(loser.new_aliases)
        loser.new_aliases = []
        if loser.id is not None:
            self._by_id.pop(loser.id, None)
            self._merges.append((winner, loser))
            self.record(winner, SystemEvent.CONTACT_MERGED, {"merged_contact_id": loser.id})
        return winner

    def record(
        self,
        state: ContactState | None,
        name: str,
        properties: dict[str, Any],
        *,
        kind: str = "system",
        context: dict[str, Any] | None = None,
        message_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Append an event for `state` to the log (at flush, in order)."""
        if self.observer is not None and state is not None and state.id is not None:
            self.observer(state.id, str(name), properties)
        self._events.append(
            (
                state,
                {
                    "workspace_id": self.workspace.id,
                    "kind": kind,
                    "name": str(name),
                    "properties": properties,
                    "context": context if context is not None else self._context(),
                    "message_id": message_id,
                    "timestamp": timestamp or self.now,
                    "received_at": self.now,
                    "request_id": self.request_id,
                },
            )
        )

    def _context(self) -> dict[str, Any]:
        """A system event's context: one dict for all of them (never changed once recorded),
        so the store encodes it once per flush."""
        if self._system_context.get("source") != self.source:
            self._system_context = {"source": self.source}
        return self._system_context

    @property
    def position(self) -> int:
        """How many events are recorded and not yet flushed."""
        return len(self._events)

    def recorded(self, start: int = 0) -> list[tuple[int | None, str, dict[str, Any]]]:
        """(contact id, name, properties) of the events recorded since position `start`, not yet
        flushed."""
        return [
            (state.current().id if state is not None else None, row["name"], row["properties"])
            for state, row in self._events[start:]
        ]

    def _touch(self, state: ContactState) -> None:
        state.dirty = True
        state.updated_at = self.now

    # --- writing --------------------------------------------------------------------------

    def flush(self) -> None:
        tx, ws = self.tx, self.workspace.id
        if self.catalog.pending_fields:
            tx.catalog.add_fields(
                ws,
                [
                    {
                        "key": d.key,
                        "type": str(d.type),
                        "label": d.label,
                        "choices": list(d.choices) if d.choices is not None else None,
                    }
                    for d in self.catalog.pending_fields
                ],
                self.now,
            )
            self.catalog.pending_fields = []
        live = [s for s in self._states if s.merged_into is None]
        fresh = [s for s in live if s.new]
        # Unique values may move between contacts within one batch (a merge, a swap): free the
        # old ones first, so no statement below meets a value that is about to go away.
        # Only a value that goes away can be taken by another contact: a contact gaining its first
        # email (the usual identify) is rewritten by the update below without this extra UPDATE.
        moved = [s for s in live if not s.new and _lost_a_key(s.stored_keys, _keys(s))]
        tx.contacts.release_unique([s.id for s in moved if s.id is not None])
        for state in moved:  # both keys are NULL in the row now: the update writes them back
            state.stored = None
        for winner, loser in self._merges:  # merge winners are always stored contacts
            tx.contacts.absorb(winner.current().id, loser.id)  # type: ignore[arg-type]
        self._merges = []
        ids = (
            tx.contacts.insert([self._row(s) | {"workspace_id": ws} for s in fresh])
            if fresh
            else []
        )
        for state, new_id in zip(fresh, ids, strict=True):
            state.id, state.new, state.dirty = new_id, False, False
            self._by_id[new_id] = state
        for state in live:
            state.stored_keys = _keys(state)
        updates = []
        for state in live:
            if state.dirty and state.id is not None:
                changes = _changes(state)
                if changes:
                    updates.append({"contact_id": state.id, **changes})
                state.stored = None  # a later flush of this writer writes it whole
            state.dirty = False
        tx.contacts.update(updates)
        self._flush_relations(live)
        rows = []
        for state, row in self._events:
            if (
                state is not None
                and state.id is None
                and row["name"] == SystemEvent.CONTACT_CREATED
            ):
                continue  # created and folded into an older contact within this batch
            # Set in place: the row is the writer's own, and dropped with `_events` below.
            row["contact_id"] = state.current().id if state is not None else None
            rows.append(row)
        tx.events.append(rows)
        self._events = []

    def _flush_relations(self, live: list[ContactState]) -> None:
        ws, now = self.workspace.id, self.now
        aliases, tag_adds, tag_removes, sub_adds, sub_updates = [], [], [], [], []
        for state in live:
            for anonymous_id in state.new_aliases:
                aliases.append(
                    {
                        "workspace_id": ws,
                        "anonymous_id": anonymous_id,
                        "contact_id": state.id,
                        "created_at": now,
                    }
                )
            state.new_aliases = []
            if state.tags is not None:
                for tag in state.tags - state.tags_stored:
                    tag_adds.append(
                        {"contact_id": state.id, "tag": tag, "workspace_id": ws, "created_at": now}
                    )
                tag_removes += [(state.id, tag) for tag in state.tags_stored - state.tags]
                state.tags_stored = set(state.tags)
            if state.subscriptions is not None:
                for list_id, status in state.subscriptions.items():
                    before = state.subscriptions_stored.get(list_id)
                    if before is None:
                        sub_adds.append(
                            {
                                "contact_id": state.id,
                                "list_id": list_id,
                                "workspace_id": ws,
                                "status": str(status),
                                "updated_at": now,
                            }
                        )
                    elif before != status:
                        sub_updates.append(
                            {"cid": state.id, "lid": list_id, "status": str(status), "at": now}
                        )
                state.subscriptions_stored = dict(state.subscriptions)
        self.tx.contacts.add_aliases(aliases)
        self.tx.contacts.remove_tags(tag_removes)  # type: ignore[arg-type]
        self.tx.contacts.add_tags(tag_adds)
        self.tx.contacts.add_subscriptions(sub_adds)
        self.tx.contacts.update_subscriptions(sub_updates)

    @staticmethod
    def _row(state: ContactState) -> dict[str, Any]:
        return {
            **state.standard,
            "score": state.score,
            "fields": state.fields,
            "created_at": state.created_at,
            "updated_at": state.updated_at,
        }

    # --- reading back -----------------------------------------------------------------------

    def view(self, state: ContactState) -> Contact:
        """The contact as stored after flush (tags, lists and aliases included)."""
        tags, subs = self._relations(state)
        aliases = self.tx.contacts.aliases_of([state.id]).get(state.id, []) if state.id else []
        return Contact(
            id=state.id,  # type: ignore[arg-type]
            **state.standard,
            score=state.score,
            fields=dict(state.fields),
            created_at=state.created_at,
            updated_at=state.updated_at,
            tags=sorted(tags),
            lists={self.catalog.lists_by_id[lid].key: str(st) for lid, st in subs.items()},
            anonymous_ids=aliases,
        )


def _lost_a_key(
    stored: tuple[str | None, str | None], current: tuple[str | None, str | None]
) -> bool:
    return any(old is not None and old != new for old, new in zip(stored, current, strict=True))


def _changes(state: ContactState) -> dict[str, Any]:
    """The columns that differ from the row as read (all of them when there is none). Only they
    are written: SQLite rewrites the entries of every index on a column an UPDATE sets, changed
    or not — the email, external id and phone indexes on each tag or field change (4x the
    time of an update of the changed columns alone, measured on 33,000 rows). The row read is
    kept as it came (no copy: most contacts a writer loads are never changed)."""
    row = ContactWriter._row(state)
    stored = state.stored
    if stored is None:
        return row
    return {
        k: v
        for k, v in row.items()
        if not _identical((stored.fields or {}) if k == "fields" else getattr(stored, k), v)
    }


def _identical(a: Any, b: Any) -> bool:
    """Equal and of the same types throughout: True is not 1 here, nor 1.0 (JSON tells them
    apart)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _keys(state: ContactState) -> tuple[str | None, str | None]:
    return state.standard.get("external_id"), state.standard.get("email")
