"""Editing a live automation on both databases: contacts waiting in a node a new version removes
stay on their version by default, or move where the marketer says; the engine honours it, and a
worker advancing the same runs at the same moment loses or doubles none of them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from conveyor.domain.automations.moves import Move
from tests.support.flows import activate

V1 = {
    "key": "welcome",
    "triggers": [{"manual": True}],
    "entry": {"repeat": "every_time"},
    "nodes": [
        {"id": "hello", "type": "add_tag", "tag": "v1-hello"},
        {"id": "week", "type": "wait", "for": "7 days"},
        {"id": "second", "type": "add_tag", "tag": "v1-second"},
    ],
}
V2 = {
    "key": "welcome",
    "triggers": [{"manual": True}],
    "entry": {"repeat": "every_time"},
    "nodes": [
        {"id": "hello", "type": "add_tag", "tag": "v2-hello"},
        {"id": "day", "type": "wait", "for": "1 day"},
        {"id": "fresh", "type": "add_tag", "tag": "v2-fresh"},
    ],
}


def enroll(client, tenant, conveyor, n, prefix="c"):
    ids = []
    for i in range(n):
        r = client.post("/contacts", headers=tenant.admin, json={"email": f"{prefix}{i}@ex.com"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        r = client.post(
            "/automations/welcome/enroll", headers=tenant.admin, json={"contact_id": ids[-1]}
        )
        assert r.status_code == 200, r.text
    conveyor.engine.run_until_idle()
    return ids


def tags(client, tenant, cid):
    return set(client.get(f"/contacts/{cid}", headers=tenant.admin).json()["tags"])


def positions(client, tenant):
    r = client.get("/automations/welcome/positions", headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()


def where(client, tenant):
    return {
        (p["version"], p["node"]): p["contacts"] for p in positions(client, tenant)["positions"]
    }


def publish(client, tenant, definition, moves=(), base=1):
    return client.post(
        "/automations/welcome/publish",
        headers=tenant.admin,
        json={"definition": definition, "moves": list(moves), "base_version": base},
    )


def test_positions_show_where_contacts_wait(client, tenant, conveyor):
    activate(client, tenant, V1)
    enroll(client, tenant, conveyor, 3)
    found = positions(client, tenant)
    assert found["version"] == 1 and found["inside"] == 3
    assert found["positions"] == [
        {"version": 1, "node": "week", "type": "wait", "contacts": 3, "change": "same"}
    ]


def test_moved_contacts_continue_at_the_chosen_node_of_the_new_version(
    client, tenant, conveyor, clock
):
    activate(client, tenant, V1)
    ids = enroll(client, tenant, conveyor, 3)
    move = {"from_version": 1, "from_node": "week", "to_node": "day"}
    r = publish(client, tenant, V2, [move])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["result"], body["total_moved"]) == (2, "new version", 3)
    assert body["moved"] == [{**move, "contacts": 3}]
    assert where(client, tenant) == {(2, "day"): 3}
    conveyor.engine.run_until_idle()
    assert where(client, tenant) == {(2, "day"): 3}  # the wait started over at the move
    clock.advance(timedelta(days=1, seconds=1))
    conveyor.engine.run_until_idle()
    for cid in ids:
        assert tags(client, tenant, cid) == {"v1-hello", "v2-fresh"}  # not v1-second, not twice
    stats = client.get("/automations/welcome/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"completed": 3}
    steps = client.get(f"/contacts/{ids[0]}/timeline", headers=tenant.admin).json()["items"]
    moved = [s for s in steps if s["outcome"] == "moved"]
    assert len(moved) == 1
    assert (moved[0]["version"], moved[0]["node"]) == (2, "day")
    assert moved[0]["reason"]["why"].startswith("moved from v1:week to v2:day by API key ")
    after = [s["node"] for s in reversed(steps) if s["version"] == 2]
    assert after[0] == "day" and "fresh" in after  # moved into `day`, then on through v2


def test_by_default_contacts_stay_and_finish_their_version(client, tenant, conveyor, clock):
    activate(client, tenant, V1)
    ids = enroll(client, tenant, conveyor, 2)
    r = publish(client, tenant, V2)
    assert r.status_code == 200, r.text
    assert r.json()["total_moved"] == 0
    found = positions(client, tenant)
    assert found["version"] == 2
    # `week` is gone from the live version: its contacts are shown as in a removed node
    assert found["positions"] == [
        {"version": 1, "node": "week", "type": "wait", "contacts": 2, "change": "removed"}
    ]
    newcomer = enroll(client, tenant, conveyor, 1, prefix="new")[0]
    clock.advance(timedelta(days=7, seconds=1))
    conveyor.engine.run_until_idle()
    for cid in ids:
        assert tags(client, tenant, cid) == {"v1-hello", "v1-second"}
    assert tags(client, tenant, newcomer) == {"v2-hello", "v2-fresh"}


def test_a_stale_base_version_or_a_bad_plan_changes_nothing(client, tenant, conveyor):
    activate(client, tenant, V1)
    enroll(client, tenant, conveyor, 1)
    r = publish(client, tenant, V2, base=2)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "review the change again" in r.json()["detail"]
    bad = {"from_version": 1, "from_node": "week", "to_node": "nowhere"}
    r = publish(client, tenant, V2, [bad])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "moves.0.to_node"
    r = publish(client, tenant, {**V2, "key": "other"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "definition.key"
    r = publish(client, tenant, {**V2, "nodes": [{"id": "x", "type": "bogus"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("definition.nodes")
    assert client.get("/automations/welcome", headers=tenant.admin).json()["version"] == 1
    assert where(client, tenant) == {(1, "week"): 1}
    r = client.get("/automations/nope/positions", headers=tenant.admin)
    assert r.status_code == 404


def _worker_tick_holding_its_runs(conveyor, started, release):
    """A worker's execute: claims the due runs (locks them) and advances them, then holds its
    transaction open until told to commit."""

    def work(tx):
        count = conveyor.engine._execute(tx, 1000)
        started.set()
        release.wait(10)
        return count

    return conveyor.store.transact(work)


def _two_waves(client, tenant, conveyor, clock):
    """Half the contacts due now (entered 7 days ago), half not yet."""
    activate(client, tenant, V1)
    early = enroll(client, tenant, conveyor, 4, prefix="early")
    clock.advance(timedelta(days=3))
    late = enroll(client, tenant, conveyor, 4, prefix="late")
    clock.advance(timedelta(days=4, seconds=1))
    return early, late


def _check_none_lost_or_doubled(client, tenant, conveyor, early, late):
    for cid in early:  # the worker advanced them on v1 before the move could
        assert tags(client, tenant, cid) == {"v1-hello", "v1-second"}
    for cid in late:  # still waiting when the move ran: moved once, finished on v2
        assert tags(client, tenant, cid) == {"v1-hello", "v2-fresh"}
    stats = client.get("/automations/welcome/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"completed": 8}
    for cid in early + late:
        steps = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"]
        outcomes = [s["outcome"] for s in steps]
        assert outcomes.count("moved") == (1 if cid in late else 0)
        last = [
            (s["version"], s["node"])
            for s in steps
            if s["node"] in ("second", "fresh") and s["outcome"] == "done"
        ]
        assert last == ([(2, "fresh")] if cid in late else [(1, "second")])


def test_a_worker_holding_runs_during_the_move_loses_and_doubles_none(
    client, tenant, conveyor, clock
):
    early, late = _two_waves(client, tenant, conveyor, clock)
    started, release = threading.Event(), threading.Event()
    worker = threading.Thread(
        target=_worker_tick_holding_its_runs, args=(conveyor, started, release)
    )
    worker.start()
    assert started.wait(10)
    moved: list[int] = []
    publisher = threading.Thread(
        target=lambda: moved.append(
            conveyor.live_edits.publish(
                tenant.workspace, "welcome", V2, [Move(1, "week", "fresh")], 1, by="test"
            ).total_moved
        )
    )
    publisher.start()
    time.sleep(0.3)  # let the publish reach the worker's locks (it waits; it must not skip)
    release.set()
    worker.join(10)
    publisher.join(10)
    assert moved == [4]  # only the runs the worker left at `week`
    conveyor.engine.run_until_idle()
    _check_none_lost_or_doubled(client, tenant, conveyor, early, late)


def test_a_worker_ticking_while_the_move_holds_the_runs_loses_and_doubles_none(
    client, tenant, conveyor, clock
):
    early, late = _two_waves(client, tenant, conveyor, clock)
    # Make the early ones not yet claimed: the move runs first and holds its transaction.
    done, release = threading.Event(), threading.Event()
    moved: list[int] = []

    def publish_and_hold():
        with conveyor.store.unit():
            moved.append(
                conveyor.live_edits.publish(
                    tenant.workspace, "welcome", V2, [Move(1, "week", "fresh")], 1, by="test"
                ).total_moved
            )
            done.set()
            release.wait(10)

    publisher = threading.Thread(target=publish_and_hold)
    publisher.start()
    assert done.wait(10)
    claimed: list[int] = []
    worker = threading.Thread(target=lambda: claimed.append(conveyor.engine.execute()))
    worker.start()
    time.sleep(0.3)  # the worker skips the locked runs (PostgreSQL) or waits (SQLite)
    release.set()
    publisher.join(10)
    worker.join(10)
    assert moved == [8]  # every run was still at `week`: all moved, none advanced on v1
    conveyor.engine.run_until_idle()
    for cid in early + late:
        assert tags(client, tenant, cid) == {"v1-hello", "v2-fresh"}
        steps = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"]
        assert [s["outcome"] for s in steps].count("moved") == 1
        assert [
            s["node"] for s in steps if s["node"] in ("second", "fresh") and s["outcome"] == "done"
        ] == ["fresh"]
    stats = client.get("/automations/welcome/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"completed": 8}
