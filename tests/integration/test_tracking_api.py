"""Segment-compatible tracking: every call type, batches, merges, idempotency, limits."""

from __future__ import annotations

import base64
import gzip
from datetime import timedelta

import orjson


def contact(client, tenant, **params):
    r = client.get("/contacts/lookup", headers=tenant.admin, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def history(client, tenant, contact_id):
    r = client.get(f"/contacts/{contact_id}/events", headers=tenant.admin, params={"limit": 500})
    return list(reversed(r.json()["items"]))


def log(client, tenant):
    return client.get("/events", headers=tenant.admin, params={"limit": 500}).json()["items"]


def test_every_call_type_is_recorded_with_its_kind(client, tenant):
    base = {"userId": "u1"}
    calls = {
        "identify": {"traits": {"email": "u1@x.co"}},
        "track": {"event": "order_completed", "properties": {"total": 99}},
        "page": {"name": "Pricing", "properties": {"url": "https://x.co/pricing"}},
        "screen": {"name": "Home"},
        "group": {"groupId": "g1", "traits": {"name": "Acme"}},
    }
    for kind, body in calls.items():
        r = client.post(f"/v1/{kind}", headers=tenant.write, json={**base, **body})
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True, "accepted": 1, "duplicates": 0}
    c = contact(client, tenant, external_id="u1")
    calls_seen = [
        (e["kind"], e["name"]) for e in history(client, tenant, c["id"]) if e["kind"] != "system"
    ]
    assert calls_seen == [
        ("identify", "identify"),
        ("track", "order_completed"),
        ("page", "page"),
        ("screen", "screen"),
        ("group", "group"),
    ]
    page = next(e for e in history(client, tenant, c["id"]) if e["kind"] == "page")
    assert page["properties"] == {"url": "https://x.co/pricing", "name": "Pricing"}


def test_calls_are_idempotent_on_message_id(client, tenant):
    body = {"userId": "u1", "event": "order_completed", "messageId": "m-1"}
    assert client.post("/v1/track", headers=tenant.write, json=body).json()["accepted"] == 1
    assert client.post("/v1/track", headers=tenant.write, json=body).json() == {
        "success": True,
        "accepted": 0,
        "duplicates": 1,
    }
    batch = {
        "batch": [
            {**body, "type": "track"},
            {**body, "type": "track", "messageId": "m-2"},
            {**body, "type": "track", "messageId": "m-2"},
        ]
    }
    r = client.post("/v1/batch", headers=tenant.write, json=batch).json()
    assert (r["accepted"], r["duplicates"]) == (1, 2)
    assert [e["message_id"] for e in log(client, tenant) if e["kind"] == "track"] == ["m-2", "m-1"]


def test_a_batch_stores_the_good_calls_and_reports_the_bad_by_index(client, tenant):
    batch = [
        {"type": "identify", "userId": "u1", "traits": {"email": "u1@x.co", "age": 30}},
        {"type": "track", "event": "x"},  # no identity
        {"type": "track", "userId": "u1", "event": "order_completed"},
        {"type": "identify", "userId": "u2", "traits": {"email": "broken"}},
        {"type": "identify", "userId": "u3", "traits": {"age": "old"}},  # age became a number above
        {"type": "nonsense", "userId": "u1"},
        "not an object",
        {"type": "identify", "userId": "u4", "traits": {"email": "u1@x.co"}},  # email taken by u1
    ]
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "userId"),
        (3, "traits.email"),
        (4, "traits.age"),
        (5, "type"),
        (6, ""),
        (7, "traits.email"),
    ]
    assert contact(client, tenant, external_id="u1")["fields"] == {"age": 30}
    for missing in ("u2", "u3", "u4"):
        assert (
            client.get(
                "/contacts/lookup", headers=tenant.admin, params={"external_id": missing}
            ).status_code
            == 404
        )


