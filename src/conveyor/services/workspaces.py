"""Workspaces and API keys: creating them, and turning a presented key into its workspace."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from conveyor.domain.workspaces import KeyKind, Workspace, check_workspace_name
from conveyor.store.records import ApiKeyRecord, WorkspaceRecord
from conveyor.store.store import Store, Tx

KEY_PREFIX = "cvk_"


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the only moment its secret is known in clear."""

    id: int
    workspace: str
    kind: KeyKind
    name: str
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the workspace a key belongs to and what kind of key it is."""

    workspace: Workspace
    kind: KeyKind
    key_id: int


def hash_key(secret: str) -> str:
    # Keys carry 256 random bits, so plain SHA-256 is enough; slow hashes are for guessable secrets.
    return hashlib.sha256(secret.encode()).hexdigest()


def workspace_from_row(row: WorkspaceRecord) -> Workspace:
    return Workspace(id=row.id, name=row.name, secret=row.secret, settings=dict(row.settings or {}))


class KeyCache:
    """Keys this process checked a moment ago, by hash: a tracking request needs no database
    read to know who it is (that read was ~8 % of the API's time at 2,800 events/s).

    An entry lives `ttl` seconds of `ticker` (monotonic, not the Clock: it measures this
    process's own time, and the SimulatedClock only moves when told): a key revoked by another
    process stops working here within `ttl`; one revoked by this process at once. Unknown keys
    are never kept, so a key created a moment ago works at once everywhere.
    """

    def __init__(self, ttl: float, ticker: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.ticker = ticker
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if self.ticker() >= entry[0]:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return entry[1]

    def put(self, key_hash: str, who: Principal) -> None:
        if self.ttl > 0:
            with self._lock:
                if len(self._entries) >= 10_000:  # a bound, however many keys are presented
                    self._entries.clear()
                self._entries[key_hash] = (self.ticker() + self.ttl, who)

    def forget(self, *, key_id: int | None = None, workspace_id: int | None = None) -> None:
        with self._lock:
            for key_hash, (_, who) in list(self._entries.items()):
                if who.key_id == key_id or who.workspace.id == workspace_id:
                    del self._entries[key_hash]


class Workspaces:
    def __init__(self, store: Store, clock: Clock, *, key_ttl: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.key_cache = KeyCache(key_ttl)

    def create(self, name: str, settings: dict[str, Any] | None = None) -> tuple[Workspace, NewKey]:
        """A new workspace and its first admin key."""
        check_workspace_name(name)

        def work(tx: Tx) -> tuple[Workspace, NewKey]:
            if tx.workspaces.by_name(name) is not None:
                raise Conflict(f"a workspace named '{name}' exists already", field="name")
            now = self.clock.now()
            workspace_id = tx.workspaces.create(name, secrets.token_hex(32), settings or {}, now)
            key = self._add_key(tx, workspace_id, name, KeyKind.ADMIN, "initial admin key", now)
            return workspace_from_row(self._stored(tx, workspace_id)), key

        return self.store.transact(work)

    def ensure_default(self, name: str) -> NewKey | None:
        """Create the default workspace on first start; its admin key is returned only then."""
        with self.store.read() as tx:
            if tx.workspaces.count() > 0:
                return None
        try:
            return self.create(name)[1]
        except Conflict:
            return None  # another process created it a moment ago

    def get(self, name: str) -> Workspace:
        with self.store.read() as tx:
            row = tx.workspaces.by_name(name)
        if row is None:
            raise NotFound(f"no workspace named '{name}'")
        return workspace_from_row(row)

    def all(self) -> list[Workspace]:
        with self.store.read() as tx:
            return [workspace_from_row(row) for row in tx.workspaces.all()]

    def update_settings(self, workspace: Workspace, changes: dict[str, Any]) -> Workspace:
        def work(tx: Tx) -> Workspace:
            settings = {**self._stored(tx, workspace.id).settings, **changes}
            settings = {k: v for k, v in settings.items() if v is not None}
            tx.workspaces.set_settings(workspace.id, settings)
            return workspace_from_row(self._stored(tx, workspace.id))

        updated = self.store.transact(work)
        self.key_cache.forget(workspace_id=workspace.id)
        return updated

    @staticmethod
    def _stored(tx: Tx, workspace_id: int) -> WorkspaceRecord:
        row = tx.workspaces.get(workspace_id)
        if row is None:
            raise NotFound(f"no workspace {workspace_id}")
        return row

    # --- keys -----------------------------------------------------------------------------

    def create_key(self, workspace: Workspace, kind: str, name: str | None = None) -> NewKey:
        try:
            key_kind = KeyKind(kind)
        except ValueError:
            raise InvalidInput("kind", "must be 'admin' or 'write'") from None
        label = (name or f"{key_kind} key").strip()
        if not label or len(label) > 100:
            raise InvalidInput("name", "a key name is 1-100 characters")
        return self.store.transact(
            lambda tx: self._add_key(
                tx, workspace.id, workspace.name, key_kind, label, self.clock.now()
            )
        )

    def _add_key(
        self,
        tx: Tx,
        workspace_id: int,
        workspace_name: str,
        kind: KeyKind,
        name: str,
        now: datetime,
    ) -> NewKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = tx.workspaces.add_key(
            workspace_id, kind, name, secret[: len(KEY_PREFIX) + 6], hash_key(secret), now
        )
        return NewKey(key_id, workspace_name, kind, name, secret)

    def keys(self, workspace: Workspace) -> list[ApiKeyRecord]:
        with self.store.read() as tx:
            return tx.workspaces.keys(workspace.id)

    def revoke_key(self, workspace: Workspace, key_id: int) -> None:
        def work(tx: Tx) -> None:
            if not tx.workspaces.revoke_key(workspace.id, key_id, self.clock.now()):
                if tx.workspaces.key(workspace.id, key_id) is None:
                    raise NotFound(f"no key {key_id} in this workspace")
                raise Conflict(f"key {key_id} is revoked already")

        self.store.transact(work)
        self.key_cache.forget(key_id=key_id)

    def authenticate(self, secret: str) -> Principal:
        if not secret:
            raise Unauthorized("send an API key as 'Authorization: Bearer KEY'")
        key_hash = hash_key(secret)
        who = self.key_cache.get(key_hash)
        if who is not None:
            return who
        with self.store.peek() as tx:  # one statement: no transaction to begin and commit
            key = tx.workspaces.key_by_hash(key_hash)
        if key is None:
            raise Unauthorized("unknown or revoked API key")
        who = Principal(workspace_from_row(key.workspace), KeyKind(key.kind), key.key_id)
        self.key_cache.put(key_hash, who)
        return who
