"""Contacts as the admin API sees them: create, change, find, list, delete, history."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import (
    Contact,
    SubscriptionStatus,
    SystemEvent,
    normalize_tag,
    parse_status,
)
from conveyor.domain.errors import Conflict, FieldError, InvalidInput, NotFound
from conveyor.domain.fields import STANDARD_FIELDS, normalize_email
from conveyor.domain.scoring import decays_of, values_at
from conveyor.domain.signatures import digits, same_secret
from conveyor.domain.workspaces import Workspace
from conveyor.services.contact_writer import ContactState, ContactWriter, Prepared
from conveyor.services.exports import FORMATS, ContactExport
from conveyor.store.records import ContactRecord
from conveyor.store.store import Store, Tx

PAGE_MAX = 500


@dataclass
class ContactChange:
    """What a caller wants changed; only what is given is touched."""

    values: dict[str, Any] = field(default_factory=dict)  # standard attributes and custom fields
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)  # list key -> status
    score: int | None = None
    score_delta: int | None = None


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"c{value}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("c"):
            raise ValueError(cursor)
        value = int(text[1:])
        if not 0 <= value < 2**63:
            raise ValueError(cursor)
        return value
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this API handed out") from None


def confirmation_token(workspace: Workspace, contact_id: int, list_id: int) -> str:
    payload = f"{workspace.id}.{contact_id}.{list_id}"
    mac = hmac.new(workspace.secret.encode(), f"confirm:{payload}".encode(), hashlib.sha256)
    return f"{payload}.{mac.hexdigest()[:32]}"


class Contacts:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- writes ---------------------------------------------------------------------------

    def create(self, workspace: Workspace, change: ContactChange) -> Contact:
        def work(tx: Tx) -> Contact:
            writer = ContactWriter(tx, workspace, self.clock.now(), source="api")
            prepared = writer.prepare(change.values)
            if not (
                prepared.standard.get("email")
                or prepared.standard.get("external_id")
                or prepared.standard.get("phone")
            ):
                raise InvalidInput("email", "a contact needs an email, a phone or an external_id")
            writer.check_unique(None, prepared)
            state = writer.create(prepared)
            self._apply_rest(writer, state, change)
            writer.flush()
            return writer.view(state)

        return self.store.transact(work)

    def update(self, workspace: Workspace, contact_id: int, change: ContactChange) -> Contact:
        def work(tx: Tx) -> Contact:
            writer = ContactWriter(tx, workspace, self.clock.now(), source="api")
            state = self._get(writer, contact_id)
            prepared = writer.prepare(change.values)
            writer.check_unique(state, prepared)
            writer.apply(state, prepared)
            self._apply_rest(writer, state, change)
            writer.flush()
            return writer.view(state)

        return self.store.transact(work)

    def _apply_rest(
        self, writer: ContactWriter, state: ContactState, change: ContactChange
    ) -> None:
        errors: list[FieldError] = []
        tags_in = [(t, "add_tags") for t in change.add_tags] + [
            (t, "remove_tags") for t in change.remove_tags
        ]
        tags: dict[str, list[str]] = {"add_tags": [], "remove_tags": []}
        for i, (raw, where) in enumerate(tags_in):
            try:
                tags[where].append(normalize_tag(raw, where))
            except InvalidInput as exc:
                errors.append(FieldError(f"{where}.{i}", exc.reason))
        statuses = []
        for key, raw in change.lists.items():
            try:
                statuses.append(
                    (
                        writer.catalog.list_named(key, f"lists.{key}"),
                        parse_status(raw, f"lists.{key}"),
                    )
                )
            except InvalidInput as exc:
                errors.append(FieldError(exc.field, exc.reason))
        if errors:
            raise InvalidInput.many(errors)
        writer.add_tags(state, tags["add_tags"])
        writer.remove_tags(state, tags["remove_tags"])
        for info, status in statuses:
            writer.set_subscription(state, info, status)
        if change.score is not None:
            writer.set_score(state, change.score)
        if change.score_delta:
            writer.set_score(state, state.score + change.score_delta)

    def delete(self, workspace: Workspace, contact_id: int) -> None:
        def work(tx: Tx) -> None:
            if not tx.contacts.delete(workspace.id, contact_id):
                raise NotFound(f"no contact {contact_id} in this workspace")
            # The log keeps that a contact was deleted, and nothing about who it was.
            writer = ContactWriter(tx, workspace, self.clock.now(), source="api")
            writer.record(None, SystemEvent.CONTACT_DELETED, {"contact_id": contact_id})
            writer.flush()

        self.store.transact(work)

    def confirm(self, workspace: Workspace, token: str) -> tuple[Contact, str]:
        """A contact confirmed a double opt-in subscription through its signed link."""
        parts = token.split(".")
        if len(parts) != 4 or not all(digits(p) for p in parts[:3]):
            raise NotFound("this confirmation link is not valid")
        ids = int(parts[0]), int(parts[1]), int(parts[2])
        if ids[0] != workspace.id or not same_secret(
            token, confirmation_token(workspace, ids[1], ids[2])
        ):
            raise NotFound("this confirmation link is not valid")

        def work(tx: Tx) -> tuple[Contact, str]:
            writer = ContactWriter(tx, workspace, self.clock.now(), source="confirmation")
            state = self._get(writer, ids[1])
            info = writer.catalog.lists_by_id.get(ids[2])
            if info is None:
                raise NotFound("this list no longer exists")
            _, subs = writer._relations(state)
            if subs.get(info.id) == SubscriptionStatus.UNCONFIRMED:
                writer.set_subscription(state, info, SubscriptionStatus.SUBSCRIBED, confirmed=True)
            elif subs.get(info.id) != SubscriptionStatus.SUBSCRIBED:
                raise Conflict("this subscription was cancelled; subscribe again to confirm it")
            writer.flush()
            return writer.view(state), info.name

        return self.store.transact(work)

    # --- reads ----------------------------------------------------------------------------

    def _get(self, writer: ContactWriter, contact_id: int) -> ContactState:
        state = writer.by_id(contact_id)
        if state is None:
            raise NotFound(f"no contact {contact_id} in this workspace")
        return state

    def get(self, workspace: Workspace, contact_id: int) -> Contact:
        with self.store.read() as tx:
            rows = tx.contacts.by_ids(workspace.id, [contact_id])
            if not rows:
                raise NotFound(f"no contact {contact_id} in this workspace")
            return self._views(tx, workspace, rows)[0]

    def lookup(
        self,
        workspace: Workspace,
        *,
        external_id: str | None = None,
        email: str | None = None,
        anonymous_id: str | None = None,
    ) -> Contact:
        given = [
            (k, v)
            for k, v in (
                ("external_id", external_id),
                ("email", email),
                ("anonymous_id", anonymous_id),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise InvalidInput(
                "external_id", "give exactly one of external_id, email, anonymous_id"
            )
        key, value = given[0]
        with self.store.read() as tx:
            if key == "external_id":
                rows = tx.contacts.by_external_ids(workspace.id, [value])
            elif key == "email":
                rows = tx.contacts.by_emails(workspace.id, [normalize_email(value)])
            else:
                target = tx.contacts.alias_targets(workspace.id, [value]).get(value)
                rows = tx.contacts.by_ids(workspace.id, [target]) if target is not None else []
            if not rows:
                raise NotFound(f"no contact with {key} '{value}' in this workspace")
            return self._views(tx, workspace, rows)[0]

    def page(
        self,
        workspace: Workspace,
        *,
        cursor: str | None = None,
        limit: int = 50,
        email: str | None = None,
        tag: str | None = None,
        list_key: str | None = None,
        list_status: str | None = None,
    ) -> tuple[list[Contact], str | None]:
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidInput("limit", f"must be between 1 and {PAGE_MAX}")
        after = decode_cursor(cursor)
        with self.store.read() as tx:
            list_id = None
            if list_key is not None:
                lists = {row.key: row.id for row in tx.catalog.lists(workspace.id)}
                if list_key not in lists:
                    raise InvalidInput("list", f"no list '{list_key}' in this workspace")
                list_id = lists[list_key]
            if list_status is not None:
                if list_key is None:
                    raise InvalidInput("status", "filter by status together with a list")
                parse_status(list_status)
            rows = tx.contacts.page(
                workspace.id,
                after_id=after,
                limit=limit + 1,
                email=normalize_email(email) if email else None,
                tag=tag,
                list_id=list_id,
                list_status=list_status,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            items = self._views(tx, workspace, rows)
        return items, encode_cursor(rows[-1].id) if more else None

    def events(
        self,
        workspace: Workspace,
        contact_id: int | None,
        *,
        cursor: str | None = None,
        limit: int = 50,
        name: str | None = None,
    ) -> tuple[list[Any], str | None]:
        """Newest first; the cursor walks back in time."""
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidInput("limit", f"must be between 1 and {PAGE_MAX}")
        before = decode_cursor(cursor)
        with self.store.read() as tx:
            if contact_id is not None and not tx.contacts.by_ids(workspace.id, [contact_id]):
                raise NotFound(f"no contact {contact_id} in this workspace")
            rows = tx.events.page(
                workspace.id,
                contact_id=contact_id,
                name=name,
                before_id=before,
                limit=limit + 1,
                newest_first=True,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].id) if more else None

    def views(self, tx: Tx, workspace: Workspace, ids: list[int]) -> dict[int, Contact]:
        """Contacts by id, with tags and lists, read in `tx` (missing ids are left out)."""
        rows = tx.contacts.by_ids(workspace.id, ids)
        return {c.id: c for c in self._views(tx, workspace, rows)}

    def export(self, workspace: Workspace, fmt: str = "csv") -> Iterator[str]:
        """Every contact of the workspace as CSV or NDJSON (see services/exports), streamed."""
        if fmt not in FORMATS:
            raise InvalidInput("format", f"one of {', '.join(FORMATS)}")
        with self.store.read() as tx:
            fields = [row.key for row in tx.catalog.fields(workspace.id)]
            lists = [row.key for row in tx.catalog.lists(workspace.id)]
        exporter = ContactExport(fields, lists)
        return exporter.stream(
            lambda cursor: self.page(workspace, cursor=cursor, limit=PAGE_MAX), fmt
        )

    def _views(self, tx: Tx, workspace: Workspace, rows: list[ContactRecord]) -> list[Contact]:
        ids = [row.id for row in rows]
        tags = tx.contacts.tags_of(ids)
        subs = tx.contacts.subscriptions_of(ids)
        aliases = tx.contacts.aliases_of(ids)
        list_keys = {row.id: row.key for row in tx.catalog.lists(workspace.id)} if subs else {}
        scores = self._scores(tx, workspace, ids)
        return [
            Contact(
                id=row.id,
                **{name: getattr(row, name) for name in STANDARD_FIELDS},
                score=row.score,
                fields=dict(row.fields or {}),
                created_at=row.created_at,
                updated_at=row.updated_at,
                tags=sorted(tags.get(row.id, ())),
                lists={list_keys[lid]: st for lid, st in sorted(subs.get(row.id, {}).items())},
                anonymous_ids=aliases.get(row.id, []),
                scores=scores.get(row.id, {}),
            )
            for row in rows
        ]

    def _scores(self, tx: Tx, workspace: Workspace, ids: list[int]) -> dict[int, dict[str, float]]:
        """Named scores now, for contacts of a workspace that has a scoring model."""
        model = tx.scoring.model(workspace.id) if ids else None
        if model is None:
            return {}
        decays = decays_of(model.definition, model.epoch)
        by_contact: dict[int, list[tuple[str, float, float]]] = {}
        for r in tx.scoring.states(workspace.id, ids).values():
            by_contact.setdefault(r.contact_id, []).append((r.score, r.norm, r.fixed))
        now = self.clock.now()
        zero = {name: 0.0 for name in decays}
        return {cid: zero | values_at(by_contact.get(cid, ()), decays, now) for cid in ids}


def confirm_url(base_url: str, workspace: Workspace, contact_id: int, list_id: int) -> str:
    token = confirmation_token(workspace, contact_id, list_id)
    return f"{base_url.rstrip('/')}/confirm/{workspace.name}/{token}"


__all__ = ["ContactChange", "Contacts", "Prepared", "confirm_url"]
