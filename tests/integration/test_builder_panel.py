"""The builder's server side on both databases, as a browser calls it: checks and the YAML view
(JSON for the page's script), drafts, review with the diff, publishing — CSRF, roles and the
workspace checked on each; with contacts inside, the review's form goes to the live-edit page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from conveyor.bootstrap import Conveyor
from tests.integration.conftest import LiveServer, make_tenant
from tests.integration.test_panel import browser, form_token, sign_in, user

ROOT = Path(__file__).resolve().parents[2]
CART_TEXT = (ROOT / "examples" / "automations" / "abandoned-cart.yaml").read_text()
CART = yaml.safe_load(CART_TEXT)


@pytest.fixture
def live(conveyor: Conveyor) -> Iterator[LiveServer]:
    from conveyor.api.app import create_app

    with LiveServer(create_app(conveyor)) as server:
        yield server


@pytest.fixture
def opened() -> Iterator[list[httpx.Client]]:
    clients: list[httpx.Client] = []
    yield clients
    for client in clients:
        client.close()


def signed_in(live: LiveServer, email: str, opened: list[httpx.Client]) -> tuple[httpx.Client, str]:
    client = browser(live)
    opened.append(client)
    assert sign_in(client, email).status_code == 303
    return client, form_token(client.get("/app/builder").text)


def test_checks_drafts_review_and_publish(conveyor: Conveyor, live: LiveServer, opened):
    acme, globex = make_tenant(conveyor, "acme"), make_tenant(conveyor, "globex")
    user(conveyor, acme, "mia@acme.example", "marketer")
    user(conveyor, globex, "gus@globex.example", "marketer")
    for key in ("cart-reminder-1", "cart-reminder-2"):
        conveyor.templates.save(acme.workspace, key, "email", {"subject": key, "html": "<p>hi</p>"})
    client, csrf = signed_in(live, "mia@acme.example", opened)
    json_headers = {"Accept": "application/json"}

    page = client.get("/app/builder")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '"node_send_email"' in page.text  # the schema the forms are drawn from

    # the canvas's definition: its YAML and the CLI's words for what is wrong
    broken = {**CART, "nodes": [*CART["nodes"][:1], {"id": "reminder", "type": "send_email"}]}
    said = client.post(
        "/app/builder/check",
        data={"csrf": csrf, "definition": json.dumps(broken)},
        headers=json_headers,
    ).json()
    assert said["problems"] == [
        {
            "path": "nodes.1.template",
            "message": "a send_email node needs 'template'",
            "text": "nodes.1.template: a send_email node needs 'template'",
        }
    ]
    assert yaml.safe_load(said["yaml"]) == broken
    # the YAML view's text: read back, or where it stops being YAML
    said = client.post(
        "/app/builder/check", data={"csrf": csrf, "yaml": CART_TEXT}, headers=json_headers
    ).json()
    assert (said["definition"], said["problems"], said["yaml_error"]) == (CART, [], None)
    said = client.post(
        "/app/builder/check",
        data={"csrf": csrf, "yaml": "key: a\nnodes:\n  - id: [x\n"},
        headers=json_headers,
    ).json()
    assert said["yaml_error"]["line"] == 4 and said["problems"] == []

    # no CSRF token, another site's Origin: refused
    assert client.post("/app/builder/check", data={"yaml": CART_TEXT}).status_code == 403
    other_site = client.post(
        "/app/builder/check",
        data={"csrf": csrf, "yaml": CART_TEXT},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403

    # a draft, its review with the diff, then publishing creates the automation
    saved = client.post(
        "/app/builder/drafts", data={"csrf": csrf, "yaml": CART_TEXT}, headers=json_headers
    ).json()
    assert saved["name"] == "Abandoned cart"
    review = client.get(f"/app/builder/review?draft={saved['id']}")
    assert review.status_code == 200
    assert "+key: abandoned-cart" in review.text
    assert 'action="/app/builder/publish"' in review.text
    published = client.post(
        "/app/builder/publish",
        data={"csrf": csrf, "definition": CART_TEXT, "draft": saved["id"], "activate": "yes"},
    )
    assert published.status_code == 303
    assert published.headers["location"] == "/app/automations/abandoned-cart"
    info = conveyor.automations.get(acme.workspace, "abandoned-cart")
    assert (info.version, info.status, info.definition) == (1, "active", CART)
    assert conveyor.automation_drafts.all(acme.workspace) == []

    # publishing something not valid saves nothing and says why
    bad = CART_TEXT.replace("for: 1 day", "for: a while")
    refused = client.post("/app/builder/publish", data={"csrf": csrf, "definition": bad})
    assert refused.status_code == 303
    assert conveyor.automations.get(acme.workspace, "abandoned-cart").version == 1

    # the editor of the live automation; with a contact inside, the review goes to live edit
    assert client.get("/app/automations/abandoned-cart/edit").status_code == 200
    api = httpx.Client(base_url=live.url, headers=acme.write, timeout=30)
    opened.append(api)
    tracked = api.post("/v1/track", json={"userId": "cara", "event": "cart_updated"})
    assert tracked.status_code == 200, tracked.text
    conveyor.engine.run_until_idle()
    second = CART_TEXT.replace("timeout: 1 hour", "timeout: 2 hours")
    saved = client.post(
        "/app/builder/drafts", data={"csrf": csrf, "yaml": second}, headers=json_headers
    ).json()
    review = client.get(f"/app/builder/review?draft={saved['id']}")
    assert "-  timeout: 1 hour" in review.text and "+  timeout: 2 hours" in review.text
    assert 'action="/app/automations/abandoned-cart/publish"' in review.text
    assert 'name="definition"' in review.text

    # another workspace's marketer: none of this workspace's drafts or automations
    gus, gus_csrf = signed_in(live, "gus@globex.example", opened)
    assert gus.get(f"/app/builder/review?draft={saved['id']}").status_code == 404
    assert gus.get("/app/automations/abandoned-cart/edit").status_code == 404
    assert "Abandoned cart" not in gus.get("/app/builder/drafts").text
    gone = gus.post(f"/app/builder/drafts/{saved['id']}/discard", data={"csrf": gus_csrf})
    assert gone.status_code == 404
    assert conveyor.automation_drafts.get(acme.workspace, saved["id"])


def test_a_viewer_may_not_build(conveyor: Conveyor, live: LiveServer, opened):
    acme = make_tenant(conveyor, "acme")
    user(conveyor, acme, "vic@acme.example", "viewer")
    client = browser(live)
    opened.append(client)
    assert sign_in(client, "vic@acme.example").status_code == 303
    assert client.get("/app/builder").status_code == 403
    csrf = form_token(client.get("/app/automations").text)  # the sign-out form's token
    refused = client.post(
        "/app/builder/drafts",
        data={"csrf": csrf, "yaml": CART_TEXT},
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert conveyor.automation_drafts.all(acme.workspace) == []
