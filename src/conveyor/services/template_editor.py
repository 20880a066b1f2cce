"""The template editor's work: a draft checked with each error at its part, line and column
(Liquid and MJML), rendered for a chosen contact without saving, and sent once as a test to an
address through the workspace's email channel (limited per member, recorded in the log)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import mrml

from conveyor.channels.base import DeliveryError, Email
from conveyor.clock import Clock
from conveyor.domain.contacts import Contact
from conveyor.domain.errors import ConveyorError, InvalidInput, NotFound
from conveyor.domain.fields import normalize_email
from conveyor.domain.workspaces import Workspace
from conveyor.services.channel_config import email_setup
from conveyor.services.contacts import Contacts
from conveyor.services.delivery import Providers
from conveyor.services.outgoing import render_preview
from conveyor.services.ratelimits import SharedBucket
from conveyor.services.rendering import (
    EmailParts,
    Envelope,
    RenderError,
    check_source,
    compose,
    message_id_for,
)
from conveyor.services.templates import CONTENT, DEFAULT_MAX_BYTES, check_content
from conveyor.settings import Settings
from conveyor.store.store import Store

# A member sends 5 tests at once, then one a minute: enough to check a change, too few to
# turn the editor into a way around the send policy.
TEST_SENDS = (5.0, 1 / 60)
TEST_SENT = "template.test_sent"
_AT = re.compile(r"^line (\d+), column (-?\d+): (.*)$", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One error in a draft: the part (`content.html`), and where in it when known."""

    field: str
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def part(self) -> str:
        return self.field.removeprefix("content.")

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "part": self.part,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line else ""
        return f"{where}{self.message}"


def problem_of(exc: InvalidInput) -> Problem:
    found = _AT.match(exc.reason)
    if found:
        # python-liquid places "end of template" before the line's start: the line is right
        column = max(1, int(found.group(2)))
        return Problem(exc.field, found.group(3), int(found.group(1)), column)
    return Problem(exc.field, exc.reason)


class TooManyTests(ConveyorError):
    status = 429
    slug = "too-many-tests"
    title = "Too many test sends"


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str
    html: str | None
    text: str
    contact: Contact | None


class TemplateEditor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        contacts: Contacts,
        providers: dict[str, Any] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.contacts = contacts
        self.overrides = providers
        self.max_bytes = max_bytes

    def check(self, channel: str, content: dict[str, Any]) -> list[Problem]:
        """Every problem of a draft, at most one per part: none means it would save. Each
        Liquid part is parsed on its own, so two broken parts show two errors."""
        problems: list[Problem] = []
        for key, kind in CONTENT.get(channel, {}).items():
            value = content.get(key)
            if not isinstance(value, str) or kind not in ("text", "html"):
                continue
            try:
                check_source(value, f"content.{key}", html=kind == "html")
            except InvalidInput as exc:
                problems.append(problem_of(exc))
                continue
            if key == "mjml" and value.strip() and not mjml_compiles(value):
                try:
                    mrml.to_html(value)
                except OSError as exc:
                    fallback = Problem("content.mjml", f"not valid MJML: {exc}")
                    problems.append(mjml_problem(value, fallback))
        if problems:
            return problems
        try:
            check_content(channel, content, self.max_bytes)
        except InvalidInput as exc:
            problem = problem_of(exc)
            if exc.field == "content.mjml" and problem.line is None:
                problem = mjml_problem(content.get("mjml") or "", problem)
            problems.append(problem)
        return problems

    def find_contact(self, workspace: Workspace, given: str) -> Contact:
        """A contact by id (digits), email (has @) or external id."""
        given = given.strip()
        if given.isdigit() and len(given) < 16:
            return self.contacts.get(workspace, int(given))
        if "@" in given:
            return self.contacts.lookup(workspace, email=given)
        return self.contacts.lookup(workspace, external_id=given)

    def render(
        self,
        workspace: Workspace,
        channel: str,
        content: dict[str, Any],
        contact: str = "",
        event: dict[str, Any] | None = None,
    ) -> Rendered:
        """A valid draft as the contact would get it (no tracking). Raises InvalidInput (the
        first problem) for a draft that would not save, or a contact not found."""
        content = check_content(channel, content, self.max_bytes)
        who = self.find_contact(workspace, contact) if contact.strip() else None
        with self.store.read() as tx:
            view = None
            if who is not None:
                view = self.contacts.views(tx, workspace, [who.id]).get(who.id)
                if view is None:
                    raise NotFound(f"no contact {who.id} in this workspace")
            if view is None:
                view = _nobody(self.clock.now())
        try:
            out = render_preview(workspace, channel, content, view, event or {}, self.settings)
        except RenderError as exc:
            raise InvalidInput("template", str(exc)) from None
        if channel in ("email", "team"):
            return Rendered(
                out.get("subject", ""), out.get("preheader", ""), out["html"], out["text"], who
            )
        text = "\n".join(str(v) for v in out.values() if isinstance(v, str))
        return Rendered("", "", None, text, who)

    def send_test(
        self,
        workspace: Workspace,
        member_id: int,
        member_email: str,
        key: str,
        channel: str,
        content: dict[str, Any],
        to: str,
        contact: str = "",
        event: dict[str, Any] | None = None,
    ) -> str:
        """Send the draft once to `to` through the workspace's email channel, subject marked
        `[Test]`, without tracking or unsubscribe; recorded as `template.test_sent`. Returns
        the address it went to."""
        address = _address(to)
        if channel not in ("email", "team"):
            raise InvalidInput("channel", "only email templates have a test send")
        rendered = self.render(workspace, channel, content, contact, event)
        url, sender = email_setup(workspace, self.settings)
        if not url or not sender:
            raise InvalidInput("to", "this workspace has no email channel: set it in Settings")
        bucket = SharedBucket(
            self.store,
            f"template-test:{workspace.id}:{member_id}",
            TEST_SENDS[1],
            TEST_SENDS[0],
            now=lambda: self.clock.now().timestamp(),
        )
        if bucket.draw() == 0:
            raise TooManyTests("too many test sends: wait a minute and try again")
        now = self.clock.now()
        message_id = message_id_for(f"test-{key}-{member_id}-{now.timestamp():.6f}", sender)
        parts = EmailParts(f"[Test] {rendered.subject}", rendered.html, rendered.text, [])
        data = compose(parts, Envelope(sender, address, None, message_id, now, None))
        email = Email(parseaddr(sender)[1], (address,), data, message_id)
        error: str | None = None
        try:
            asyncio.run(self._send(workspace, email))
        except DeliveryError as exc:
            error = exc.reason
        self._record(workspace, key, member_email, address, contact, rendered, error)
        if error is not None:
            raise InvalidInput("to", f"the email server did not take it: {error}")
        return address

    async def _send(self, workspace: Workspace, email: Any) -> None:
        providers = Providers(self.settings, self.overrides, self.store)
        try:
            provider = providers.email(workspace)
            if provider is None:
                raise InvalidInput("to", "this workspace has no email channel: set it in Settings")
            await provider.send(email)
        finally:
            if not self.overrides:
                await providers.close()

    def _record(
        self,
        workspace: Workspace,
        key: str,
        by: str,
        to: str,
        contact: str,
        rendered: Rendered,
        error: str | None,
    ) -> None:
        now = self.clock.now()
        properties: dict[str, Any] = {
            "template": key,
            "to": to,
            "by": by,
            "subject": rendered.subject[:200],
            "outcome": "failed" if error else "sent",
        }
        if rendered.contact is not None:
            properties["rendered_for"] = rendered.contact.id
        if error:
            properties["error"] = error[:200]
        row = {
            "workspace_id": workspace.id,
            "contact_id": None,  # a workspace's own act, not something a contact did
            "kind": "system",
            "name": TEST_SENT,
            "properties": properties,
            "context": {"source": "panel"},
            "message_id": None,
            "timestamp": now,
            "received_at": now,
        }
        self.store.transact(lambda tx: tx.events.append([row]))

    def test_sends(self, workspace: Workspace, key: str, limit: int = 10) -> list[dict[str, Any]]:
        """The latest test sends of a template, newest first."""
        with self.store.read() as tx:
            rows = tx.events.page(workspace.id, name=TEST_SENT, limit=200, newest_first=True)
        found = [
            {"at": r.timestamp, **(r.properties or {})}
            for r in rows
            if (r.properties or {}).get("template") == key
        ]
        return found[:limit]


