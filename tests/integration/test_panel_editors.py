"""The segment builder's and the campaign composer's JSON calls and forms over real HTTP on both
databases: the vocabulary, live counts (the same numbers as the segments and campaigns
services), explanations, saves; errors as problem+json naming the field, never a 5xx, nothing
saved half-valid; CSRF and Origin checked; a viewer may count but not save; nothing of another
workspace seen or touched."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta

import httpx
import pytest

from conveyor.bootstrap import Conveyor
from conveyor.domain.fields import format_datetime
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.integration.test_panel import browser, form_token, sign_in, user

GOOD = {
    "event": "order_completed",
    "where": [{"property": "items", "op": "gte", "value": 1}],
    "count": {"gte": 3},
    "within": "90 days",
}


@pytest.fixture
def world(conveyor: Conveyor, server: LiveServer, tenant: Tenant) -> Tenant:
    """Ada ordered three times (a good customer), Bob twice; Bob is a vip; Globex has its own
    segment, tag and contact."""
    now = conveyor.clock.now()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        for name, days in (("ada", [1, 2, 3]), ("bob", [1, 2])):
            traits = {"email": f"{name}@example.com"}
            api.post("/v1/identify", headers=tenant.write, json={"userId": name, "traits": traits})
            for day in days:
                done = api.post(
                    "/v1/track",
                    headers=tenant.write,
                    json={
                        "userId": name,
                        "event": "order_completed",
                        "properties": {"items": 2},
                        "timestamp": format_datetime(now - timedelta(days=day)),
                    },
                )
                assert done.status_code == 200, done.text
        bob = api.get("/contacts/lookup", headers=tenant.admin, params={"external_id": "bob"})
        api.post(f"/contacts/{bob.json()['id']}/tags", headers=tenant.admin, json={"tags": ["vip"]})
        other = make_tenant(conveyor, "globex")
        made = api.post(
            "/contacts", headers=other.admin, json={"email": "zed@globex.example", "tags": ["gx"]}
        )
        assert made.status_code == 201
        api.post("/v1/track", headers=other.write, json={"userId": "z", "event": "globex_only"})
    conveyor.segments.save(other.workspace, "globex-seg", "Globex", {"tag": "gx"}, create=True)
    user(conveyor, tenant, "mia@acme.example", "marketer")
    user(conveyor, tenant, "vic@acme.example", "viewer")
    return tenant


def session(server: LiveServer, email: str) -> tuple[httpx.Client, dict[str, str]]:
    client = browser(server)
    sign_in(client, email)
    token = form_token(client.get("/app/segments/new").text)
    return client, {"X-CSRF-Token": token, "Accept": "application/json"}


def test_vocabulary_names_only_this_workspace(conveyor: Conveyor, server, world):
    client, _ = session(server, "vic@acme.example")
    with closing(client):
        vocab = client.get("/app/segments/vocabulary.json").json()
    assert vocab["schema"]["title"] == "Conveyor condition"
    assert "event" in vocab["schema"]["$defs"]
    assert {"email", "first_name"} <= {f["key"] for f in vocab["fields"]}
    assert "order_completed" in vocab["events"] and "globex_only" not in vocab["events"]
    assert vocab["tags"] == ["vip"]
    assert vocab["segments"] == []  # Globex's segment is not named
    assert "contains" in vocab["ops"]["text"] and "between" in vocab["ops"]["number"]


def test_live_count_equals_the_segments_count_and_errors_name_the_field(
    conveyor: Conveyor, server, world
):
    client, headers = session(server, "vic@acme.example")  # counting needs only a viewer
    with closing(client):
        good = client.post("/app/segments/count.json", json={"condition": GOOD}, headers=headers)
        assert good.status_code == 200 and good.json() == {"count": 1}
        assert conveyor.segments.count(world.workspace, raw=GOOD) == 1
        nested = {"any": [GOOD, {"not": {"tag": "vip"}}]}
        assert client.post(
            "/app/segments/count.json", json={"condition": nested}, headers=headers
        ).json() == {"count": conveyor.segments.count(world.workspace, raw=nested)}

        bad = {"all": [{"tag": "vip"}, {**GOOD, "within": "ninety days"}]}
        refused = client.post("/app/segments/count.json", json={"condition": bad}, headers=headers)
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["field"] == "condition.all.1.within"
        unknown = {"segment": "globex-seg"}  # another workspace's segment does not exist here
        refused = client.post(
            "/app/segments/count.json", json={"condition": unknown}, headers=headers
        )
        assert refused.status_code == 422 and refused.json()["field"] == "condition.segment"

        # bad bodies: problem+json, never a 5xx
        deep: dict = {"tag": "vip"}
        for _ in range(60):
            deep = {"not": deep}
        for body in (b"[1]", b"not json", b"{}", b'{"condition": 5}', b'{"condition": {}}'):
            answer = client.post("/app/segments/count.json", content=body, headers=headers)
            assert answer.status_code == 422, (body, answer.text)
        answer = client.post("/app/segments/count.json", json={"condition": deep}, headers=headers)
        assert answer.status_code == 422 and "nest" in answer.json()["detail"]

        # the CSRF header and the Origin are checked
        plain = {"Accept": "application/json"}
        assert (
            client.post("/app/segments/count.json", json={"condition": GOOD}, headers=plain)
        ).status_code == 403
        elsewhere = {**headers, "Origin": "https://evil.example"}
        assert (
            client.post("/app/segments/count.json", json={"condition": GOOD}, headers=elsewhere)
        ).status_code == 403
    with httpx.Client(base_url=server.url) as stranger:
        answer = stranger.post(
            "/app/segments/count.json", json={"condition": GOOD}, headers=headers
        )
        assert answer.status_code == 401


def test_save_creates_and_changes_only_valid_segments(conveyor: Conveyor, server, world):
    ws = world.workspace
    viewer, vheaders = session(server, "vic@acme.example")
    with closing(viewer):
        body = {"key": "good", "name": "Good", "condition": GOOD, "create": True}
        refused = viewer.post("/app/segments/save.json", json=body, headers=vheaders)
        assert refused.status_code == 403
    assert conveyor.segments.all(ws) == []

    client, headers = session(server, "mia@acme.example")
    with closing(client):
        made = client.post("/app/segments/save.json", json=body, headers=headers)
        assert made.status_code == 201, made.text
        assert made.json()["url"] == "/app/segments/good"
        assert conveyor.segments.get(ws, "good").definition == GOOD
        again = client.post("/app/segments/save.json", json=body, headers=headers)
        assert again.status_code == 409 and again.json()["field"] == "key"

        half = {**body, "create": False, "condition": {"all": [{"tag": "vip"}, {"event": ""}]}}
        refused = client.post("/app/segments/save.json", json=half, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "condition.all.1.event"
        assert conveyor.segments.get(ws, "good").definition == GOOD  # unchanged
        for wrong in ({**body, "key": "Bad Key"}, {**body, "key": 5}, {**body, "name": 7}):
            answer = client.post("/app/segments/save.json", json=wrong, headers=headers)
            assert answer.status_code == 422, wrong
        cycle = {"key": "good", "condition": {"segment": "good"}, "create": False}
        answer = client.post("/app/segments/save.json", json=cycle, headers=headers)
        assert answer.status_code == 422 and "cycle" in answer.json()["detail"]

        changed = {**body, "create": False, "name": "Good ones", "condition": {"tag": "vip"}}
        done = client.post("/app/segments/save.json", json=changed, headers=headers)
        assert done.status_code == 200
        assert conveyor.segments.get(ws, "good").definition == {"tag": "vip"}
        assert conveyor.segments.count(ws, "good") == 1
        # the builder's pages: new, and edit with the definition (a Globex key is not found)
        assert client.get("/app/segments/new").status_code == 200
        page = client.get("/app/segments/good/edit")
        assert page.status_code == 200 and 'data-condition=\'{"tag": "vip"}\'' in page.text
        assert client.get("/app/segments/globex-seg/edit").status_code == 404
        assert conveyor.segments.all(ws)[0].key == "good"


def test_explain_for_a_contact_of_this_workspace_only(conveyor: Conveyor, server, world):
    client, headers = session(server, "vic@acme.example")
    with closing(client):

        def explain(contact: object, condition: object = GOOD) -> httpx.Response:
            body = {"contact": contact, "condition": condition}
            return client.post("/app/segments/explain.json", json=body, headers=headers)

        ada = explain("ada@example.com").json()
        assert ada["member"] is True and ada["explanation"]["ok"] is True
        bob = explain("bob").json()  # by external id
        assert bob["member"] is False and "2" in bob["explanation"]["why"]
        for unknown in ("zed@globex.example", "nobody@example.com", "", None, 99999999):
            answer = explain(unknown)
            assert answer.status_code == 422 and answer.json()["field"] == "contact", unknown
        answer = explain("ada@example.com", {"event": 3})
        assert answer.status_code == 422 and answer.json()["field"] == "condition.event"


def test_campaign_count_and_composer_forms(conveyor: Conveyor, server, world):
    ws = world.workspace
    conveyor.segments.save(ws, "good", "Good", GOOD, create=True)
    client, headers = session(server, "mia@acme.example")
    with closing(client):
        audience = {"segments": ["good"], "tags": ["vip"]}
        counted = client.post(
            "/app/campaigns/count.json", json={"audience": audience}, headers=headers
        )
        assert (
            counted.json()
            == {"count": conveyor.campaigns.count(ws, audience=audience)}
            == {"count": 2}
        )
        audience["exclude"] = {"tags": ["vip"]}
        counted = client.post(
            "/app/campaigns/count.json",
            json={"audience": audience, "channel": "sms"},
            headers=headers,
        )
        assert counted.json() == {"count": 0}  # nobody has a phone
        for bad in ({"audience": {"segments": ["globex-seg"]}}, {"audience": 3}, {}):
            answer = client.post("/app/campaigns/count.json", json=bad, headers=headers)
            assert answer.status_code == 422, bad
            assert answer.json()["field"].startswith("audience")

        page = client.get("/app/campaigns/new")
        token = form_token(page.text)
        form = {
            "csrf": token,
            "key": "sale",
            "name": "Sale",
            "template": "none",
            "segments": "good",
        }
        refused = client.post("/app/campaigns/new", data=form)
        assert refused.status_code == 422 and "no template" in refused.text
        assert 'id="template" name="template" aria-invalid="true"' in refused.text
        form |= {"when": "at", "at": "not a time"}
        refused = client.post("/app/campaigns/new", data=form)
        assert refused.status_code == 422 and "a date and time" in refused.text
        assert conveyor.campaigns.all(ws) == []
        # another workspace's campaign: not found, for pages and for moves
        assert client.get("/app/campaigns/nothing-here").status_code == 404
        moved = client.post("/app/campaigns/nothing-here/cancel", data={"csrf": token})
        assert moved.status_code == 404
        assert client.post("/app/campaigns/x/explode", data={"csrf": token}).status_code == 404
    viewer, _ = session(server, "vic@acme.example")
    with closing(viewer):
        page = viewer.get("/app/campaigns")
        assert page.status_code == 200 and "New campaign" not in page.text
        refused = viewer.post(
            "/app/campaigns/new", data={"csrf": form_token(page.text), "key": "x"}
        )
        assert refused.status_code == 403


def test_composed_ab_test_at_a_moment_is_saved_then_moved(conveyor: Conveyor, server, world):
    import yaml

    from tests.e2e.test_panel_browser import ROOT

    ws = world.workspace
    with httpx.Client(base_url=server.url, headers=world.admin, timeout=10) as api:
        for template in yaml.safe_load((ROOT / "examples/templates/newsletter.yaml").read_text()):
            assert api.post("/templates", json=template).status_code in (200, 201)
    client, _ = session(server, "mia@acme.example")
    with closing(client):
        token = form_token(client.get("/app/campaigns/new").text)
        form = {
            "csrf": token,
            "key": "subject",
            "name": "Subject test",
            "template": "newsletter",
            "tags": "vip",
            "exclude_segments": [],
            "when": "at",
            "at": "2031-01-02T09:30",
            "ab": "on",
            "variant": "newsletter-urgent",
            "sample": "10",
            "wait": "2 hours",
            "metric": "clicked",
        }
        sms = client.post("/app/campaigns/new", data={**form, "variant": "flash-sms"})
        assert sms.status_code == 422 and "is for sms" in sms.text
        made = client.post("/app/campaigns/new", data=form)
        assert made.status_code == 303 and made.headers["location"] == "/app/campaigns/subject"
        info = conveyor.campaigns.get(ws, "subject")
        assert info.ab_test == {
            "variants": ["newsletter", "newsletter-urgent"],
            "sample": 10,
            "wait": 7200,
            "metric": "clicked",
        }
        assert info.schedule == {"at": "2031-01-02T09:30:00+00:00"}  # the workspace's UTC
        assert info.audience == {"tags": ["vip"]}
        edit = client.get("/app/campaigns/subject/edit")
        assert 'value="2031-01-02T09:30"' in edit.text and 'value="10"' in edit.text
        changed = client.post("/app/campaigns/subject/edit", data={**form, "sample": "20"})
        assert (
            changed.status_code == 303 and changed.headers["location"] == "/app/campaigns/subject"
        )
        assert conveyor.campaigns.get(ws, "subject").ab_test["sample"] == 20
        # a move its state does not allow is said on the page, never a 5xx
        refused = client.post("/app/campaigns/subject/pause", data={"csrf": token})
        assert refused.status_code == 303
        assert conveyor.campaigns.get(ws, "subject").status == "draft"
        done = client.post("/app/campaigns/subject/schedule", data={"csrf": token})
        assert done.status_code == 303
        assert conveyor.campaigns.get(ws, "subject").status == "scheduled"
        page = client.get("/app/campaigns/subject/edit", follow_redirects=True)
        assert "Only a draft can change" in page.text
