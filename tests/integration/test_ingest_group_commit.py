"""The fast write path: requests applied together in one transaction (group commit), and API keys
kept in memory for a moment with revocation reaching every process. Both databases."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conveyor.api.app import create_app
from conveyor.bootstrap import bootstrap
from conveyor.services.group_commit import GroupCommit
from conveyor.settings import Settings
from tests.integration.conftest import LiveServer


def test_one_group_keeps_each_requests_result_duplicates_and_errors(conveyor, tenant):
    ingest, ws = conveyor.ingest, tenant.workspace
    first = ingest.parse(
        ws,
        [
            {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
            {"type": "track", "userId": "ann", "event": "a", "messageId": "m-1"},
        ],
    )
    second = ingest.parse(
        ws,
        [
            {"type": "track", "userId": "ann", "event": "b", "messageId": "m-1"},  # dup of first
            {"type": "identify", "userId": "bob", "traits": {"email": "not an email"}},
            {"type": "track", "event": "no one"},  # neither userId nor anonymousId
            {"type": "page", "userId": "bob", "name": "/"},
        ],
    )
    third = ingest.parse(
        ws, [{"type": "identify", "userId": "cy", "traits": {"email": "ann@example.com"}}]
    )
    results = ingest._apply_group([first, second, third])  # what the writer does for a group
    assert (results[0].accepted, results[0].duplicates, results[0].errors) == (2, 0, [])
    assert (results[1].accepted, results[1].duplicates) == (1, 1)
    assert [e.index for e in results[1].errors] == [1, 2]
    # ann's email was taken by the first request, in the same transaction.
    assert results[2].accepted == 0 and results[2].errors[0].errors[0].field == "traits.email"
    with conveyor.store.read() as tx:
        found = tx.contacts.by_external_ids(ws.id, ["ann", "bob", "cy"])
    assert sorted(c.external_id for c in found) == ["ann", "bob"]
    # The same messageId sent again later is still a duplicate.
    again = ingest.calls(ws, [{"type": "track", "userId": "ann", "event": "a", "messageId": "m-1"}])
    assert (again.accepted, again.duplicates) == (0, 1)


def test_concurrent_single_calls_are_all_committed_once(conveyor, tenant, client, server):
    def send(n: int) -> int:
        with httpx.Client(base_url=server.url, headers=tenant.write, timeout=30) as http:
            for i in range(10):
                body = {"userId": f"u{n}", "event": "clicked", "messageId": f"c-{n}-{i}"}
                r = http.post("/v1/track", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == 1
        return n

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(8)))
    writer = conveyor.ingest.writer
    assert writer.requests >= 80 and writer.groups <= writer.requests
    r = client.get("/events", headers=tenant.admin, params={"name": "clicked", "limit": 200})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 80
    # Sent again: every one a duplicate, nothing stored twice.
    for n in range(2):
        body = {"userId": f"u{n}", "event": "clicked", "messageId": f"c-{n}-0"}
        assert client.post("/v1/track", headers=tenant.write, json=body).json()["duplicates"] == 1


def test_a_failing_request_does_not_fail_its_group():
    """The writer: while it applies one group the next requests queue; when their group fails
    as a whole, each is applied alone, and only the bad one gets the error."""
    started, release = threading.Event(), threading.Event()
    groups: list[list[str]] = []

    def apply_group(payloads: list[str]) -> list[str]:
        groups.append(list(payloads))
        if payloads == ["hold"]:
            started.set()
            release.wait(10)
        if "bad" in payloads:
            raise RuntimeError("the group's transaction failed")
        return [p.upper() for p in payloads]

    def apply_one(payload: str) -> str:
        if payload == "bad":
            raise ValueError("bad alone")
        return payload.upper()

    writer: GroupCommit[str, str] = GroupCommit(apply_group, apply_one)
    held = writer.submit("hold")
    assert started.wait(10)
    futures = [writer.submit(p) for p in ("a", "bad", "c")]
    release.set()
    assert held.result(10) == "HOLD"
    assert futures[0].result(10) == "A" and futures[2].result(10) == "C"
    with pytest.raises(ValueError, match="bad alone"):
        futures[1].result(10)
    assert groups == [["hold"], ["a", "bad", "c"]]  # the three waited together, one group
    # A waiter that gives up before its group is taken: not applied, and the writer goes on.
    release.clear()
    started.clear()
    held = writer.submit("hold")
    assert started.wait(10)
    gone, kept = writer.submit("gone"), writer.submit("kept")
    assert gone.cancel()
    release.set()
    assert kept.result(10) == "KEPT" and groups[-1] == ["kept"]
    writer.close()
    with pytest.raises(RuntimeError):
        writer.submit("late")


def test_a_revoked_key_stops_working_on_another_process_within_the_cache_time(
    conveyor, tenant, server, database_url, tmp_path, clock
):
    """Two API instances on one database (as two `serve` processes would be): B keeps keys for
    1 s of its own monotonic time (a ticker the test moves), A revokes."""
    other = bootstrap(Settings(database_url=database_url, data_dir=tmp_path), clock=clock)
    now = [1000.0]
    other.workspaces.key_cache.ticker = lambda: now[0]
    body = {"userId": "u", "event": "e"}
    try:
        with LiveServer(create_app(other)) as b, httpx.Client(timeout=30) as http:
            assert (
                http.post(f"{b.url}/v1/track", headers=tenant.write, json=body).status_code == 200
            )
            key_id = next(
                k["id"]
                for k in http.get(f"{server.url}/keys", headers=tenant.admin).json()
                if k["kind"] == "write"
            )
            r = http.delete(f"{server.url}/keys/{key_id}", headers=tenant.admin)
            assert r.status_code == 204, r.text
            # A, which revoked it, refuses it at once.
            r = http.post(f"{server.url}/v1/track", headers=tenant.write, json=body)
            assert r.status_code == 401
            now[0] += 0.5  # B still holds what it read half a second ago …
            assert (
                http.post(f"{b.url}/v1/track", headers=tenant.write, json=body).status_code == 200
            )
            now[0] += 0.5  # … and a second after, reads the key again: revoked
            r = http.post(f"{b.url}/v1/track", headers=tenant.write, json=body)
            assert r.status_code == 401 and r.headers["content-type"].startswith(
                "application/problem+json"
            )
            # An unknown key is never kept: a key made on A works on B at once.
            made = http.post(
                f"{server.url}/keys",
                headers=tenant.admin,
                json={"kind": "write", "name": "new"},
            ).json()["key"]
            fresh = {"Authorization": f"Bearer {made}"}
            assert http.post(f"{b.url}/v1/track", headers=fresh, json=body).status_code == 200
    finally:
        other.close()


def test_a_writer_waiting_for_a_persons_key_sees_the_contact_its_holder_created(conveyor, tenant):
    """The key locks and the look-ups by key go to PostgreSQL in one round trip (a pipeline):
    the look-up must still run after the lock was granted, with a fresh snapshot, so a second
    writer finds the contact the first one committed instead of racing it to the unique index.
    On SQLite one writer at a time gives the same answer."""
    ws = tenant.workspace
    created, release = threading.Event(), threading.Event()
    seen: list[list[str | None]] = []

    def first() -> None:
        def work(tx):
            ext, _, _ = tx.contacts.by_keys(ws.id, external_ids=["zoe"], emails=["z@example.com"])
            assert ext == []
            tx.contacts.insert(
                [
                    {
                        "workspace_id": ws.id,
                        "external_id": "zoe",
                        "email": "z@example.com",
                        "score": 0,
                        "fields": {},
                        "created_at": conveyor.clock.now(),
                        "updated_at": conveyor.clock.now(),
                    }
                ]
            )
            created.set()
            release.wait(10)

        conveyor.store.transact(work)

    def second() -> None:
        created.wait(10)

        def work(tx):
            ext, mail, _ = tx.contacts.by_keys(
                ws.id, external_ids=["zoe"], emails=["z@example.com"]
            )
            return [r.external_id for r in ext] + [r.email for r in mail]

        seen.append(conveyor.store.transact(work))

    one = threading.Thread(target=first)
    one.start()
    two = threading.Thread(target=second)
    created.wait(10)
    two.start()
    if not conveyor.store.db.is_sqlite:
        two.join(0.5)
        assert two.is_alive(), "the second writer should wait for the first one's key lock"
    release.set()
    one.join(10)
    two.join(10)
    assert seen == [["zoe", "z@example.com"]]