def test_a_batch_with_nothing_good_is_a_422_problem(client, tenant):
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": [{"type": "track"}]})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["index"] == 0
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "batch"
    r = client.post("/v1/batch", headers=tenant.write, content=b"{not json")
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_anonymous_visitor_is_merged_into_the_contact_on_identify(client, tenant):
    for i in range(3):
        client.post(
            "/v1/page",
            headers=tenant.write,
            json={"anonymousId": "anon-1", "properties": {"path": f"/p{i}"}},
        )
    client.post(
        "/v1/track", headers=tenant.write, json={"anonymousId": "anon-1", "event": "cart_updated"}
    )
    # The person already exists: imported by email, known to the app as u-9.
    existing = client.post(
        "/contacts",
        headers=tenant.admin,
        json={"email": "ada@x.co", "external_id": "u-9", "tags": ["imported"]},
    ).json()
    anon = contact(client, tenant, anonymous_id="anon-1")
    assert anon["id"] != existing["id"] and anon["email"] is None
    r = client.post(
        "/v1/identify",
        headers=tenant.write,
        json={"userId": "u-9", "anonymousId": "anon-1", "traits": {"plan": "pro"}},
    )
    assert r.status_code == 200, r.text
    merged = contact(client, tenant, anonymous_id="anon-1")
    assert merged["id"] == existing["id"]
    assert merged["anonymous_ids"] == ["anon-1"]
    assert merged["fields"] == {"plan": "pro"}
    assert client.get(f"/contacts/{anon['id']}", headers=tenant.admin).status_code == 404
    calls = [
        (e["kind"], e["name"])
        for e in history(client, tenant, merged["id"])
        if e["kind"] != "system"
    ]
    assert calls == [("page", "page")] * 3 + [("track", "cart_updated"), ("identify", "identify")]
    merges = [e for e in history(client, tenant, merged["id"]) if e["name"] == "contact.merged"]
    assert merges[0]["properties"] == {"merged_contact_id": anon["id"]}


def test_anonymous_visitor_becomes_the_user_when_the_user_is_new(client, tenant):
    client.post("/v1/track", headers=tenant.write, json={"anonymousId": "a-2", "event": "viewed"})
    anon = contact(client, tenant, anonymous_id="a-2")
    client.post(
        "/v1/identify",
        headers=tenant.write,
        json={"userId": "u-2", "anonymousId": "a-2", "traits": {"email": "b@x.co"}},
    )
    known = contact(client, tenant, external_id="u-2")
    assert known["id"] == anon["id"] and known["email"] == "b@x.co"


def test_a_known_users_anonymous_id_is_not_stolen_by_another_user(client, tenant):
    client.post(
        "/v1/identify",
        headers=tenant.write,
        json={"userId": "alice", "anonymousId": "shared-laptop"},
    )
    client.post(
        "/v1/identify", headers=tenant.write, json={"userId": "bob", "anonymousId": "shared-laptop"}
    )
    alice, bob = (
        contact(client, tenant, external_id="alice"),
        contact(client, tenant, external_id="bob"),
    )
    assert alice["id"] != bob["id"]
    assert alice["anonymous_ids"] == ["shared-laptop"] and bob["anonymous_ids"] == []


def test_alias_links_a_previous_id(client, tenant):
    client.post("/v1/track", headers=tenant.write, json={"anonymousId": "a-3", "event": "viewed"})
    client.post(
        "/v1/identify", headers=tenant.write, json={"userId": "u-3", "traits": {"email": "c@x.co"}}
    )
    r = client.post("/v1/alias", headers=tenant.write, json={"previousId": "a-3", "userId": "u-3"})
    assert r.status_code == 200, r.text
    c = contact(client, tenant, external_id="u-3")
    assert contact(client, tenant, anonymous_id="a-3")["id"] == c["id"]
    assert any(e["name"] == "viewed" for e in history(client, tenant, c["id"]))
    r = client.post("/v1/alias", headers=tenant.write, json={"userId": "u-3"})
    assert r.status_code == 422 and r.json()["field"] == "previousId"


