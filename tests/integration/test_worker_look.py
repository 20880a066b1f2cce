"""The worker's one look at its queues (`WorkQueries.pending`, one statement) agrees with each
queue's own look, on both databases, as work appears and is done; and engine rounds driven by
it finish the work — the trigger, the wait that comes due a day later, a bulk job, the funnel."""

from __future__ import annotations

from datetime import timedelta

from conveyor.store.work import Pending
from conveyor.worker.loop import engine_round
from tests.support.flows import activate

LATER = {
    "key": "later",
    "triggers": [{"event": "signed_up"}],
    "nodes": [
        {"id": "pause", "type": "wait", "for": "1 day"},
        {"id": "tag", "type": "add_tag", "tag": "followed-up"},
    ],
}


def look(conveyor) -> Pending:
    """The one look, checked against the six looks it replaces."""
    now = conveyor.clock.now()
    names = conveyor.engine.log.names
    with conveyor.store.peek() as tx:
        found = tx.work.pending(now, names)
        alone = Pending(
            log=tx.events.behind(names),
            steps=tx.reports.steps_behind(),
            scores=tx.scoring.any_due(now),
            runs=tx.automations.any_due(now),
            campaigns=bool(tx.campaigns.due(now) or tx.campaigns.sending()),
            bulk=tx.bulk_jobs.any_waiting(),
        )
    assert found == alone
    return found


def rounds(conveyor) -> int:
    """Engine rounds, as the worker's loop runs them, until one finds nothing to do."""
    for n in range(1, 50):
        if not engine_round(conveyor, sweep_dates=False, sweep_segments=False):
            return n
    raise AssertionError("the engine rounds did not settle")


def tags(client, tenant, user):
    r = client.get("/contacts", headers=tenant.admin, params={"q": user})
    (contact,) = r.json()["items"]
    return contact["tags"]


def test_one_look_tells_each_queue_and_rounds_driven_by_it_finish_the_work(
    client, tenant, conveyor
):
    activate(client, tenant, LATER)
    rounds(conveyor)
    assert look(conveyor) == Pending(False, False, False, False, False, False)
    assert not look(conveyor)

    r = client.post("/v1/track", headers=tenant.write,
                    json={"userId": "ada", "event": "signed_up"})
    assert r.status_code == 200, r.text
    found = look(conveyor)
    assert found.log and not found.runs and bool(found)

    assert engine_round(conveyor, sweep_dates=False, sweep_segments=False)
    assert look(conveyor).steps  # enrolled: its steps wait for the funnel
    rounds(conveyor)  # the run waits a day; its steps folded into the funnel
    assert not look(conveyor)
    assert tags(client, tenant, "ada") == []

    conveyor.clock.advance(timedelta(days=1, seconds=1))
    found = look(conveyor)
    assert found.runs and not found.log
    rounds(conveyor)
    assert not look(conveyor)
    assert tags(client, tenant, "ada") == ["followed-up"]

    body = {"action": "tag", "audience": {"tags": ["followed-up"]}, "params": {"tag": "vip"},
            "confirm": True}
    r = client.post("/bulk-jobs", headers=tenant.admin, json=body)
    assert r.status_code == 201, r.text
    assert look(conveyor).bulk
    rounds(conveyor)
    assert not look(conveyor)
    assert sorted(tags(client, tenant, "ada")) == ["followed-up", "vip"]
    with conveyor.store.peek() as tx:
        assert not tx.reports.steps_behind()  # the funnel holds every step
