"""Message templates per workspace and channel, versioned: saving changed content adds a
version (messages already rendered keep theirs). Every Liquid source is checked on save."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import mrml

from conveyor.clock import Clock
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.rendering import check_source
from conveyor.store.store import Store, Tx

DEFAULT_MAX_BYTES = 256_000
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Per channel: the content keys, and which of them are Liquid in HTML (escaped) or in text.
CONTENT: dict[str, dict[str, str]] = {
    "email": {
        "subject": "text",
        "preheader": "text",
        "html": "html",
        "mjml": "html",
        "text": "text",
        "from_name": "text",
        "reply_to": "plain",
    },
    "sms": {"body": "text"},
    "site_message": {"title": "text", "body": "text", "button": "text", "url": "text"},
    "team": {"subject": "text", "html": "html", "text": "text"},
    "webhook": {"body": "text", "headers": "headers", "method": "plain"},
}
REQUIRED = {
    "email": ("subject",),
    "sms": ("body",),
    "site_message": ("body",),
    "team": ("subject",),
    "webhook": ("body",),
}


@dataclass(frozen=True)
class TemplateInfo:
    key: str
    channel: str
    name: str
    version: int
    content: dict[str, Any]


def check_content(channel: str, content: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The content, validated for its channel; errors name the key and the Liquid line. Each
    part holds at most `max_bytes` of UTF-8: what a template costs to parse, keep parsed and
    render grows with its size."""
    if channel not in CONTENT:
        raise InvalidInput("channel", f"one of {', '.join(CONTENT)}")
    if not isinstance(content, dict):
        raise InvalidInput("content", "a mapping of the template's parts")
    spec = CONTENT[channel]
    extra = sorted(set(content) - set(spec))
    if extra:
        raise InvalidInput(f"content.{extra[0]}", f"a {channel} template has {', '.join(spec)}")
    for key in REQUIRED[channel]:
        if not content.get(key):
            raise InvalidInput(f"content.{key}", f"a {channel} template needs '{key}'")
    if channel in ("email", "team"):
        bodies = [k for k in ("html", "mjml", "text") if content.get(k)]
        if not bodies:
            raise InvalidInput("content.html", "an email needs html, mjml or text")
        if "html" in bodies and "mjml" in bodies:
            raise InvalidInput("content.mjml", "give html or mjml, not both")
    for key, kind in spec.items():
        value = content.get(key)
        if value is None:
            continue
        path = f"content.{key}"
        for part, text in _texts(path, value):
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > max_bytes:
                raise InvalidInput(part, f"at most {max_bytes} bytes, this is {size}")
        if kind == "headers":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise InvalidInput(path, "a mapping of header names to text")
            for name, text in value.items():
                check_source(text, f"{path}.{name}")
        elif kind == "plain":
            if not isinstance(value, str):
                raise InvalidInput(path, "expects text")
        else:
            check_source(value, path, html=kind == "html")
    if content.get("mjml"):
        try:
            mrml.to_html(content["mjml"])
        except OSError as exc:
            raise InvalidInput("content.mjml", f"not valid MJML: {exc}") from None
    if channel == "webhook" and content.get("method", "POST").upper() not in (
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "GET",
    ):
        raise InvalidInput("content.method", "POST, PUT, PATCH, DELETE or GET")
    return {k: v for k, v in content.items() if v is not None}


def _texts(path: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [(f"{path}.{k}", v) for k, v in value.items() if isinstance(v, str)]
    return []


class Templates:
    def __init__(self, store: Store, clock: Clock, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.store = store
        self.clock = clock
        self.max_bytes = max_bytes

    def save(
        self, workspace: Workspace, key: str, channel: str, content: Any, name: str | None = None
    ) -> tuple[TemplateInfo, str]:
        """Create the template or add a version when its content changed. Says which."""
        if not isinstance(key, str) or not KEY.match(key):
            raise InvalidInput("key", "1-64 of a-z, 0-9, - and _")
        checked = check_content(channel, content, self.max_bytes)

        def work(tx: Tx) -> tuple[TemplateInfo, str]:
            now = self.clock.now()
            row = tx.templates.by_key(workspace.id, key)
            if row is None:
                template_id = tx.templates.add(workspace.id, key, channel, name or key, now)
                tx.templates.add_version(template_id, 1, checked, now)
                return self._info(tx, workspace, key), "created"
            if row.channel != channel:
                raise Conflict(
                    f"template '{key}' is a {row.channel} template; its channel cannot change",
                    field="channel",
                )
            result = "unchanged"
            if name and name != row.name:
                tx.templates.rename(row.id, name, now)
                result = "renamed"
            current = tx.templates.version(row.id, row.version)
            if current is None or current.content != checked:
                tx.templates.add_version(row.id, row.version + 1, checked, now)
                result = "new version"
            return self._info(tx, workspace, key), result

        return self.store.transact(work)

    def get(self, workspace: Workspace, key: str, version: int | None = None) -> TemplateInfo:
        with self.store.read() as tx:
            return self._info(tx, workspace, key, version)

    def _info(
        self, tx: Tx, workspace: Workspace, key: str, version: int | None = None
    ) -> TemplateInfo:
        row = tx.templates.by_key(workspace.id, key)
        if row is None:
            raise NotFound(f"no template '{key}' in this workspace")
        found = tx.templates.version(row.id, version or row.version)
        if found is None:
            raise NotFound(f"template '{key}' has no version {version}")
        return TemplateInfo(row.key, row.channel, row.name, found.version, dict(found.content))

    def all(self, workspace: Workspace) -> list[TemplateInfo]:
        with self.store.read() as tx:
            rows = tx.templates.all(workspace.id)
            current = tx.templates.current(workspace.id, [r.key for r in rows])
        return [
            TemplateInfo(r.key, r.channel, r.name, r.version, dict(current[r.key].content))
            for r in rows
            if r.key in current
        ]

    def versions(self, workspace: Workspace, key: str) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            row = tx.templates.by_key(workspace.id, key)
            if row is None:
                raise NotFound(f"no template '{key}' in this workspace")
            return [
                {"version": v.version, "created_at": v.created_at, "content": v.content}
                for v in tx.templates.versions(row.id)
            ]

    def delete(self, workspace: Workspace, key: str) -> None:
        def work(tx: Tx) -> None:
            row = tx.templates.by_key(workspace.id, key)
            if row is None:
                raise NotFound(f"no template '{key}' in this workspace")
            users = _automations_using(tx, workspace, key)
            if users:
                raise Conflict(
                    f"template '{key}' is used by automation(s) {', '.join(users)}", field="key"
                )
            tx.templates.delete(row.id)

        self.store.transact(work)


def _automations_using(tx: Tx, workspace: Workspace, key: str) -> list[str]:
    """Automations whose current version sends `key`, or an older version that still has
    contacts inside (they would reach the send and fail there)."""
    rows = {row.id: row for row in tx.automations.all(workspace.id)}
    versions = {(r.id, r.version) for r in rows.values() if r.status != "archived" and r.version}
    versions |= set(tx.automations.versions_in_use(workspace.id))
    users = []
    for automation_id, version in sorted(versions):
        definition = tx.automations.definition(automation_id, version) or {}
        nodes = definition.get("nodes", [])
        if any(isinstance(n, dict) and n.get("template") == key for n in nodes):
            users.append(rows[automation_id].key)
    return sorted(set(users))
