"""A workspace as code: plan and apply a folder's resources (see `domain/workspace_code.py`).

Planning *is* applying, in one transaction that is rolled back: every resource goes through the
same service call as `apply` (the same validation, the same reference checks against what the
folder and the workspace hold), so a plan cannot promise what an apply then refuses. An apply is
all-or-nothing — one error anywhere and nothing changes. A resource naming another that a later
file defines waits for the next pass; what still fails when no pass makes progress is an error.

Drift: after an apply, the digest of each resource as stored is recorded; a later plan that finds
a different one says the workspace changed outside the files (the panel, the API) since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspace_code import (
    PRUNABLE,
    Change,
    Plan,
    Resource,
    check_unique,
    diff,
    digest,
    named_refs,
    ordered,
    template_refs,
)
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import Automations
from conveyor.services.campaigns import Campaigns
from conveyor.services.catalog import CatalogService
from conveyor.services.crm import Crm
from conveyor.services.policies import SendPolicies
from conveyor.services.scoring import Scoring
from conveyor.services.segments import Segments
from conveyor.services.templates import Templates
from conveyor.services.workspaces import Workspaces
from conveyor.store.store import Store

Refused = (InvalidInput, Conflict, NotFound)


class _Failed(Exception):
    """Rolls the unit of work back when an apply found an error."""


class WorkspaceCode:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        workspaces: Workspaces,
        catalog: CatalogService,
        templates: Templates,
        segments: Segments,
        automations: Automations,
        policies: SendPolicies,
        crm: Crm,
        scoring: Scoring,
        campaigns: Campaigns,
    ) -> None:
        self.store = store
        self.clock = clock
        self.workspaces = workspaces
        self.catalog = catalog
        self.templates = templates
        self.segments = segments
        self.automations = automations
        self.policies = policies
        self.crm = crm
        self.scoring = scoring
        self.campaigns = campaigns

    def plan(self, workspace: Workspace, resources: list[Resource], *, prune: bool = False) -> Plan:
        """What `apply` would do, resource by resource, with diffs; changes nothing."""
        return self._run(workspace, resources, prune=prune, commit=False)

    def apply(
        self, workspace: Workspace, resources: list[Resource], *, prune: bool = False
    ) -> Plan:
        """Put the folder in place, all of it or (on any error) none of it."""
        return self._run(workspace, resources, prune=prune, commit=True)

    # --- the run ------------------------------------------------------------------------------

    def _run(
        self, workspace: Workspace, resources: list[Resource], *, prune: bool, commit: bool
    ) -> Plan:
        check_unique(resources)
        plan = Plan()
        rescore = False
        try:
            with self.store.unit(commit=commit) as tx:
                recorded = tx.workspaces.applied(workspace.id)
                failed: dict[tuple[str, str], tuple[Resource, Exception]] = {}
                pending = ordered(resources)
                while pending:
                    retry: list[Resource] = []
                    for resource in pending:
                        before = self._current(workspace, resource.kind, resource.key)
                        try:
                            with tx.savepoint():
                                self._put(workspace, resource, before)
                        except Refused as exc:
                            failed[(resource.kind, resource.key)] = (resource, exc)
                            retry.append(resource)
                            continue
                        failed.pop((resource.kind, resource.key), None)
                        after = self._current(workspace, resource.kind, resource.key)
                        plan.changes.append(self._change(resource, before, after, recorded))
                        rescore |= resource.kind == "scoring" and before != after
                    if len(retry) == len(pending):
                        break  # no progress: what is left fails for a reason of its own
                    pending = retry
                for resource, exc in failed.values():
                    plan.changes.append(_error(resource, exc))
                self._check_references(workspace, resources, plan)
                if prune:
                    self._prune(workspace, resources, recorded, plan)
                if plan.errors:
                    raise _Failed
                if commit:
                    tx.workspaces.record_applied(
                        workspace.id, self._digests(workspace, resources), self.clock.now()
                    )
        except _Failed:
            return plan
        plan.applied = commit
        if commit and rescore:
            # The model is stored with the rest; every contact's scores follow it now, a page
            # of contacts per transaction (see Scoring.recompute).
            self.scoring.recompute(workspace)
        return plan

    def _change(
        self, resource: Resource, before: Any, after: Any, recorded: dict[tuple[str, str], str]
    ) -> Change:
        action = "create" if before is None else "unchanged" if before == after else "update"
        known = recorded.get((resource.kind, resource.key))
        return Change(
            resource.kind,
            resource.key,
            action,
            resource.source,
            diff=diff(resource.kind, resource.key, before, after) if action != "unchanged" else "",
            drifted=known is not None and before is not None and digest(before) != known,
        )

    def _check_references(
        self, workspace: Workspace, resources: list[Resource], plan: Plan
    ) -> None:
        """What an automation names and its parser leaves to run time exists once everything
        is in place: every template a send names, for the node's channel; every list, segment
        and automation its triggers and nodes name."""
        for resource in resources:
            if resource.kind != "automation":
                continue
            for path, detail in self.missing(workspace, resource.definition):
                plan.changes.append(
                    Change(
                        "automation",
                        resource.key,
                        "error",
                        resource.source,
                        error=detail,
                        field=path,
                    )
                )

    def missing(
        self, workspace: Workspace, automation: Any, *, in_folder: bool = True
    ) -> list[tuple[str, str]]:
        """What an automation definition names that the workspace lacks: (field, problem).
        `in_folder`: the definition is part of a folder being applied (the problem says the
        folder may define it too)."""
        where = " in the folder or the workspace" if in_folder else ""
        present = {t.key: t.channel for t in self.templates.all(workspace)}
        existing = self._existing(workspace)
        existing["list"] = {info.key for info, _ in self.catalog.lists(workspace)}
        problems: list[tuple[str, str]] = []
        for path, key, channel in template_refs(automation):
            found = present.get(key)
            if found is None:
                problems.append((path, f"no {channel} template '{key}'{where}"))
            elif found != channel:
                problems.append(
                    (path, f"template '{key}' is for {found}, this node sends {channel}")
                )
        for path, kind, key in named_refs(automation):
            if key not in existing[kind]:
                problems.append((path, f"no {kind} '{key}'{where}"))
        return problems

    def _prune(
        self,
        workspace: Workspace,
        resources: list[Resource],
        recorded: dict[tuple[str, str], str],
        plan: Plan,
    ) -> None:
        """Remove what the folder no longer holds: automations are archived (their history
        stays), templates, segments and pipelines deleted. Fields and lists hold contact data
        and are never pruned."""
        wanted = {(r.kind, r.key) for r in resources}
        existing = self._existing(workspace)
        for kind in ("automation", "segment", "pipeline", "template"):  # users before used
            for key in sorted(existing[kind]):
                if (kind, key) in wanted:
                    continue
                before = self._current(workspace, kind, key)
                change = Change(kind, key, "delete", None, diff=diff(kind, key, before, None))
                change.drifted = (kind, key) in recorded and digest(before) != recorded[(kind, key)]
                try:
                    self._remove(workspace, kind, key)
                except Refused as exc:
                    change.action, change.error = "error", exc.detail
                    change.field = getattr(exc, "field", None)
                plan.changes.append(change)

    def _digests(
        self, workspace: Workspace, resources: list[Resource]
    ) -> list[tuple[str, str, str, str | None]]:
        return [
            (r.kind, r.key, digest(self._current(workspace, r.kind, r.key)), r.source)
            for r in resources
        ]

    # --- each kind: what is stored now, how to put a definition, how to remove one ------------

    def _current(self, workspace: Workspace, kind: str, key: str) -> Any:
        return _CURRENT[kind](self, workspace, key)

    def _put(self, workspace: Workspace, resource: Resource, before: Any) -> None:
        definition = resource.definition
        kind = resource.kind
        if kind == "field":
            _shape(definition, resource, type=str, label=(str, None), choices=(list, None))
            if before is None:
                self.catalog.declare_field(
                    workspace,
                    resource.key,
                    str(definition.get("type")),
                    definition.get("label"),
                    definition.get("choices"),
                )
            elif definition.get("type", before["type"]) != before["type"]:
                raise InvalidInput("type", f"field '{resource.key}' is a {before['type']} field")
            else:
                self.catalog.update_field(
                    workspace, resource.key, definition.get("label"), definition.get("choices")
                )
        elif kind == "list":
            _shape(definition, resource, name=(str, None), double_opt_in=(bool, None))
            if before is None:
                self.catalog.create_list(
                    workspace,
                    resource.key,
                    definition.get("name"),
                    bool(definition.get("double_opt_in", False)),
                )
            else:
                self.catalog.update_list(
                    workspace, resource.key, definition.get("name"), definition.get("double_opt_in")
                )
        elif kind == "template":
            _shape(definition, resource, channel=str, content=dict, name=(str, None))
            self.templates.save(
                workspace,
                resource.key,
                str(definition.get("channel")),
                definition.get("content"),
                definition.get("name"),
            )
        elif kind == "scoring":
            if before != definition:
                self.scoring.store_model(workspace, definition)
        elif kind == "segment":
            _shape(definition, resource, name=(str, None), condition=object)
            self.segments.save(
                workspace,
                resource.key,
                definition.get("name"),
                definition.get("condition"),
                create=before is None,
            )
        elif kind == "pipeline":
            self.crm.apply_pipeline(workspace, definition)
        elif kind == "policy":
            self.policies.set_workspace_policy(self._fresh(workspace), definition)
        elif kind == "automation":
            body = {k: v for k, v in definition.items() if k != "status"}
            info, _ = self.automations.apply(workspace, body)
            status = definition.get("status")
            if status is not None and status != info.status:
                self.automations.set_status(workspace, resource.key, str(status))
        elif kind == "campaign":
            self.campaigns.apply(workspace, definition)

    def _remove(self, workspace: Workspace, kind: str, key: str) -> None:
        if kind == "automation":
            self.automations.set_status(workspace, key, "archived")
        elif kind == "segment":
            self.segments.delete(workspace, key)
        elif kind == "pipeline":
            self.crm.remove_pipeline(workspace, key)
        elif kind == "template":
            self.templates.delete(workspace, key)

    def _existing(self, workspace: Workspace) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {kind: set() for kind in PRUNABLE}
        found["automation"] = {
            a.key for a in self.automations.all(workspace) if a.status != "archived"
        }
        found["segment"] = {s.key for s in self.segments.all(workspace)}
        found["pipeline"] = {p["key"] for p in self.crm.pipelines(workspace)}
        found["template"] = {t.key for t in self.templates.all(workspace)}
        return found

    def _fresh(self, workspace: Workspace) -> Workspace:
        return self.workspaces.get(workspace.name)


_TYPE_NAMES = {str: "text", dict: "a mapping", list: "a list", bool: "true or false"}


def _shape(definition: dict[str, Any], resource: Resource, **fields: Any) -> None:
    """The keys a definition may have and the type of each (a tuple with None: optional)."""
    allowed = {"key", *fields}
    extra = sorted(set(definition) - allowed)
    if extra:
        raise InvalidInput(
            extra[0], f"unknown key; a {resource.kind} has {', '.join(sorted(allowed))}"
        )
    for name, kind in fields.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = definition.get(name)
        if value is None and None in kinds:
            continue
        wanted = [k for k in kinds if k is not None]
        if object in wanted:
            if value is None:
                raise InvalidInput(name, "is required")
            continue
        if not isinstance(value, tuple(wanted)) or (bool not in wanted and isinstance(value, bool)):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in wanted)
            raise InvalidInput(name, "is required" if value is None else f"must be {names}")


def _error(resource: Resource, exc: Exception) -> Change:
    field, detail = getattr(exc, "field", None), getattr(exc, "detail", str(exc))
    errors = getattr(exc, "errors", None)
    if errors:  # InvalidInput: its first bad field and what is wrong with it, apart
        field, detail = errors[0].field, errors[0].detail
    return Change(
        resource.kind, resource.key, "error", resource.source, error=detail, field=field or None
    )


def _or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except NotFound:
        return None


def _field(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    found = next((f for f in code.catalog.fields(workspace) if f.key == key), None)
    return found.as_dict() if found is not None else None


def _list(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    found = next((info for info, _ in code.catalog.lists(workspace) if info.key == key), None)
    if found is None:
        return None
    return {"key": found.key, "name": found.name, "double_opt_in": found.double_opt_in}


def _template(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    info = _or_none(lambda: code.templates.get(workspace, key))
    if info is None:
        return None
    return {"key": info.key, "channel": info.channel, "name": info.name, "content": info.content}


def _scoring(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    model = _or_none(lambda: code.scoring.model(workspace))
    return model["definition"] if model is not None else None


def _segment(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    segment = _or_none(lambda: code.segments.get(workspace, key))
    if segment is None:
        return None
    return {"key": segment.key, "name": segment.name, "condition": segment.definition}


def _pipeline(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    view = _or_none(lambda: code.crm.pipeline(workspace, key))
    if view is None:
        return None
    return {"key": view["key"], "name": view["name"], "stages": view["stages"]}


def _policy(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    return code._fresh(workspace).settings.get("send_policy")


def _automation(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    info = _or_none(lambda: code.automations.get(workspace, key))
    if info is None:
        return None
    return {**info.definition, "status": info.status}


def _campaign(code: WorkspaceCode, workspace: Workspace, key: str) -> Any:
    info = _or_none(lambda: code.campaigns.get(workspace, key))
    if info is None:
        return None
    kept = (
        "name",
        "channel",
        "template",
        "audience",
        "schedule",
        "throttle_per_hour",
        "on_cap",
        "ab_test",
        "status",
    )
    return {"key": info.key, **{name: getattr(info, name) for name in kept}}


_CURRENT: dict[str, Callable[[WorkspaceCode, Workspace, str], Any]] = {
    "field": _field,
    "list": _list,
    "template": _template,
    "scoring": _scoring,
    "segment": _segment,
    "pipeline": _pipeline,
    "policy": _policy,
    "automation": _automation,
    "campaign": _campaign,
}
