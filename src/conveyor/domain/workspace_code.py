"""A workspace as code: a folder of YAML files, one sub-folder per kind of resource, planned and
applied like infrastructure code (`conveyor plan DIR`, `conveyor apply DIR`).

    fields/*.yaml       a list of {key, type, label?, choices?}
    lists/*.yaml        a list of {key, name?, double_opt_in?}
    templates/*.yaml    a template {key, channel, content, name?} or a list of them
    scoring/*.yaml      the scoring model (one per workspace)
    segments/*.yaml     a segment {key, name?, condition} or a list of them
    pipelines/*.yaml    a pipeline {key, name, stages} or a list of them
    policies/*.yaml     the workspace's send policy (one per workspace)
    automations/*.yaml  an automation (one per file)
    campaigns/*.yaml    a campaign (one per file): applied as a draft or a change to a draft;
                        scheduling and sending it stay explicit (`conveyor campaign schedule`)

Pure: what a folder holds, in which order it is applied, what a plan says. Reading the files is
the entrypoint's; comparing with a workspace and applying is the service's.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from conveyor.domain.automations.nodes.sends import REGISTRY_CHANNELS
from conveyor.domain.errors import InvalidInput

# Applied in this order: what a later kind names exists by then.
KINDS = (
    "field",
    "list",
    "template",
    "scoring",
    "segment",
    "pipeline",
    "policy",
    "automation",
    "campaign",
)
FOLDERS = {
    "fields": "field",
    "lists": "list",
    "templates": "template",
    "scoring": "scoring",
    "segments": "segment",
    "pipelines": "pipeline",
    "policies": "policy",
    "automations": "automation",
    "campaigns": "campaign",
}
# One per workspace: their key is the kind itself.
SINGLE = frozenset({"scoring", "policy"})
# What `--prune` may remove: definitions, never what holds contact data (fields, lists).
PRUNABLE = frozenset({"template", "segment", "pipeline", "automation"})


@dataclass(frozen=True)
class Resource:
    kind: str
    key: str
    definition: Any
    source: str  # "automations/welcome.yaml" or "templates/scenarios.yaml#2"


@dataclass
class Change:
    """What a plan (or an apply) does to one resource."""

    kind: str
    key: str
    action: str  # create | update | unchanged | delete | error
    source: str | None = None
    diff: str = ""
    drifted: bool = False  # changed in the workspace since the last apply of a folder
    error: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "action": self.action,
            "source": self.source,
            "diff": self.diff,
            "drifted": self.drifted,
            "error": self.error,
            "field": self.field,
        }


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    applied: bool = False

    @property
    def errors(self) -> list[Change]:
        return [c for c in self.changes if c.action == "error"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("create", "update", "delete", "unchanged", "error"), 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "counts": self.counts(),
            "drifted": [f"{c.kind}/{c.key}" for c in self.changes if c.drifted],
            "changes": [c.as_dict() for c in self.changes],
        }


def resources_of(kind: str, data: Any, source: str) -> list[Resource]:
    """The resources one file holds (a mapping, or a list of mappings where a kind allows)."""
    if kind not in KINDS:
        raise InvalidInput(source, f"unknown kind '{kind}'")
    if kind in SINGLE:
        if not isinstance(data, dict):
            raise InvalidInput(source, f"a {kind} file holds one mapping")
        return [Resource(kind, kind, data, source)]
    items = data if isinstance(data, list) else [data]
    if kind in ("automation", "campaign") and len(items) != 1:
        raise InvalidInput(
            source, f"a{'n' if kind == 'automation' else ''} {kind} file holds one {kind}"
        )
    found = []
    for n, item in enumerate(items):
        where = source if len(items) == 1 else f"{source}#{n + 1}"
        if not isinstance(item, dict):
            raise InvalidInput(where, f"a {kind} is a mapping with a key")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"{where}: key", f"every {kind} needs a key")
        found.append(Resource(kind, key, item, where))
    return found


def check_unique(resources: list[Resource]) -> None:
    """Two files may not define the same resource."""
    seen: dict[tuple[str, str], str] = {}
    for r in resources:
        other = seen.setdefault((r.kind, r.key), r.source)
        if other != r.source:
            raise InvalidInput(r.source, f"{r.kind} '{r.key}' is defined in {other} too")
        if r.kind in SINGLE and len([x for x in resources if x.kind == r.kind]) > 1:
            raise InvalidInput(r.source, f"a workspace has one {r.kind}: one file only")


def ordered(resources: list[Resource]) -> list[Resource]:
    rank = {kind: n for n, kind in enumerate(KINDS)}
    return sorted(resources, key=lambda r: (rank[r.kind], r.source))


def digest(definition: Any) -> str:
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


def render(definition: Any) -> str:
    if definition is None:
        return ""
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=100)


def diff(kind: str, key: str, before: Any, after: Any) -> str:
    lines = difflib.unified_diff(
        render(before).splitlines(keepends=True),
        render(after).splitlines(keepends=True),
        fromfile=f"workspace: {kind}/{key}",
        tofile=f"files: {kind}/{key}",
    )
    return "".join(lines)


def template_refs(definition: Any) -> list[tuple[str, str, str]]:
    """The templates an automation's nodes name: (field path, template key, channel)."""
    refs = []
    for n, node in _nodes(definition):
        if not isinstance(node.get("template"), str):
            continue
        channel = REGISTRY_CHANNELS.get(str(node.get("type")))
        if channel is not None:
            refs.append((f"nodes.{n}.template", node["template"], channel))
    return refs


# Trigger presets that name a list, a segment or an automation (parse.py's simple presets).
_TRIGGER_REFS = {
    "list_subscribed": "list",
    "list_unsubscribed": "list",
    "segment_entered": "segment",
    "segment_exited": "segment",
    "goal_reached": "automation",
    "goal_skipped": "automation",
    "automation_completed": "automation",
}


def named_refs(definition: Any) -> list[tuple[str, str, str]]:
    """The lists, segments and automations an automation's triggers and nodes name by key and
    that its parser leaves to run time: (field path, kind, key). Conditions are checked by
    the parser already."""
    refs = []
    triggers = definition.get("triggers") if isinstance(definition, dict) else None
    for n, trigger in enumerate(triggers if isinstance(triggers, list) else []):
        if isinstance(trigger, dict) and len(trigger) == 1:
            ((preset, value),) = trigger.items()
            if preset in _TRIGGER_REFS and isinstance(value, str):
                refs.append((f"triggers.{n}.{preset}", _TRIGGER_REFS[preset], value))
    for n, node in _nodes(definition):
        if isinstance(node.get("list"), str):
            refs.append((f"nodes.{n}.list", "list", node["list"]))
        if node.get("type") in ("start_automation", "end_automation") and isinstance(
            node.get("automation"), str
        ):
            refs.append((f"nodes.{n}.automation", "automation", node["automation"]))
    return refs


def _nodes(definition: Any) -> list[tuple[int, dict[str, Any]]]:
    nodes = definition.get("nodes") if isinstance(definition, dict) else None
    return [(n, node) for n, node in enumerate(nodes or []) if isinstance(node, dict)]
