"""Tasks of the team (call, email, meeting, to-do): their changes as events in the contact's
log, and the sweep that records `task.overdue` once for each open task past due."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from conveyor.clock import Clock
from conveyor.domain import crm
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.crm.views import task_view
from conveyor.services.crm.writer import CrmWriter, moment, write
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import TaskRecord
from conveyor.store.store import Store, Tx

T = TypeVar("T")


class Tasks:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _write(self, workspace: Workspace, work: Callable[[Tx, CrmWriter], T]) -> T:
        return write(self.store, self.clock, workspace, work)

    def all(self, workspace: Workspace, **filters: Any) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            given = {k: v for k, v in filters.items() if v is not None}
            return [task_view(t) for t in tx.crm.tasks(workspace.id, **given)]

    def get(self, workspace: Workspace, task_id: int) -> dict[str, Any]:
        with self.store.read() as tx:
            return task_view(self._task(tx, workspace, task_id))

    def create(self, workspace: Workspace, values: dict[str, Any]) -> dict[str, Any]:
        return self._write(workspace, lambda tx, w: task_view(w.create_task(values)))

    def update(self, workspace: Workspace, task_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        def work(tx: Tx, w: CrmWriter) -> dict[str, Any]:
            task = self._task(tx, workspace, task_id)
            values: dict[str, Any] = {}
            if "title" in changes:
                title = changes["title"]
                if not isinstance(title, str) or not title.strip() or len(title) > 255:
                    raise InvalidInput("title", "1-255 characters")
                values["title"] = title.strip()
            if "type" in changes:
                if changes["type"] not in crm.TASK_TYPES:
                    raise InvalidInput("type", f"one of {', '.join(crm.TASK_TYPES)}")
                values["type"] = changes["type"]
            if "due_at" in changes:
                values["due_at"] = moment(changes["due_at"], "due_at")
                values["overdue_at"] = None
            if "assignee_id" in changes:
                who = changes["assignee_id"]
                values["assignee_id"] = w.member(who, "assignee_id").id if who is not None else None
            if values:
                tx.crm.change_task(task.id, values)
                task = self._task(tx, workspace, task_id)
            if changes.get("done") is True:
                task = w.complete_task(task)
            elif changes.get("done") is False and task.done_at is not None:
                tx.crm.change_task(task.id, {"done_at": None})
                task = self._task(tx, workspace, task_id)
            return task_view(task)

        return self._write(workspace, work)

    def remove(self, workspace: Workspace, task_id: int) -> None:
        def work(tx: Tx) -> None:
            tx.crm.remove_task(self._task(tx, workspace, task_id).id)

        self.store.transact(work)

    @staticmethod
    def _task(tx: Tx, workspace: Workspace, task_id: int) -> TaskRecord:
        found = tx.crm.task(workspace.id, task_id)
        if found is None:
            raise NotFound(f"no task {task_id} in this workspace")
        return found

    def sweep_overdue(self, limit: int = 500) -> int:
        """Record `task.overdue` once for each open task past due; how many."""
        now = self.clock.now()
        with self.store.peek() as tx:
            if not tx.crm.any_overdue(now):
                return 0

        def work(tx: Tx) -> int:
            claimed = tx.crm.claim_overdue(now, limit)
            workspaces = {r.id: workspace_from_row(r) for r in tx.workspaces.all()}
            by_workspace: dict[int, list[TaskRecord]] = {}
            for task in claimed:
                by_workspace.setdefault(task.workspace_id, []).append(task)
            for workspace_id, found in by_workspace.items():
                writer = ContactWriter(tx, workspaces[workspace_id], now, source="crm")
                w = CrmWriter(tx, writer)
                for task in found:
                    w.overdue(task)
                writer.flush()
            return len(claimed)

        total = 0
        while True:
            done = self.store.transact(work)
            total += done
            if done < limit:
                return total