def test_identify_sets_timezone_and_locale_from_the_sdk_context_only_when_missing(client, tenant):
    ctx = {"timezone": "America/New_York", "locale": "en-US"}
    client.post(
        "/v1/identify",
        headers=tenant.write,
        json={"userId": "u", "traits": {"timezone": "Europe/Paris"}, "context": ctx},
    )
    c = contact(client, tenant, external_id="u")
    assert (c["timezone"], c["locale"]) == ("Europe/Paris", "en-US")
    client.post(
        "/v1/track",
        headers=tenant.write,
        json={"userId": "u", "event": "e", "context": {"timezone": "Asia/Tokyo"}},
    )
    assert contact(client, tenant, external_id="u")["timezone"] == "Europe/Paris"


def test_undeclared_traits_are_declared_with_an_inferred_type(client, tenant):
    client.post(
        "/v1/identify",
        headers=tenant.write,
        json={
            "userId": "u",
            "traits": {
                "plan": "pro",
                "seats": 5,
                "trial": True,
                "birthday": "1990-05-17",
                "tags": ["a"],
                "nested": [{"x": 1}],
            },
        },
    )
    fields = {f["key"]: f["type"] for f in client.get("/fields", headers=tenant.admin).json()}
    assert fields == {
        "plan": "text",
        "seats": "number",
        "trial": "boolean",
        "birthday": "date",
        "trait_tags": "multi_choice",
    }
    c = contact(client, tenant, external_id="u")
    assert c["fields"]["seats"] == 5
    identify = next(e for e in history(client, tenant, c["id"]) if e["kind"] == "identify")
    assert identify["properties"]["nested"] == [
        {"x": 1}
    ]  # kept in the log even if no field holds it


def test_timestamps_client_and_received(client, tenant, clock):
    client.post(
        "/v1/track",
        headers=tenant.write,
        json={"userId": "u", "event": "e", "timestamp": "2025-12-24T18:00:00+01:00"},
    )
    e = next(x for x in log(client, tenant) if x["kind"] == "track")
    assert e["timestamp"].startswith("2025-12-24T17:00:00")
    assert e["received_at"].startswith(clock.now().strftime("%Y-%m-%dT%H:%M:%S"))


