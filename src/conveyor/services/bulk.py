"""Bulk actions on an audience (lists/segments/tags minus exclusions): enroll into an
automation, tag, untag, subscribe, unsubscribe, delete — background jobs the worker runs in
chunks of contacts by id. Each chunk's effects, the job's cursor (the last contact id done) and
its progress commit in one transaction, so a killed worker resumes after the last committed
chunk and no contact is done twice. A job needs an explicit confirmation of the count previewed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import SubscriptionStatus, SystemEvent
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.audiences import resolve
from conveyor.services.conditions import ConditionContext
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.engine import Engine
from conveyor.services.engine.tick import Tick
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import BulkJobRecord
from conveyor.store.store import Store, Tx

ACTIONS = {  # action → the parameter it needs
    "enroll": "automation",
    "tag": "tag",
    "untag": "tag",
    "subscribe": "list",
    "unsubscribe": "list",
    "delete": None,
}
CHUNK = 500


@dataclass(frozen=True)
class BulkJobInfo:
    id: int
    action: str
    audience: dict[str, Any]
    params: dict[str, Any]
    status: str
    total: int
    done: int
    outcomes: dict[str, int]
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: BulkJobRecord) -> BulkJobInfo:
        return cls(
            row.id,
            row.action,
            row.audience,
            row.params,
            row.status,
            row.total,
            row.done,
            dict(row.outcomes),
            row.error,
            row.created_at,
            row.finished_at,
        )


def _params(action: Any, params: Any) -> dict[str, Any]:
    if action not in ACTIONS:
        raise InvalidInput("action", f"one of {', '.join(ACTIONS)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput("params", "must be an object")
    wanted = ACTIONS[action]
    if wanted is None:
        return {}
    value = params.get(wanted)
    if not isinstance(value, str) or not value or len(value) > 100:
        raise InvalidInput(f"params.{wanted}", f"'{action}' needs the {wanted}'s name")
    return {wanted: value}


class BulkJobs:
    def __init__(self, store: Store, clock: Clock, engine: Engine, chunk: int = CHUNK) -> None:
        self.store = store
        self.clock = clock
        self.engine = engine
        self.chunk = chunk

    def _check(self, tx: Tx, workspace: Workspace, action: str, params: dict[str, Any]) -> None:
        if action == "enroll":
            row = tx.automations.by_key(workspace.id, params["automation"])
            if row is None:
                raise InvalidInput(
                    "params.automation", f"no automation '{params['automation']}' in this workspace"
                )
            if row.status != "active":
                raise Conflict(f"automation '{row.key}' is {row.status}; activate it first")
        known = {r.key for r in tx.catalog.lists(workspace.id)} if "list" in params else set()
        if action in ("subscribe", "unsubscribe") and params["list"] not in known:
            raise InvalidInput("params.list", f"no list '{params['list']}' in this workspace")

    def preview(self, workspace: Workspace, action: Any, audience: Any, params: Any) -> int:
        """How many contacts the job would touch now."""
        checked = _params(action, params)
        with self.store.read() as tx:
            self._check(tx, workspace, str(action), checked)
            return tx.bulk_jobs.count(resolve(tx, workspace, audience, None, self.clock.now()))

    def create(
        self, workspace: Workspace, action: Any, audience: Any, params: Any, *, confirm: Any
    ) -> BulkJobInfo:
        checked = _params(action, params)
        now = self.clock.now()

        def work(tx: Tx) -> BulkJobInfo:
            self._check(tx, workspace, str(action), checked)
            total = tx.bulk_jobs.count(resolve(tx, workspace, audience, None, self.clock.now()))
            if confirm is not True:
                raise InvalidInput(
                    "confirm",
                    f"this would {action} {total} contacts: send confirm: true to go ahead",
                )
            job_id = tx.bulk_jobs.add(
                {
                    "workspace_id": workspace.id,
                    "action": action,
                    "audience": audience,
                    "params": checked,
                    "status": "queued",
                    "total": total,
                    "done": 0,
                    "cursor": 0,
                    "outcomes": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
            found = tx.bulk_jobs.get(workspace.id, job_id)
            assert found is not None
            return BulkJobInfo.of(found)

        return self.store.transact(work)

    def get(self, workspace: Workspace, job_id: int) -> BulkJobInfo:
        with self.store.read() as tx:
            row = tx.bulk_jobs.get(workspace.id, job_id)
        if row is None:
            raise NotFound(f"no bulk job {job_id} in this workspace")
        return BulkJobInfo.of(row)

    def all(self, workspace: Workspace) -> list[BulkJobInfo]:
        with self.store.read() as tx:
            return [BulkJobInfo.of(r) for r in tx.bulk_jobs.page(workspace.id)]

    def cancel(self, workspace: Workspace, job_id: int) -> BulkJobInfo:
        def work(tx: Tx) -> None:
            if tx.bulk_jobs.get(workspace.id, job_id) is None:
                raise NotFound(f"no bulk job {job_id} in this workspace")
            if not tx.bulk_jobs.cancel(workspace.id, job_id, self.clock.now()):
                raise Conflict(f"bulk job {job_id} has finished; nothing to cancel")

        self.store.transact(work)
        return self.get(workspace, job_id)

    # --- the worker's part -----------------------------------------------------------------

    def run(self, max_chunks: int = 4, *, looked: bool = False) -> int:
        """Work through up to `max_chunks` chunks; how many contacts were done (0: idle).
        `looked`: the caller has just seen a job waiting."""
        if not looked:
            with self.store.peek() as tx:
                if not tx.bulk_jobs.any_waiting():
                    return 0
        total = 0
        for _ in range(max_chunks):
            done = self.store.transact(self._chunk)
            if done is None:
                break
            total += done
        return total

    def run_until_idle(self) -> int:
        total = 0
        while (done := self.store.transact(self._chunk)) is not None:
            total += done
        return total

    def _chunk(self, tx: Tx) -> int | None:
        """One chunk of the oldest job with work left, with its cursor; None: no job left."""
        job = tx.bulk_jobs.claim_next()
        if job is None:
            return None
        now = self.clock.now()
        found = tx.workspaces.get(job.workspace_id)
        assert found is not None
        workspace = workspace_from_row(found)
        outcomes = Counter(job.outcomes)
        try:
            audience = resolve(tx, workspace, job.audience, None, now)
            self._check(tx, workspace, job.action, job.params)
        except (InvalidInput, Conflict) as exc:  # deleted or paused since it was confirmed
            tx.bulk_jobs.fail(job.id, exc.detail, now)
            return 0
        ids = tx.bulk_jobs.next_chunk(audience, job.cursor, self.chunk)
        if ids:
            outcomes.update(self._apply(tx, workspace, job, ids, now))
        advanced = tx.bulk_jobs.advance(
            job.id,
            cursor=ids[-1] if ids else job.cursor,
            done=job.done + len(ids),
            outcomes=dict(outcomes),
            status="running" if ids else "done",
            now=now,
            expected_cursor=job.cursor,
        )
        if not advanced:  # another worker moved it first (SQLite has no row lock): redo
            raise Conflict("bulk job moved by a peer")
        return len(ids)

    def _apply(
        self, tx: Tx, workspace: Workspace, job: BulkJobRecord, ids: list[int], now: datetime
    ) -> Counter[str]:
        got: Counter[str] = Counter()
        if job.action == "enroll":
            tick = Tick(self.engine, tx, ConditionContext(tx, workspace), now)
            row = tick.by_key[job.params["automation"]]
            tick.load(set(ids))
            for contact_id in ids:
                decision = tick.enroll(row.id, contact_id, {}, source="bulk")
                got[decision.summary] += 1
            tick.settle()
            tick.flush()
            return got
        writer = ContactWriter(tx, workspace, now, source="bulk")
        if job.action == "delete":
            for contact_id in ids:
                if tx.contacts.delete(workspace.id, contact_id):
                    writer.record(None, SystemEvent.CONTACT_DELETED, {"contact_id": contact_id})
                    got["deleted"] += 1
            writer.flush()
            return got
        writer.preload(ids=set(ids), with_relations=True)
        for contact_id in ids:
            state = writer.by_id(contact_id)
            if state is None:
                got["gone"] += 1
                continue
            if job.action == "tag":
                changed: Any = writer.add_tags(state, [job.params["tag"]])
            elif job.action == "untag":
                changed = writer.remove_tags(state, [job.params["tag"]])
            else:
                info = writer.catalog.lists[job.params["list"]]
                status = (
                    SubscriptionStatus.SUBSCRIBED
                    if job.action == "subscribe"
                    else SubscriptionStatus.UNSUBSCRIBED
                )
                changed = writer.set_subscription(state, info, status)
            got["changed" if changed else "unchanged"] += 1
        writer.flush()
        return got
