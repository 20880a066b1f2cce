"""The builder's side of automations: drafts kept apart from live versions, the YAML view read
and written, checks with the same messages as `conveyor automation validate`, and publishing.

A draft is the YAML text as the marketer left it — valid or not — so nothing half-made reaches
the live automation: only publishing (which validates in full) adds a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from conveyor.clock import Clock
from conveyor.domain.errors import ConveyorError, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import AutomationInfo, Automations
from conveyor.services.workspace_code import WorkspaceCode
from conveyor.store.records import AutomationDraftRecord
from conveyor.store.store import Store, Tx

MAX_SOURCE = 256 * 1024  # a draft's YAML text, in characters


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: where (`nodes.3.template`) and what, as the CLI says."""

    path: str
    message: str

    @property
    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class YamlProblem:
    line: int  # 1-based
    column: int
    message: str


def read_yaml(source: str) -> tuple[Any, YamlProblem | None]:
    """The definition a YAML text holds, or where it stops being YAML."""
    try:
        return yaml.safe_load(source), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, YamlProblem(line, column, str(exc.problem or exc.context or "not YAML"))
    except yaml.YAMLError as exc:
        return None, YamlProblem(1, 1, str(exc))


def to_yaml(definition: Any) -> str:
    """The YAML view of a definition: keys in the order the builder wrote them."""
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True)


class AutomationDrafts:
    def __init__(
        self, store: Store, clock: Clock, automations: Automations, code: WorkspaceCode
    ) -> None:
        self.store = store
        self.clock = clock
        self.automations = automations
        self.code = code

    # --- checks ------------------------------------------------------------------------------

    def check(self, workspace: Workspace, raw: Any) -> list[Problem]:
        """What `conveyor automation validate` would refuse: the first invalid field, or every
        template, list, segment or automation it names that the workspace lacks."""
        try:
            self.automations.validate(workspace, raw)
        except InvalidInput as exc:
            return [Problem(exc.field, exc.reason)]
        except ConveyorError as exc:
            return [Problem("", exc.detail)]
        return [
            Problem(path, problem)
            for path, problem in self.code.missing(workspace, raw, in_folder=False)
        ]

    def waiting(self, workspace: Workspace, key: str) -> int:
        """Contacts inside the automation now (0 when it does not exist yet)."""
        try:
            stats = self.automations.stats(workspace, key)
        except NotFound:
            return 0
        return sum(n["waiting"] for node, n in stats["nodes"].items() if node != "-")

    def publish(
        self, workspace: Workspace, raw: Any, draft_id: int | None = None
    ) -> tuple[AutomationInfo, str]:
        """A new version (or the automation created), checked in full; its draft is then gone."""
        problems = self.check(workspace, raw)
        if problems:
            raise InvalidInput(problems[0].path, problems[0].message)
        info, what = self.automations.apply(workspace, raw)
        if draft_id is not None:
            self.store.transact(lambda tx: tx.automation_drafts.remove(workspace.id, draft_id))
        return info, what

    # --- drafts ------------------------------------------------------------------------------

    def save(
        self, workspace: Workspace, source: str, draft_id: int | None = None
    ) -> AutomationDraftRecord:
        """Keep the text as it is (it may not be valid yet); the live version is not touched."""
        if len(source) > MAX_SOURCE:
            raise InvalidInput("source", f"a draft is at most {MAX_SOURCE:,} characters")
        raw, _ = read_yaml(source)
        key = raw.get("key") if isinstance(raw, dict) else None
        key = key if isinstance(key, str) and key else None
        name = raw.get("name") if isinstance(raw, dict) else None
        name = str(name or key or "Untitled automation")[:255]
        now = self.clock.now()

        def work(tx: Tx) -> AutomationDraftRecord:
            if draft_id is None:
                made = tx.automation_drafts.add(workspace.id, key, name, source, now)
            elif tx.automation_drafts.change(workspace.id, draft_id, key, name, source, now):
                made = draft_id
            else:
                raise NotFound(f"no draft {draft_id} in this workspace")
            found = tx.automation_drafts.get(workspace.id, made)
            assert found is not None
            return found

        return self.store.transact(work)

    def get(self, workspace: Workspace, draft_id: int) -> AutomationDraftRecord:
        with self.store.read() as tx:
            found = tx.automation_drafts.get(workspace.id, draft_id)
        if found is None:
            raise NotFound(f"no draft {draft_id} in this workspace")
        return found

    def all(self, workspace: Workspace, key: str | None = None) -> list[AutomationDraftRecord]:
        with self.store.read() as tx:
            return tx.automation_drafts.all(workspace.id, key)

    def discard(self, workspace: Workspace, draft_id: int) -> None:
        if not self.store.transact(lambda tx: tx.automation_drafts.remove(workspace.id, draft_id)):
            raise NotFound(f"no draft {draft_id} in this workspace")
