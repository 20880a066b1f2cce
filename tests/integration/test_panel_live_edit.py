"""Publishing a new version from the panel over real HTTP on both databases: the review shows
where contacts are, the chosen move is carried out, bad input is shown inline (never a 5xx,
nothing saved), viewers are refused, and another workspace's automation is not found."""

from __future__ import annotations

import re

import yaml

from conveyor.services.contacts import ContactChange
from tests.integration.conftest import make_tenant
from tests.integration.test_live_edits import V1, V2
from tests.integration.test_panel import browser, form_token, sign_in, user


def seed(conveyor, tenant, n=3):
    ws = tenant.workspace
    conveyor.automations.apply(ws, V1)
    conveyor.automations.set_status(ws, "welcome", "active")
    for i in range(n):
        cid = conveyor.contacts.create(ws, ContactChange({"email": f"c{i}@ex.com"})).id
        conveyor.engine.enroll(ws, "welcome", cid)


def where(conveyor, tenant):
    _, found = conveyor.live_edits.positions(tenant.workspace, "welcome")
    return {(p.version, p.node): p.count for p in found}


def test_review_choose_a_move_and_publish(conveyor, server, tenant):
    seed(conveyor, tenant)
    user(conveyor, tenant, "mia@acme.example", "marketer")
    text = yaml.safe_dump(V2, sort_keys=False)
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        page = client.get("/app/automations/welcome")
        assert "Publish a new version…" in page.text
        page = client.get("/app/automations/welcome/publish")
        assert page.status_code == 200
        assert 'name="definition"' in page.text and "key: welcome" in page.text
        assert 'data-position="1:week"' in page.text
        token = form_token(page.text)

        bad = client.post(
            "/app/automations/welcome/publish", data={"csrf": token, "definition": "key: [oops"}
        )
        assert bad.status_code == 422 and "not YAML (line" in bad.text
        assert 'aria-invalid="true"' in bad.text
        bogus = text.replace("type: add_tag", "type: bogus", 1)
        bad = client.post(
            "/app/automations/welcome/publish", data={"csrf": token, "definition": bogus}
        )
        assert bad.status_code == 422 and "definition.nodes.0.type" in bad.text

        review = client.post(
            "/app/automations/welcome/publish", data={"csrf": token, "definition": text}
        )
        assert review.status_code == 200, review.text
        assert "Review version 2" in review.text
        assert '<span class="removed">-- id: week</span>' in review.text  # the diff
        assert 'name="move:1:week"' in review.text and "Stay on version 1 (default)" in review.text
        assert re.search(r"Move to day \(wait, due \d{4}-\d\d-\d\d \d\d:\d\d UTC\)", review.text)
        assert (
            'value="1" name="base_version"' in review.text
            or 'name="base_version" value="1"' in review.text
        )

        confirm = {"csrf": token, "definition": text, "confirm": "1", "base_version": "1"}
        refused = client.post(
            "/app/automations/welcome/publish", data={**confirm, "move:1:week": "nowhere"}
        )
        assert refused.status_code == 422 and "no node &#39;nowhere&#39;" in refused.text
        assert conveyor.automations.get(tenant.workspace, "welcome").version == 1

        stale = client.post(
            "/app/automations/welcome/publish", data={**confirm, "base_version": "7"}
        )
        assert stale.status_code == 409 and "review the change again" in stale.text
        assert where(conveyor, tenant) == {(1, "week"): 3}

        done = client.post(
            "/app/automations/welcome/publish", data={**confirm, "move:1:week": "day"}
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/app/automations/welcome"
        shown = client.get("/app/automations/welcome")
        assert "Published version 2. Moved 3 contacts (3 from week to day)." in shown.text
    assert where(conveyor, tenant) == {(2, "day"): 3}
    steps = conveyor.automations.timeline(tenant.workspace, 1)[0]
    assert steps[0]["reason"]["why"] == "moved from v1:week to v2:day by mia@acme.example"


def test_a_viewer_and_another_workspace_are_refused(conveyor, server, tenant):
    seed(conveyor, tenant, 1)
    other = make_tenant(conveyor, "globex")
    conveyor.automations.apply(other.workspace, {**V1, "key": "theirs"})
    user(conveyor, tenant, "vera@acme.example", "viewer")
    user(conveyor, tenant, "mia@acme.example", "marketer")
    text = yaml.safe_dump(V2, sort_keys=False)
    with browser(server) as client:
        sign_in(client, "vera@acme.example")
        page = client.get("/app/automations/welcome")
        assert "Publish a new version…" not in page.text
        assert client.get("/app/automations/welcome/publish").status_code == 403
        refused = client.post(
            "/app/automations/welcome/publish",
            data={
                "csrf": form_token(page.text),
                "definition": text,
                "confirm": "1",
                "base_version": "1",
                "move:1:week": "day",
            },
        )
        assert refused.status_code == 403
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        page = client.get("/app/automations/welcome")
        assert client.get("/app/automations/theirs/publish").status_code == 404
        theirs = yaml.safe_dump({**V2, "key": "theirs"})
        missing = client.post(
            "/app/automations/theirs/publish",
            data={
                "csrf": form_token(page.text),
                "definition": theirs,
                "confirm": "1",
                "base_version": "1",
            },
        )
        assert missing.status_code == 404
    assert conveyor.automations.get(other.workspace, "theirs").version == 1
    assert where(conveyor, tenant) == {(1, "week"): 1}
