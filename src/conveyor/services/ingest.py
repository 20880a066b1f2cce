"""Tracking calls in, contacts and events out: the Segment-compatible ingest path.

A batch is validated item by item; the good items are applied in one transaction (contacts
upserted, anonymous visitors merged, the calls and the system events they cause appended to the
log); the bad ones are reported by index. Calls are idempotent on their `messageId`.

The API hands requests to `submit`: this process's group writer (services/group_commit.py)
applies every request waiting in one transaction, each with its own result.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from conveyor import logs, telemetry
from conveyor.clock import Clock
from conveyor.domain.automations import webhook_event
from conveyor.domain.errors import Conflict, FieldError, InvalidInput, ItemError
from conveyor.domain.fields import (
    STANDARD_FIELDS,
    normalize_email,
    normalize_locale,
    normalize_timezone,
)
from conveyor.domain.messages import (
    Alias,
    Group,
    Identify,
    Page,
    Screen,
    Track,
    parse_call,
    traits_to_values,
)
from conveyor.domain.payloads import MAX_DEPTH, check_depth
from conveyor.domain.workspaces import Workspace
from conveyor.services.contact_writer import ContactState, ContactWriter, Prepared
from conveyor.services.group_commit import GroupCommit
from conveyor.store.store import Store, Tx

AnyCall = Identify | Track | Page | Screen | Group | Alias


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[ItemError] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """One tracking request's calls, parsed, on their way to the group writer."""

    workspace: Workspace
    parsed: list[tuple[int, AnyCall]]
    errors: list[ItemError]  # the calls that did not parse, by index
    # The HTTP request's id (logs.request_id), stamped on its events so the runs, steps and
    # messages they cause can be traced back to it.
    request_id: str | None = field(default_factory=logs.request_id.get)