def _address(to: str) -> str:
    try:
        address = normalize_email(to.strip())
    except (InvalidInput, ValueError):
        address = None
    if not address:
        raise InvalidInput("to", "an email address, e.g. you@example.com")
    return address


def _nobody(now: datetime) -> Contact:
    """No contact chosen: the draft renders with empty values (as for a contact without
    them)."""
    return Contact(-1, None, None, None, None, None, None, None, 0, {}, now, now)


# --- MJML errors at their place -------------------------------------------------------------

_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr", "mj-image", "mj-divider", "mj-spacer", "mj-breakpoint", "mj-font",
    "mj-all", "mj-class", "mj-preview", "mj-title", "mj-carousel-image", "mj-social-element",
}  # fmt: skip
_RAW = ("mj-style", "mj-raw", "style", "script")
_TAG = re.compile(r"<!--.*?-->|<(/?)([A-Za-z][\w:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>", re.S)
_LIQUID = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def mjml_problem(source: str, fallback: Problem) -> Problem:
    """mrml says what is wrong but not where: find the first tag left open or closed out of
    order (Liquid blanked out, HTML's void elements allowed) and put the error there."""
    text = _LIQUID.sub(lambda m: " " * len(m.group(0)), source)
    stack: list[tuple[str, int]] = []
    for match in _TAG.finditer(text):
        if match.group(0).startswith("<!--"):
            continue
        closing, name, _attrs, selfclosing = match.groups()
        name = name.lower()
        if stack and stack[-1][0] in _RAW and not (closing and name == stack[-1][0]):
            continue
        if selfclosing or (not closing and name in _VOID):
            continue
        if not closing:
            stack.append((name, match.start()))
            continue
        if not stack:
            return _at(source, match.start(), fallback, f"</{name}> closes nothing")
        if stack[-1][0] != name:
            opened, where = stack[-1]
            line, col = _line_col(source, where)
            return _at(
                source,
                match.start(),
                fallback,
                f"</{name}> closes <{opened}> (opened at line {line}, column {col})",
            )
        stack.pop()
    if stack:
        opened, where = stack[-1]
        return _at(source, where, fallback, f"<{opened}> is never closed")
    return Problem(fallback.field, fallback.message, 1, 1)


def _line_col(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    return line, index - (source.rfind("\n", 0, index) + 1) + 1


def _at(source: str, index: int, fallback: Problem, message: str) -> Problem:
    line, col = _line_col(source, index)
    return Problem(fallback.field, f"{message} — {fallback.message}", line, col)


def mjml_compiles(source: str) -> bool:
    try:
        mrml.to_html(source)
    except OSError:
        return False
    return True
