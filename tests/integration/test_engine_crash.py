"""Crash safety: worker processes SIGKILLed at random moments, again and again, then restarted;
every run still takes exactly the steps its path requires, and no internal effect (tag, field,
score, deal, stage move, step log row, outbox row) is applied twice or lost."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from sqlalchemy import func, select

from conveyor.store.schema import contact_tags, contacts, deals, events, outbox, runs, steps
from tests.support import cli

CONTACTS = int(os.environ.get("CONVEYOR_CRASH_CONTACTS", "1000"))
KILLS = int(os.environ.get("CONVEYOR_CRASH_KILLS", "12"))
AUTOMATION = {
    "key": "crash",
    "triggers": [{"event": "crash_go"}],
    "entry": {"repeat": "once"},
    "nodes": [
        {"id": "tag-a", "type": "add_tag", "tag": "a"},
        {"id": "count", "type": "increment_field", "field": "visits", "by": 1},
        {"id": "score", "type": "adjust_score", "by": 5},
        {"id": "deal", "type": "create_deal", "pipeline": "crash", "value": 10},
        {"id": "pause", "type": "wait", "for": "1 second"},
        {"id": "branch", "type": "if", "condition": {"tag": "a"}, "then": "tag-b", "else": "end"},
        {"id": "tag-b", "type": "add_tag", "tag": "b"},
        {"id": "count-again", "type": "increment_field", "field": "visits", "by": 1},
        {"id": "move", "type": "update_deal", "stage": "B", "value": 20},
        {"id": "mail", "type": "send_email", "template": "crash"},
        {"id": "pause-2", "type": "wait", "for": "1 second"},
        {"id": "tag-c", "type": "add_tag", "tag": "c"},
    ],
}
PATH = [
    ("tag-a", "done"),
    ("count", "done"),
    ("score", "done"),
    ("deal", "done"),
    ("pause", "waiting"),
    ("pause", "waited"),
    ("branch", "then"),
    ("tag-b", "done"),
    ("count-again", "done"),
    ("move", "done"),
    ("mail", "queued"),
    ("pause-2", "waiting"),
    ("pause-2", "waited"),
    ("tag-c", "done"),
]


def start_worker(env: dict[str, str]) -> cli.Started:
    # The engine alone: delivery would add its own steps (sent, failed) to the paths checked here;
    # its crash safety has its own test (test_a_worker_that_died_holding_messages_loses_nothing).
    # A process forked with the imports done (tests/support/cli.py): ~1 s less a start.
    return cli.start(["worker", "--role", "engine"], env=env)


def step_count(conveyor) -> int:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(select(func.count()).select_from(steps)).scalar_one()


def started(conveyor) -> int:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(select(func.count()).select_from(runs)).scalar_one()


def unfinished(conveyor) -> int:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(
            select(func.count()).select_from(runs).where(runs.c.status != "finished")
        ).scalar_one()


def test_killed_workers_lose_nothing_and_repeat_nothing(conveyor, database_url, tmp_path):
    workspace, _ = conveyor.workspaces.create("crashy")
    conveyor.catalog.declare_field(workspace, "visits", "number", None, None)
    conveyor.crm.apply_pipeline(workspace, {"key": "crash", "stages": ["A", "B"]})
    conveyor.automations.apply(workspace, AUTOMATION)
    conveyor.automations.set_status(workspace, "crash", "active")
    for start in range(0, CONTACTS, 500):
        calls = [
            {"type": "track", "userId": f"u{i}", "event": "crash_go", "messageId": f"go-{i}"}
            for i in range(start, min(start + 500, CONTACTS))
        ]
        assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_DATA_DIR": str(tmp_path)}
    # Small ticks, so that kills land between many commits and inside many transactions.
    env["CONVEYOR_ENGINE_BATCH"] = "50"
    rnd = random.Random(20261122)
    workers: list[cli.Started] = []
    mid_work = 0  # kills that struck while work was under way, not before or after it
    total = CONTACTS * len(PATH)
    try:
        for _ in range(KILLS):
            while len(workers) < 2:
                workers.append(start_worker(env))
            # Strike while the workers are busy: once they have made progress since the last kill.
            before, deadline = step_count(conveyor), time.monotonic() + 60
            while step_count(conveyor) == before and before < total and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0.0, 0.4))
            mid_work += 0 < step_count(conveyor) < total
            victim = workers.pop(rnd.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        while len(workers) < 2:
            workers.append(start_worker(env))
        deadline = time.monotonic() + 240
        while (
            started(conveyor) < CONTACTS or unfinished(conveyor)
        ) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()

    assert mid_work >= 3, f"only {mid_work} kills hit running work"
    with conveyor.store.db.read_connection() as conn:
        run_rows = list(
            conn.execute(select(runs.c.id, runs.c.contact_id, runs.c.status, runs.c.outcome))
        )
        assert len(run_rows) == CONTACTS, "every contact entered exactly once"
        assert Counter((r.status, r.outcome) for r in run_rows) == {
            ("finished", "completed"): CONTACTS
        }
        paths: dict[int, list[tuple[str, str]]] = {}
        for row in conn.execute(
            select(steps.c.run_id, steps.c.node, steps.c.outcome).order_by(steps.c.id)
        ):
            paths.setdefault(row.run_id, []).append((row.node, row.outcome))
        assert all(paths[r.id] == PATH for r in run_rows), "each run took exactly its path's steps"
        people = list(conn.execute(select(contacts.c.id, contacts.c.score, contacts.c.fields)))
        assert {(p.score, p.fields.get("visits")) for p in people} == {(5, 2)}
        tags = Counter(conn.execute(select(contact_tags.c.tag)).scalars())
        assert tags == {"a": CONTACTS, "b": CONTACTS, "c": CONTACTS}
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == CONTACTS
        system = list(
            conn.execute(
                select(events.c.name, events.c.properties).where(events.c.kind == "system")
            )
        )
        names = Counter(e.name for e in system)
        assert names["tag.added"] == 3 * CONTACTS
        visits = [
            e.properties["new"]
            for e in system
            if e.name == "field.changed" and e.properties["field"] == "visits"
        ]
        assert Counter(visits) == {1: CONTACTS, 2: CONTACTS}
        assert names["score.changed"] == CONTACTS
        assert names["automation.entered"] == CONTACTS
        assert names["automation.completed"] == CONTACTS
        # Deal effects: one deal per contact, moved once, its events once each.
        made = list(conn.execute(select(deals.c.contact_id, deals.c.stage, deals.c.value_minor)))
        assert len(made) == CONTACTS and {d.contact_id for d in made} == {p.id for p in people}
        assert {(d.stage, d.value_minor) for d in made} == {("B", 2000)}
        assert names["deal.created"] == CONTACTS
        assert names["deal.stage_changed"] == CONTACTS