def test_segment_auth_forms_and_writekey_in_body(client, tenant):
    basic = base64.b64encode(f"{tenant.write_key}:".encode()).decode()
    assert (
        client.post(
            "/v1/track",
            headers={"Authorization": f"Basic {basic}"},
            json={"userId": "u", "event": "basic"},
        ).status_code
        == 200
    )
    # analytics.js sends text/plain with the write key in the body, to avoid a CORS preflight.
    r = client.post(
        "/v1/batch",
        content=orjson.dumps(
            {
                "writeKey": tenant.write_key,
                "batch": [{"type": "track", "userId": "u", "event": "body"}],
            }
        ),
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    r = client.post("/v1/track", json={"userId": "u", "event": "e"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert (
        client.post(
            "/v1/track",
            headers={"Authorization": "Bearer cvk_nope"},
            json={"userId": "u", "event": "e"},
        ).status_code
        == 401
    )
    assert {e["name"] for e in log(client, tenant) if e["kind"] == "track"} == {"basic", "body"}


def test_gzip_bodies_and_shared_batch_context(client, tenant):
    body = {
        "batch": [{"type": "track", "userId": "u", "event": "zipped"}],
        "context": {"library": {"name": "analytics-python"}},
    }
    r = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={**tenant.write, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    e = next(x for x in log(client, tenant) if x["name"] == "zipped")
    assert e["context"]["library"]["name"] == "analytics-python"
    r = client.post(
        "/v1/batch", content=b"not gzip", headers={**tenant.write, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 400


def test_limits_answer_413(client, tenant, conveyor):
    settings = conveyor.settings
    big = {
        "batch": [{"type": "track", "userId": "u", "event": "e"}] * (settings.max_batch_items + 1)
    }
    r = client.post("/v1/batch", headers=tenant.write, json=big)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    huge = {
        "userId": "u",
        "event": "e",
        "properties": {"blob": "x" * (settings.max_request_bytes + 10)},
    }
    assert client.post("/v1/track", headers=tenant.write, json=huge).status_code == 413
    fat = {
        "userId": "u",
        "event": "e",
        "properties": {"blob": "x" * (settings.max_event_bytes + 10)},
    }
    assert client.post("/v1/track", headers=tenant.write, json=fat).status_code == 413
    mixed = {"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", **fat}]}
    r = client.post("/v1/batch", headers=tenant.write, json=mixed)
    assert (
        r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["errors"][0]["index"] == 1
    )
    bomb = gzip.compress(b"{" + b" " * (settings.max_request_bytes * 4) + b"}")
    r = client.post("/v1/batch", content=bomb, headers={**tenant.write, "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_write_keys_cannot_use_admin_routes(client, tenant):
    r = client.get("/contacts", headers=tenant.write)
    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"


def test_an_email_can_move_between_contacts_within_one_batch(client, tenant):
    client.post(
        "/v1/batch",
        headers=tenant.write,
        json={
            "batch": [
                {"type": "identify", "userId": "a", "traits": {"email": "one@x.co"}},
                {"type": "identify", "userId": "b", "traits": {"email": "two@x.co"}},
            ]
        },
    )
    r = client.post(
        "/v1/batch",
        headers=tenant.write,
        json={
            "batch": [
                {"type": "identify", "userId": "b", "traits": {"email": "three@x.co"}},
                {"type": "identify", "userId": "a", "traits": {"email": "two@x.co"}},
                {"type": "identify", "userId": "c", "traits": {"email": "one@x.co"}},
            ]
        },
    )
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    emails = {u: contact(client, tenant, external_id=u)["email"] for u in "abc"}
    assert emails == {"a": "two@x.co", "b": "three@x.co", "c": "one@x.co"}


def test_concurrent_batches_about_the_same_new_people(client, tenant, server):
    """Four senders at once, all about the same 40 new users: every call is stored, no 5xx, and
    each person is one contact (found by the ingest benchmark on PostgreSQL)."""
    import concurrent.futures

    import httpx

    def send(sender: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for round_ in range(5):
                batch = [
                    {
                        "type": "identify" if i % 3 == 0 else "track",
                        "userId": f"p{i}",
                        "event": "seen",
                        "messageId": f"{sender}-{round_}-{i}",
                        "traits": {"email": f"p{i}@example.com"},
                    }
                    for i in range(40)
                ]
                r = http.post("/v1/batch", headers=tenant.write, json={"batch": batch})
                statuses.append(r.status_code)
                assert r.status_code != 200 or r.json()["errors"] == [], r.text
        return statuses

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, range(4)))
    assert {s for statuses in results for s in statuses} == {200}
    people = client.get("/contacts", headers=tenant.admin, params={"limit": 500}).json()["items"]
    assert sorted(c["external_id"] for c in people) == sorted(f"p{i}" for i in range(40))
    seen, cursor = 0, None
    while True:
        page = client.get(
            "/events",
            headers=tenant.admin,
            params={"limit": 500, "name": "seen", **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == 4 * 5 * 26  # 26 of every 40 calls are tracks


def _nested(levels: int) -> str:
    """A JSON object `levels` deep, as text (orjson itself writes at most 254 levels)."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def test_one_deeply_nested_call_is_reported_by_index_and_the_rest_are_stored(client, tenant):
    for levels in (40, 300, 1000):
        deep = f'{{"type":"track","userId":"u","event":"deep","properties":{_nested(levels)}}}'
        body = (
            '{"batch":[{"type":"track","userId":"u","event":"before"},'
            f'{deep},{{"type":"track","userId":"u","event":"after"}}]}}'
        )
        r = client.post("/v1/batch", headers=tenant.write, content=body.encode())
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 2
        [error] = r.json()["errors"]
        assert error["index"] == 1 and "levels deep" in error["detail"]
        assert error["field"].startswith("properties.a.a")
        single = client.post("/v1/track", headers=tenant.write, content=deep.encode())
        assert single.status_code == 422 and "levels deep" in single.json()["detail"]
    names = [e["name"] for e in log(client, tenant)]
    assert sorted(names).count("before") == 3 and "deep" not in names


def test_a_deep_shared_batch_context_is_refused_naming_it(client, tenant):
    body = '{"batch":[{"type":"track","userId":"u","event":"e"}],"context":' + _nested(60) + "}"
    r = client.post("/v1/batch", headers=tenant.write, content=body.encode())
    assert r.status_code == 422 and r.json()["field"].startswith("context.a")


def test_analytics_js_short_paths_and_batch_paths(client, tenant):
    """analytics.js posts to `{apiHost}/{letter}` and batches to `/b`; mobile SDKs to /v1/b."""
    letters = {
        "i": {"traits": {"plan": "short"}},
        "t": {"event": "short_track"},
        "p": {"name": "Short"},
        "s": {"name": "Screen"},
        "g": {"groupId": "g1"},
        "a": {"previousId": "anon-short", "userId": "aliased"},
    }
    for prefix in ("/v1", ""):
        for letter, body in letters.items():
            call = {"userId": f"u{prefix}", "messageId": f"{prefix}{letter}", **body}
            r = client.post(f"{prefix}/{letter}", headers=tenant.write, json=call)
            assert r.status_code == 200, (prefix, letter, r.text)
            assert r.json()["accepted"] == 1
        r = client.post(
            f"{prefix}/b",
            headers=tenant.write,
            json={"batch": [{"type": "track", "userId": "b", "event": f"batched{prefix}"}]},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    names = {e["name"] for e in log(client, tenant)}
    assert {"short_track", "batched/v1", "batched"} <= names
    kinds = [e["kind"] for e in log(client, tenant) if e["kind"] != "system"]
    assert sorted(set(kinds)) == ["alias", "group", "identify", "page", "screen", "track"]
    assert contact(client, tenant, external_id="u/v1")["fields"]["plan"] == "short"
    # A short path still needs a key and still says what is wrong with a call.
    assert client.post("/v1/t", json={"userId": "u", "event": "e"}).status_code == 401
    r = client.post("/v1/t", headers=tenant.write, json={"userId": "u"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "event"
    # The SDK's own error counters are taken (and not stored as events).
    r = client.post("/v1/m", content=b'{"series":[{"metric":"analytics_js.invoke.error"}]}')
    assert r.status_code == 200
    assert client.post("/m", content=b"[]").status_code == 422
    # analytics.js's settings, fetched from its cdnURL: every call comes back here.
    r = client.get(f"/v1/projects/{tenant.write_key}/settings")
    assert r.status_code == 200
    assert r.json()["integrations"]["Segment.io"]["apiHost"].endswith("/v1")
    assert client.get("/v1/projects/cvk_nope/settings").status_code == 401


def test_a_batch_sent_at_corrects_a_slow_client_clock(client, tenant, clock):
    """analytics.js strips each call's sentAt and stamps the batch: a device one hour slow."""
    now = clock.now()
    device = now - timedelta(hours=1)
    r = client.post(
        "/v1/b",
        headers=tenant.write,
        json={
            "batch": [
                {
                    "type": "track",
                    "userId": "u",
                    "event": "skewed",
                    "timestamp": (device - timedelta(seconds=30)).isoformat(),
                }
            ],
            "sentAt": device.isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    e = next(x for x in log(client, tenant) if x["name"] == "skewed")
    assert e["timestamp"].startswith((now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S"))


def test_rudderstack_identify_traits_in_context_are_kept(client, tenant):
    """RudderStack's SDKs put an identify's traits only in context.traits (gzip by default)."""
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": "rs-1",
                "context": {"traits": {"email": "rs@x.co", "firstName": "Rudy", "plan": "pro"}},
            }
        ],
        "sentAt": "2026-01-01T00:00:00Z",
    }
    r = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={**tenant.write, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    c = contact(client, tenant, external_id="rs-1")
    assert (c["email"], c["first_name"], c["fields"]["plan"]) == ("rs@x.co", "Rudy", "pro")


# Every field Segment's spec documents (common fields, each call's own) and RudderStack's
# additions: after the call, each value sent is somewhere in what Conveyor kept.
FULL_CONTEXT = {
    "active": True,
    "app": {"name": "Acme", "version": "5.1", "build": "517", "namespace": "co.acme"},
    "campaign": {
        "name": "spring",
        "source": "news",
        "medium": "email",
        "term": "t",
        "content": "c",
    },
    "device": {
        "id": "dev-1",
        "advertisingId": "ad-1",
        "adTrackingEnabled": True,
        "manufacturer": "Apple",
        "model": "iPhone7,2",
        "name": "maguro",
        "type": "ios",
        "token": "tok-1",
    },
    "ip": "203.0.113.9",
    "library": {"name": "analytics.js", "version": "2.11.1"},
    "locale": "nl-NL",
    "location": {
        "city": "San Francisco",
        "country": "United States",
        "latitude": 40.2964197,
        "longitude": -76.9411617,
        "region": "CA",
        "speed": 0,
    },
    "network": {"bluetooth": False, "carrier": "T-Mobile NL", "cellular": True, "wifi": False},
    "os": {"name": "iPhone OS", "version": "8.1.3"},
    "page": {
        "path": "/academy/",
        "referrer": "https://r.example/",
        "search": "?q=1",
        "title": "Analytics Academy",
        "url": "https://acme.test/academy/",
    },
    "referrer": {"id": "ref-1", "type": "dataxu"},
    "screen": {"width": 320, "height": 568, "density": 2},
    "groupId": "grp-ctx",
    "timezone": "Europe/Amsterdam",
    "userAgent": "Mozilla/5.0 (iPhone)",
    "userAgentData": {
        "brands": [{"brand": "Chromium", "version": "110"}],
        "mobile": True,
        "platform": "macOS",
    },
}
COMMON = {
    "anonymousId": "anon-full",
    "context": FULL_CONTEXT,
    "integrations": {"All": True, "Mixpanel": False},
    "timestamp": "2026-01-05T08:59:00Z",
    "originalTimestamp": "2026-01-05T08:58:00Z",
    "sentAt": "2026-01-05T08:59:30Z",
    "version": 2,
    "channel": "server",  # RudderStack
    "rudderId": "r-1",  # RudderStack
}
EVERY_CALL = {
    "identify": {"traits": {"plan": "pro", "logins": 5, "address": {"city": "Utrecht"}}},
    "track": {
        "event": "Order Completed",
        "properties": {"revenue": 39.95, "currency": "EUR", "products": [{"sku": "a"}]},
    },
    "page": {"name": "Academy", "category": "Docs", "properties": {"path": "/academy/"}},
    "screen": {"name": "Home", "category": "Main", "properties": {"variation": "blue"}},
    "group": {"groupId": "grp-1", "traits": {"name": "Acme", "employees": 40}},
    "alias": {"previousId": "anon-older"},
}


def leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path, value


def test_no_documented_field_is_lost(client, tenant):
    for n, (kind, own) in enumerate(EVERY_CALL.items()):
        call = {**COMMON, "userId": "full", "messageId": f"m-full-{n}", **own}
        r = client.post(f"/v1/{kind}", headers=tenant.write, json=call)
        assert r.status_code == 200 and r.json()["accepted"] == 1, (kind, r.text)
        stored = next(e for e in log(client, tenant) if e["message_id"] == f"m-full-{n}")
        c = contact(client, tenant, external_id="full")
        kept = {repr(v) for _, v in leaves([stored, c])}
        for path, value in leaves(call):
            if path[0] in ("userId", "messageId", "anonymousId") or value == kind:
                continue  # the contact and the message id say these
            assert repr(value) in kept, (kind, path, value)
        assert stored["context"]["call"]["channel"] == "server"
        assert stored["context"]["integrations"] == {"All": True, "Mixpanel": False}
        assert stored["context"]["call"]["sentAt"] == "2026-01-05T08:59:30Z"
    assert "anon-full" in contact(client, tenant, external_id="full")["anonymous_ids"]
