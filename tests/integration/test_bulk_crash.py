"""Crash safety of bulk jobs: `conveyor worker` processes enrolling a 10,000-member segment into
an automation are SIGKILLed again and again mid-job, then restarted; every member is enrolled
exactly once (the automation enrolls every time, so a chunk done twice would show as a second
run), and the job's progress ends at its total."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from sqlalchemy import func, select

from conveyor.store.schema import bulk_jobs, events, runs, segment_members
from tests.support import cli

MEMBERS = int(os.environ.get("CONVEYOR_BULK_CRASH_MEMBERS", "10000"))
KILLS = int(os.environ.get("CONVEYOR_BULK_CRASH_KILLS", "5"))
AUTOMATION = {
    "key": "winback",
    "triggers": [{"event": "never_happens"}],
    "entry": {"repeat": "every_time"},  # a contact enrolled twice would have two runs
    "nodes": [{"id": "mark", "type": "add_tag", "tag": "won"}],
}


def job_done(conveyor) -> int:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(select(bulk_jobs.c.done)).scalar_one()


def job_status(conveyor) -> str:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(select(bulk_jobs.c.status)).scalar_one()


def test_killed_workers_enroll_each_member_exactly_once(conveyor, database_url, tmp_path):
    workspace, _ = conveyor.workspaces.create("bulky")
    lines = ["email,tags"] + [f"m{i}@example.com,crowd" for i in range(MEMBERS)]
    lines += [f"x{i}@example.com,other" for i in range(200)]  # not in the segment
    conveyor.imports.run(workspace, iter(line + "\n" for line in lines))
    conveyor.segments.save(workspace, "crowd", None, {"tag": "crowd"}, create=True)
    conveyor.automations.apply(workspace, AUTOMATION)
    conveyor.automations.set_status(workspace, "winback", "active")
    conveyor.engine.run_until_idle()
    with conveyor.store.db.read_connection() as conn:
        assert conn.execute(select(func.count()).select_from(segment_members)).scalar_one() == (
            MEMBERS
        )
    audience = {"segments": ["crowd"]}
    params = {"automation": "winback"}
    assert conveyor.bulk_jobs.preview(workspace, "enroll", audience, params) == MEMBERS
    job = conveyor.bulk_jobs.create(workspace, "enroll", audience, params, confirm=True)
    assert job.total == MEMBERS

    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_DATA_DIR": str(tmp_path)}
    rnd = random.Random(20261201)
    workers: list[cli.Started] = []
    mid_job = 0
    try:
        for _ in range(KILLS):
            while len(workers) < 2:
                workers.append(
                    cli.start(["worker", "--role", "engine"], env=env)
                )
            before, deadline = job_done(conveyor), time.monotonic() + 60
            while job_done(conveyor) == before and before < MEMBERS and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0.0, 0.5))
            mid_job += 0 < job_done(conveyor) < MEMBERS
            victim = workers.pop(rnd.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        while len(workers) < 2:
            workers.append(
                cli.start(["worker", "--role", "engine"], env=env)
            )
        deadline = time.monotonic() + 300
        while job_status(conveyor) != "done" and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()

    assert mid_job >= 3, f"only {mid_job} kills struck while the job was under way"
    info = conveyor.bulk_jobs.get(workspace, job.id)
    assert (info.status, info.done, info.total) == ("done", MEMBERS, MEMBERS)
    assert info.outcomes == {"entered": MEMBERS}
    with conveyor.store.db.read_connection() as conn:
        per_contact = Counter(conn.execute(select(runs.c.contact_id)).scalars())
        assert len(per_contact) == MEMBERS and set(per_contact.values()) == {1}
        entered = conn.execute(
            select(func.count()).where(events.c.name == "automation.entered")
        ).scalar_one()
        assert entered == MEMBERS
