"""Signing team members in to the panel: argon2 passwords, sessions kept in the database (only
a hash of the cookie's token), rate-limited attempts, and the one-time link that creates the
first owner.

A member belongs to one workspace; a session carries it, so every page it opens is scoped to it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from conveyor.clock import Clock
from conveyor.domain.errors import ConveyorError, InvalidInput, NotFound, Unauthorized
from conveyor.domain.fields import normalize_email
from conveyor.domain.workspaces import Workspace
from conveyor.services.crm import Crm
from conveyor.services.ratelimits import SharedBucket
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import MemberRecord, WebSessionRecord
from conveyor.store.store import Store, Tx

IDLE = timedelta(days=7)  # a session unused this long ends
LONGEST = timedelta(days=30)  # and none lasts longer, used or not
TOUCH_EVERY = timedelta(minutes=1)  # the live pages poll every 2 s: not a write each time
SETUP_VALID = timedelta(days=1)
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
# Attempts: per address, a burst of 10 then one a minute (a guesser gets ~1,440 a day, against
# argon2 and a 10-character minimum); per client address, 30 then one every 6 seconds.
PER_EMAIL = (10.0, 1 / 60)
PER_CLIENT = (30.0, 1 / 6)


class TooManyAttempts(ConveyorError):
    status = 429
    slug = "too-many-attempts"
    title = "Too many attempts"


@dataclass(frozen=True)
class SignedIn:
    """The member behind a session, with the workspace every page of the session is about."""

    workspace: Workspace
    member_id: int
    name: str
    email: str
    role: str
    csrf: str


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value: known in clear only now
    member: SignedIn


def token_hash(token: str) -> str:
    # Tokens carry 256 random bits: SHA-256 is enough (slow hashes are for guessable secrets).
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password", f"at most {MAX_PASSWORD} characters")
    return password


class SignIn:
    def __init__(self, store: Store, clock: Clock, crm: Crm) -> None:
        self.store = store
        self.clock = clock
        self.crm = crm
        self.hasher = PasswordHasher()

    @cached_property
    def _decoy(self) -> str:
        """Verified when the address is unknown, so a wrong address costs what a wrong password
        does (made on first use: every CLI command builds this service)."""
        return self.hasher.hash(secrets.token_hex(16))

    # --- passwords ---------------------------------------------------------------------------

    def create_user(
        self, workspace: Workspace, email: str, role: str, password: str, name: str | None = None
    ) -> dict[str, Any]:
        """A member who can sign in: added to the team if new, else given this password."""
        check_password(password)
        address = normalize_email(email)
        found = self._member_by_email(workspace, address)
        if found is None:
            self.crm.add_member(workspace, name or address.split("@")[0], address, role)
        elif role != found.role:
            self.crm.change_member(workspace, found.id, {"role": role})
        return self.set_password(workspace, address, password)

    def set_password(self, workspace: Workspace, email: str, password: str) -> dict[str, Any]:
        """Set a member's password; their other sessions end."""
        check_password(password)
        address = normalize_email(email)
        hashed = self.hasher.hash(password)

        def work(tx: Tx) -> dict[str, Any]:
            member = tx.crm.member_by_email(workspace.id, address)
            if member is None:
                raise NotFound(f"no member {address} in workspace '{workspace.name}'")
            tx.sessions.set_password(member.id, hashed)
            tx.sessions.end_all(member.id)
            tx.sessions.end_setup()
            return {"id": member.id, "name": member.name, "email": address, "role": member.role}

        return self.store.transact(work)

    def _member_by_email(self, workspace: Workspace, address: str) -> MemberRecord | None:
        with self.store.read() as tx:
            return tx.crm.member_by_email(workspace.id, address)

    # --- signing in and out -----------------------------------------------------------------

    def sign_in(
        self, email: str, password: str, client: str, workspace: str | None = None
    ) -> NewSession:
        """A new session for the member with these credentials. `workspace` chooses among
        workspaces where the same address and password both hold (rare; asked only then)."""
        address = email.strip().lower()[:320]
        self._limit(f"signin:email:{address}", PER_EMAIL)
        self._limit(f"signin:client:{client}", PER_CLIENT)
        with self.store.read() as tx:
            candidates = tx.sessions.members_with_email(address) if address else []
            names = {
                m.workspace_id: (tx.workspaces.get(m.workspace_id) or None) for m in candidates
            }
        matches = [m for m in candidates if self._verify(m.password_hash or "", password)]
        if not candidates:
            self._verify(self._decoy, password)
        if workspace:
            matches = [
                m for m in matches if (row := names[m.workspace_id]) and row.name == workspace
            ]
        if not matches:
            raise Unauthorized("the email or the password is wrong")
        if len(matches) > 1:
            choices = sorted(row.name for m in matches if (row := names[m.workspace_id]))
            raise WhichWorkspace(choices)
        member = matches[0]
        return self.store.transact(lambda tx: self._open(tx, member))

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _limit(self, key: str, limit: tuple[float, float]) -> None:
        burst, rate = limit
        bucket = SharedBucket(
            self.store, key[:200], rate, burst, now=lambda: self.clock.now().timestamp()
        )
        if bucket.draw() == 0:
            raise TooManyAttempts("too many sign-in attempts: wait a minute and try again")

    def _open(self, tx: Tx, member: MemberRecord) -> NewSession:
        now = self.clock.now()
        token = secrets.token_urlsafe(32)
        record = WebSessionRecord(
            token_hash(token),
            member.workspace_id,
            member.id,
            secrets.token_urlsafe(32),
            now,
            now,
            now + IDLE,
        )
        tx.sessions.purge(now)
        tx.sessions.add(record)
        signed = self._signed_in(tx, record)
        assert signed is not None
        return NewSession(token, signed)

    def session(self, token: str | None) -> SignedIn | None:
        """The member signed in with this cookie token, or None (unknown, expired, removed)."""
        if not token or len(token) > 100:
            return None
        hashed = token_hash(token)
        now = self.clock.now()
        with self.store.read() as tx:
            record = tx.sessions.get(hashed)
            if record is None or record.expires_at <= now:
                return None
            signed = self._signed_in(tx, record)
        if signed is not None and now - record.seen_at >= TOUCH_EVERY:
            expires = min(now + IDLE, record.created_at + LONGEST)
            self.store.transact(lambda tx: tx.sessions.touch(hashed, now, expires))
        return signed

    def sign_out(self, token: str | None) -> None:
        if token:
            self.store.transact(lambda tx: tx.sessions.end(token_hash(token)))

    @staticmethod
    def _signed_in(tx: Tx, record: WebSessionRecord) -> SignedIn | None:
        member = tx.crm.member(record.workspace_id, record.member_id)
        row = tx.workspaces.get(record.workspace_id)
        if member is None or row is None or member.password_hash is None:
            return None
        return SignedIn(
            workspace_from_row(row), member.id, member.name, member.email, member.role, record.csrf
        )

    # --- the first owner ----------------------------------------------------------------------

    def needs_setup(self) -> bool:
        with self.store.read() as tx:
            return not tx.sessions.any_password()

    def setup_link_token(self, workspace: Workspace) -> str | None:
        """While no member of any workspace can sign in: a new one-time token for the page that
        creates the first owner of `workspace` (valid a day); None once someone can."""
        token = secrets.token_urlsafe(32)

        def work(tx: Tx) -> str | None:
            if tx.sessions.any_password():
                return None
            now = self.clock.now()
            tx.sessions.add_setup_token(token_hash(token), workspace.id, now, now + SETUP_VALID)
            return token

        return self.store.transact(work)

    def setup_workspace(self, token: str | None) -> Workspace | None:
        """The workspace a valid setup token creates the first owner of."""
        if not token or len(token) > 100:
            return None
        with self.store.read() as tx:
            workspace_id = tx.sessions.setup_token(token_hash(token), self.clock.now())
            row = tx.workspaces.get(workspace_id) if workspace_id is not None else None
        return workspace_from_row(row) if row is not None else None

    def finish_setup(self, token: str, name: str, email: str, password: str) -> NewSession:
        """Use the setup token: the first owner, signed in. Every other setup link ends."""
        check_password(password)
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("name", "your name, 1-255 characters")
        address = normalize_email(email)
        hashed = self.hasher.hash(password)

        def work(tx: Tx) -> NewSession:
            workspace_id = tx.sessions.take_setup_token(token_hash(token), self.clock.now())
            if workspace_id is None:
                raise Unauthorized("this setup link is used or expired: restart `conveyor serve`")
            member = tx.crm.member_by_email(workspace_id, address)
            if member is None:
                member_id = tx.crm.add_member(
                    workspace_id,
                    {"name": name.strip()[:255], "email": address, "role": "owner"},
                    self.clock.now(),
                )
            else:
                member_id = member.id
                tx.crm.change_member(member_id, {"role": "owner"})
            tx.sessions.set_password(member_id, hashed)
            tx.sessions.end_setup()
            found = tx.crm.member(workspace_id, member_id)
            assert found is not None
            return self._open(tx, found)

        return self.store.transact(work)


class WhichWorkspace(ConveyorError):
    """The address and password hold in several workspaces: the member picks one."""

    status = 409
    slug = "which-workspace"
    title = "Choose a workspace"

    def __init__(self, workspaces: list[str]) -> None:
        super().__init__("you belong to several workspaces: choose one")
        self.workspaces = workspaces
