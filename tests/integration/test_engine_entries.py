"""Every trigger match ends as an entry or as a recorded skip: quick repeats of an event each
enter an `every_time` automation that has finished, and one still inside says why it did not."""

from __future__ import annotations

from tests.support.flows import activate


def batch(client, tenant, calls):
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": calls})
    assert r.status_code == 200, r.text


def contact(client, tenant, user):
    return client.get(
        "/contacts/lookup", headers=tenant.admin, params={"external_id": user}
    ).json()


def test_five_quick_pricing_visits_score_five_times(client, tenant, conveyor):
    activate(client, tenant, {
        "key": "pricing-score",
        "triggers": [{"page_visited": "https://shop.example/pricing*"}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "score", "type": "adjust_score", "by": 10}],
    })
    page = {"type": "page", "userId": "lead-1", "properties": {"url": "https://shop.example/pricing"}}
    batch(client, tenant, [page] * 5)  # one batch: the engine meets all five in one pass
    conveyor.engine.run_until_idle()
    assert contact(client, tenant, "lead-1")["score"] == 50
    stats = client.get("/automations/pricing-score/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"completed": 5}


def test_a_trigger_while_inside_is_skipped_with_its_reason(client, tenant, conveyor, clock):
    activate(client, tenant, {
        "key": "cart",
        "triggers": [{"cart_updated": []}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "wait", "type": "wait", "for": "1 hour"}, {"id": "tag", "type": "add_tag", "tag": "reminded"}],
    })
    cart = {"type": "track", "userId": "shopper", "event": "cart_updated"}
    batch(client, tenant, [cart, cart])
    conveyor.engine.run_until_idle()
    cid = contact(client, tenant, "shopper")["id"]
    skips = client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                       params={"name": "automation.entry_skipped"}).json()["items"]
    assert len(skips) == 1
    assert skips[0]["properties"]["automation"] == "cart"
    assert skips[0]["properties"]["reason"].startswith("already inside since ")
    steps = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"]
    entry = [s for s in steps if s["outcome"] == "entry_skipped"]
    assert [(s["automation"], s["node"]) for s in entry] == [("cart", "entry")]
    assert entry[0]["reason"]["why"].startswith("not entered: already inside since ")
    assert entry[0]["reason"]["via"] == "cart_updated"
    stats = client.get("/automations/cart/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"active": 1}
    assert stats["nodes"]["entry"]["outcomes"] == {"entry_skipped": 1}


def test_what_the_engine_keeps_follows_catalog_changes(client, tenant, conveyor):
    """The engine keeps each workspace's parsed catalog between ticks: every change to
    automations, fields, lists or segments must reach it (a trigger bumps catalog_version)."""
    track = {"type": "track", "userId": "kim", "event": "signed_up"}
    batch(client, tenant, [track])
    conveyor.engine.run_until_idle()  # the catalog is now kept, with no automation in it
    activate(client, tenant, {
        "key": "hello",
        "triggers": [{"event": "signed_up"}],
        "entry": {"repeat": "every_time", "if": {"tag": "vip"}},
        "nodes": [{"id": "tag", "type": "add_tag", "tag": "greeted"}],
    })
    r = client.post("/segments", headers=tenant.admin, json={"key": "vips", "condition": {"tag": "vip"}})
    assert r.status_code in (200, 201), r.text
    batch(client, tenant, [track])
    conveyor.engine.run_until_idle()
    assert contact(client, tenant, "kim")["tags"] == []  # entered the new automation? no: not vip
    cid = contact(client, tenant, "kim")["id"]
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["vip"]})
    batch(client, tenant, [track])
    conveyor.engine.run_until_idle()
    assert sorted(contact(client, tenant, "kim")["tags"]) == ["greeted", "vip"]
    members = client.get("/segments/vips/members", headers=tenant.admin).json()["items"]
    assert [m["id"] for m in members] == [cid]
    r = client.patch("/automations/hello", headers=tenant.admin, json={"status": "paused"})
    assert r.status_code == 200, r.text
    client.delete(f"/contacts/{cid}/tags/greeted", headers=tenant.admin)
    batch(client, tenant, [track])
    conveyor.engine.run_until_idle()
    assert contact(client, tenant, "kim")["tags"] == ["vip"]  # paused: no entry