class Ingest:
    def __init__(
        self, store: Store, clock: Clock, *, max_depth: int = MAX_DEPTH, group_calls: int = 5000
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_depth = max_depth
        self.writer: GroupCommit[Request, IngestResult] = GroupCommit(
            self._apply_group, self._apply_one, max_calls=group_calls, name="ingest-writer"
        )

    @staticmethod
    def parse(workspace: Workspace, items: list[Any], *, call_type: str | None = None) -> Request:
        parsed: list[tuple[int, AnyCall]] = []
        errors: list[ItemError] = []
        for index, raw in enumerate(items):
            try:
                parsed.append((index, parse_call(raw, call_type=call_type)))
            except InvalidInput as exc:
                errors.append(ItemError(index, exc.errors))
        return Request(workspace, parsed, errors)

    def calls(
        self, workspace: Workspace, items: list[Any], *, call_type: str | None = None
    ) -> IngestResult:
        """Apply calls now, in a transaction of their own."""
        return self._apply_one(self.parse(workspace, items, call_type=call_type))

    def submit(self, request: Request) -> Future[IngestResult]:
        """Hand a parsed request to this process's group writer (see services/group_commit.py):
        the future is done once its calls are committed, with those of other requests."""
        if not request.parsed:
            done: Future[IngestResult] = Future()
            done.set_result(self._finish(request, IngestResult()))
            return done
        return self.writer.submit(request, len(request.parsed))

    def close(self) -> None:
        self.writer.close()

    def _apply_one(self, request: Request) -> IngestResult:
        if not request.parsed:
            return self._finish(request, IngestResult())
        return self._apply_group([request])[0]

    def _apply_group(self, requests: list[Request]) -> list[IngestResult]:
        """Every request's calls in one transaction: one `_Batch` per workspace (in id order, so
        concurrent writers on PostgreSQL lock keys in one order)."""
        live = [r for r in requests if r.parsed]
        by_workspace: dict[int, list[Request]] = {}
        for request in live:
            by_workspace.setdefault(request.workspace.id, []).append(request)

        def work(tx: Tx) -> dict[int, IngestResult]:
            out: dict[int, IngestResult] = {}
            for workspace_id in sorted(by_workspace):
                group = by_workspace[workspace_id]
                batch = _Batch(tx, group[0].workspace, self.clock)
                results = batch.run_many([r.parsed for r in group], [r.request_id for r in group])
                for request, result in zip(group, results, strict=True):
                    out[id(request)] = result
            return out

        results = self.store.transact(work, log_lock_later=True) if live else {}
        return [self._finish(r, results.get(id(r), IngestResult())) for r in requests]

    @staticmethod
    def _finish(request: Request, result: IngestResult) -> IngestResult:
        result.errors = sorted(request.errors + result.errors, key=lambda e: e.index)
        failed = {e.index for e in result.errors}
        telemetry.count(
            telemetry.EVENTS_INGESTED, ((c.type,) for i, c in request.parsed if i not in failed)
        )
        return result

    def hook(
        self,
        workspace: Workspace,
        automation_key: str,
        body: dict[str, Any],
        message_id: str | None = None,
    ) -> int:
        """An automation's inbound webhook: the JSON body becomes its trigger event, for the
        contact named by `userId`/`external_id` or `email` (created if new). Returns its id."""
        check_depth(body, self.max_depth)
        external = body.get("userId") or body.get("user_id") or body.get("external_id")
        email = body.get("email")
        if not external and not email:
            raise InvalidInput("email", "the body needs an email or a userId: who is it about?")

        def work(tx: Tx) -> int:
            writer = ContactWriter(tx, workspace, self.clock.now(), source="webhook")
            values = {k: v for k, v in (("external_id", external), ("email", email)) if v}
            prepared = writer.prepare(values)
            ext, mail = prepared.standard.get("external_id"), prepared.standard.get("email")
            writer.preload(external_ids={ext} if ext else set(), emails={mail} if mail else set())
            state = (writer.by_external_id(ext) if ext else None) or (
                writer.by_email(mail) if mail else None
            )
            if state is None:
                writer.check_unique(None, prepared)
                state = writer.create(prepared)
            if message_id and tx.events.seen_message_ids(workspace.id, [message_id]):
                return state.id or 0  # a retried delivery of a hook already recorded
            writer.record(
                state,
                webhook_event(automation_key),
                body,
                kind="track",
                message_id=message_id,
                context={"source": "webhook"},
            )
            writer.flush()
            return state.id  # type: ignore[return-value]

        return self.store.transact(work)


class _Batch:
    """One attempt at applying a batch inside one transaction."""

    def __init__(self, tx: Tx, workspace: Workspace, clock: Clock) -> None:
        self.now = clock.now()
        self.writer = ContactWriter(tx, workspace, self.now, source="tracking")
        self.tx = tx
        self.workspace = workspace

    def run(self, parsed: list[tuple[int, AnyCall]]) -> IngestResult:
        return self.run_many([parsed])[0]

    def run_many(
        self,
        requests: list[list[tuple[int, AnyCall]]],
        request_ids: list[str | None] | None = None,
    ) -> list[IngestResult]:
        """Apply several requests' calls (of this workspace) in order, with one look-up of
        the message ids and one contact preload for all of them, and one flush; each request
        gets its own result. A messageId seen in an earlier request is a duplicate in a later.
        `request_ids`: each request's id, stamped on the events it records."""
        results = [IngestResult() for _ in requests]
        ids = request_ids if request_ids is not None else [self.writer.request_id] * len(requests)
        every = [call for parsed in requests for _, call in parsed]
        message_ids = {call.messageId for call in every if call.messageId}
        # The identify calls' traits, and the emails among them normalised as `prepare` will:
        # their contacts are looked up with the rest.
        traits: list[dict[int, dict[str, Any]]] = [
            {
                index: traits_to_values(call.traits)
                for index, call in parsed
                if call.type == "identify"
            }
            for parsed in requests
        ]
        emails: set[str] = set()
        custom = False
        for values in (v for by_index in traits for v in by_index.values()):
            custom = custom or any(key not in STANDARD_FIELDS for key in values)
            if values.get("email") is not None:
                with contextlib.suppress(InvalidInput):  # `prepare` reports it
                    emails.add(normalize_email(values["email"]))
        # One round trip on PostgreSQL for the event log's lock, the message ids, the field
        # catalog (when a trait may need it) and the contacts' key locks and look-ups.
        first = self.tx.log_lock_lookup()
        if message_ids:
            first.append(self.tx.events.message_ids_lookup(self.workspace.id, message_ids))
        if custom:
            first.append(self.tx.catalog.fields_lookup(self.workspace.id))
        aliases = {c.previousId for c in every if isinstance(c, Alias)}
        ahead = self.writer.preload(
            external_ids={c.userId for c in every if c.userId} | aliases,
            anonymous_ids={c.anonymousId for c in every if c.anonymousId} | aliases,
            emails=emails,
            first=first,
        )
        if custom:
            self.writer.catalog.given(self.tx.catalog.field_records(ahead.pop()))
        seen = {row[0] for row in ahead.pop()} if message_ids else set()
        prepared: list[dict[int, Prepared]] = [{} for _ in requests]
        for by_index, result, ready in zip(traits, results, prepared, strict=True):
            for index, values in by_index.items():
                try:
                    ready[index] = self.writer.prepare(
                        values,
                        declare_unknown=self.workspace.auto_declare_fields or False,
                        prefix="traits.",
                    )
                except InvalidInput as exc:
                    result.errors.append(ItemError(index, exc.errors))
        for parsed, result, ready, rid in zip(requests, results, prepared, ids, strict=True):
            self.writer.request_id = rid
            self._run_one(parsed, result, ready, seen)
        self.writer.flush()
        return results

    def _run_one(
        self,
        parsed: list[tuple[int, AnyCall]],
        result: IngestResult,
        prepared: dict[int, Prepared],
        seen: set[str],
    ) -> None:
        failed = {e.index for e in result.errors}
        for index, call in parsed:
            if index in failed:
                continue
            if call.messageId is not None:
                if call.messageId in seen:
                    result.duplicates += 1
                    continue
                seen.add(call.messageId)
            try:
                self._apply(index, call, prepared)
            except InvalidInput as exc:
                result.errors.append(ItemError(index, exc.errors))
                continue
            except Conflict as exc:
                name = exc.field or ""
                result.errors.append(
                    ItemError(index, [FieldError(f"traits.{name}" if name else "", exc.detail)])
                )
                continue
            result.accepted += 1

    def _apply(self, index: int, call: AnyCall, prepared: dict[int, Prepared]) -> None:
        writer = self.writer
        if isinstance(call, Alias):
            state = self._alias(call)
        else:
            values = prepared.get(index) or Prepared()
            state = self._resolve(call.userId, call.anonymousId, values)
            if values:
                writer.apply(state, values)
        self._fill_from_context(state, call.context)
        name, properties = _describe(call)
        writer.record(
            state,
            name,
            properties,
            kind=call.type,
            context=call.logged_context(),
            message_id=call.messageId,
            timestamp=call.occurred_at(self.now),
        )

    def _resolve(
        self, user_id: str | None, anonymous_id: str | None, values: Prepared
    ) -> ContactState:
        """Find (or create) the contact a call is about; merge an anonymous visitor into it."""
        writer = self.writer
        if user_id and anonymous_id is None and not values.standard:
            # The usual call (a known user's track or page): nothing to merge, check or set.
            known = writer.by_external_id(user_id)
            if known is not None:
                return known
        email = values.standard.get("email")
        by_user = writer.by_external_id(user_id) if user_id else None
        by_anon = writer.by_anonymous_id(anonymous_id) if anonymous_id else None
        by_email = writer.by_email(email) if email else None

        def adoptable(state: ContactState | None) -> bool:
            # A contact may take this user id only if it has none of its own yet.
            return state is not None and (user_id is None or state.standard["external_id"] is None)

        target = by_user
        for candidate in (by_email, by_anon):
            if target is None and adoptable(candidate):
                target = candidate
        merging = tuple(
            c
            for c in (by_email, by_anon)
            if c is not None and c is not target and adoptable(c) and (c is by_email or c.anonymous)
        )
        if user_id:
            values.standard.setdefault("external_id", user_id)
        if target is not None and target.standard["external_id"] not in (None, user_id):
            values.standard.pop("external_id", None)
        writer.check_unique(target, values, merging)
        if target is None:
            target = writer.create()
        for other in merging:
            target = writer.merge(target, other)
        if user_id and target.standard["external_id"] is None:
            writer.apply(target, Prepared(standard={"external_id": user_id}))
        if anonymous_id:
            writer.add_alias(target, anonymous_id)
        values.standard.pop("external_id", None)
        return target

    def _alias(self, call: Alias) -> ContactState:
        writer = self.writer
        previous = writer.by_external_id(call.previousId) or writer.by_anonymous_id(call.previousId)
        user = writer.by_external_id(call.userId)
        if user is None and previous is None:
            user = writer.create(Prepared(standard={"external_id": call.userId}))
            writer.add_alias(user, call.previousId)
            return user
        if user is None:
            assert previous is not None
            if previous.standard["external_id"] is None:
                writer.add_alias(previous, call.previousId)
            writer.apply(previous, Prepared(standard={"external_id": call.userId}))
            return previous
        if previous is not None and previous is not user:
            user = writer.merge(user, previous)
        if writer.by_external_id(call.previousId) is None:
            writer.add_alias(user, call.previousId)
        return user

    def _fill_from_context(self, state: ContactState, context: dict[str, Any]) -> None:
        """SDKs report the device's timezone and locale; use them when the contact has none."""
        fill: dict[str, Any] = {}
        for key, normalize in (("timezone", normalize_timezone), ("locale", normalize_locale)):
            value = context.get(key)
            if value and state.standard.get(key) is None:
                try:
                    fill[key] = normalize(value)
                except InvalidInput:
                    continue
        if fill:
            self.writer.apply(state, Prepared(standard=fill))


def _describe(call: AnyCall) -> tuple[str, dict[str, Any]]:
    """The log's event name and properties for a call."""
    if isinstance(call, Track):
        return call.event, call.properties
    if isinstance(call, Identify):
        return "identify", call.traits
    if isinstance(call, Page | Screen):
        extra = {
            k: v for k, v in (("name", call.name), ("category", call.category)) if v is not None
        }
        return call.type, {**call.properties, **extra}
    if isinstance(call, Group):
        return "group", {"group_id": call.groupId, "traits": call.traits}
    return "alias", {"previous_id": call.previousId, "user_id": call.userId}
