"""SQL for the panel's sign-in: members' password hashes, sessions and the setup link."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from conveyor.store.records import MemberRecord, WebSessionRecord
from conveyor.store.schema import members, setup_tokens, web_sessions


class SessionQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- members' passwords -----------------------------------------------------------------

    def members_with_email(self, email: str) -> list[MemberRecord]:
        """Members of every workspace with this (normalized) email who have a password."""
        rows = self.conn.execute(
            select(members)
            .where(members.c.email == email, members.c.password_hash.is_not(None))
            .order_by(members.c.id)
        )
        return [MemberRecord.from_row(r) for r in rows]

    def any_password(self) -> bool:
        stmt = select(members.c.id).where(members.c.password_hash.is_not(None)).limit(1)
        return self.conn.execute(stmt).first() is not None

    def set_password(self, member_id: int, password_hash: str) -> None:
        self.conn.execute(
            update(members).where(members.c.id == member_id).values(password_hash=password_hash)
        )

    # --- sessions ----------------------------------------------------------------------------

    def add(self, record: WebSessionRecord) -> None:
        self.conn.execute(
            insert(web_sessions).values(
                token_hash=record.token_hash,
                workspace_id=record.workspace_id,
                member_id=record.member_id,
                csrf=record.csrf,
                created_at=record.created_at,
                seen_at=record.seen_at,
                expires_at=record.expires_at,
            )
        )

    def get(self, token_hash: str) -> WebSessionRecord | None:
        row = self.conn.execute(
            select(web_sessions).where(web_sessions.c.token_hash == token_hash)
        ).first()
        return WebSessionRecord.from_row(row) if row else None

    def touch(self, token_hash: str, seen_at: datetime, expires_at: datetime) -> None:
        self.conn.execute(
            update(web_sessions)
            .where(web_sessions.c.token_hash == token_hash)
            .values(seen_at=seen_at, expires_at=expires_at)
        )

    def end(self, token_hash: str) -> None:
        self.conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == token_hash))

    def end_all(self, member_id: int) -> int:
        result = self.conn.execute(
            delete(web_sessions).where(web_sessions.c.member_id == member_id)
        )
        return result.rowcount or 0

    def purge(self, now: datetime) -> int:
        result = self.conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
        return result.rowcount or 0

    # --- the setup link ---------------------------------------------------------------------

    def add_setup_token(
        self, token_hash: str, workspace_id: int, now: datetime, expires_at: datetime
    ) -> None:
        self.conn.execute(
            insert(setup_tokens).values(
                token_hash=token_hash,
                workspace_id=workspace_id,
                created_at=now,
                expires_at=expires_at,
            )
        )

    def setup_token(self, token_hash: str, now: datetime) -> int | None:
        """The workspace of a valid setup token."""
        return self.conn.execute(
            select(setup_tokens.c.workspace_id).where(
                setup_tokens.c.token_hash == token_hash, setup_tokens.c.expires_at > now
            )
        ).scalar()

    def take_setup_token(self, token_hash: str, now: datetime) -> int | None:
        """Use up a valid setup token (compare-and-set: one of two racing uses wins); its
        workspace, or None."""
        workspace_id = self.setup_token(token_hash, now)
        if workspace_id is None:
            return None
        result = self.conn.execute(
            delete(setup_tokens).where(setup_tokens.c.token_hash == token_hash)
        )
        return workspace_id if result.rowcount == 1 else None

    def end_setup(self) -> None:
        """Once a member can sign in, every outstanding setup link is void."""
        self.conn.execute(delete(setup_tokens))
