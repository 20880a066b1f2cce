"""The panel over real HTTP on both databases: sign-in, sessions, CSRF, roles, workspace
isolation, the setup link, and the automation pages' data."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from conveyor.bootstrap import Conveyor, bootstrap
from conveyor.settings import Settings
from tests.integration.conftest import LiveServer, Tenant, make_tenant

PASSWORD = "correct horse battery"
WELCOME = {
    "key": "welcome-series",
    "name": "Welcome series",
    "triggers": [{"list_subscribed": "newsletter"}],
    "nodes": [
        {"id": "welcome", "type": "add_tag", "tag": "welcomed"},
        {"id": "first-week", "type": "wait", "for": "7 days"},
        {"id": "tips", "type": "add_tag", "tag": "tipped"},
    ],
}


@pytest.fixture
def live(conveyor: Conveyor) -> Iterator[LiveServer]:
    from conveyor.api.app import create_app

    with LiveServer(create_app(conveyor)) as server:
        yield server


def browser(live: LiveServer) -> httpx.Client:
    """A client that behaves like a browser: keeps cookies, sends its own Origin on POSTs."""
    return httpx.Client(base_url=live.url, headers={"Origin": live.url}, timeout=30)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/app/signin")
    return client.post(
        "/app/signin",
        data={"email": email, "password": password, "csrf": form_token(page.text), "next": ""},
    )


def user(conveyor: Conveyor, tenant: Tenant, email: str, role: str) -> None:
    conveyor.signin.create_user(tenant.workspace, email, role, PASSWORD, name=email.split("@")[0])


def test_root_leads_to_sign_in_then_the_automations(conveyor: Conveyor, live: LiveServer, tenant):
    user(conveyor, tenant, "ada@acme.example", "admin")
    with browser(live) as client:
        first = client.get("/", follow_redirects=True)
        assert first.url.path == "/app/signin"
        assert "Sign in" in first.text
        wrong = sign_in(client, "ada@acme.example", "not the password")
        assert wrong.status_code == 401
        assert "wrong" in wrong.text
        ok = sign_in(client, "ada@acme.example")
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        page = client.get("/app/automations")
        assert page.status_code == 200
        assert "No automations yet" in page.text
        # the hint applies the whole examples folder (a single automation file alone fails on
        # its missing templates); test_workspace_code.py applies it into an empty workspace
        assert "conveyor apply examples --workspace acme" in page.text  # not the default one
        assert "automation apply examples/automations" not in page.text
        assert "They arrive as drafts" in page.text  # apply does not start them (checked there)
        assert "acme" in page.text and "ada" in page.text


def test_only_a_hash_of_the_session_token_is_stored(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "admin")
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        token = client.cookies["conveyor_session"]
        assert conveyor.signin.session(token) is not None
        with conveyor.store.read() as tx:
            assert tx.sessions.get(token) is None  # the clear token is not a key
        signed = client.get("/app/automations")
        client.post("/app/signout", data={"csrf": form_token(signed.text)})
        assert conveyor.signin.session(token) is None
        assert client.get("/app/automations").url.path == "/app/automations"  # no redirect follow
        assert client.get("/app/automations").status_code == 303


def test_passwords_are_stored_as_argon2id_at_full_cost(database_url, tmp_path, tenant):
    """The suite's Conveyor hashes at argon2's cheapest (tests/conftest.py); Conveyor as built
    hashes at the library's defaults, and signs in either way."""
    app = bootstrap(Settings(database_url=database_url, data_dir=tmp_path / "real"))
    try:
        app.signin.create_user(tenant.workspace, "ada@acme.example", "admin", PASSWORD)
        with app.store.read() as tx:
            [member] = tx.sessions.members_with_email("ada@acme.example")
        assert member.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert app.signin.sign_in("ada@acme.example", PASSWORD, "127.0.0.1").token
    finally:
        app.close()


def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(
    conveyor: Conveyor, live, tenant
):
    user(conveyor, tenant, "ada@acme.example", "admin")
    conveyor.automations.apply(tenant.workspace, WELCOME)
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        page = client.get("/app/automations/welcome-series")
        token = form_token(page.text)
        missing = client.post("/app/automations/welcome-series/status", data={"status": "active"})
        assert missing.status_code == 403
        wrong = client.post(
            "/app/automations/welcome-series/status", data={"status": "active", "csrf": "x" * 43}
        )
        assert wrong.status_code == 403
        elsewhere = client.post(
            "/app/automations/welcome-series/status",
            data={"status": "active", "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        assert conveyor.automations.get(tenant.workspace, "welcome-series").status == "draft"
        done = client.post(
            "/app/automations/welcome-series/status", data={"status": "active", "csrf": token}
        )
        assert done.status_code == 303
        assert conveyor.automations.get(tenant.workspace, "welcome-series").status == "active"
        shown = client.get(done.headers["location"])
        assert "is activated" in shown.text


def test_a_viewer_sees_but_cannot_change(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "vera@acme.example", "viewer")
    conveyor.automations.apply(tenant.workspace, WELCOME)
    with browser(live) as client:
        sign_in(client, "vera@acme.example")
        page = client.get("/app/automations/welcome-series")
        assert page.status_code == 200
        assert "Activate" not in page.text  # no buttons she cannot use ...
        refused = client.post(  # ... and the server refuses the action all the same
            "/app/automations/welcome-series/status",
            data={"status": "active", "csrf": form_token(page.text)},
        )
        assert refused.status_code == 403
        assert "Not allowed" in refused.text and "viewer" in refused.text
    assert conveyor.automations.get(tenant.workspace, "welcome-series").status == "draft"


def test_a_session_of_one_workspace_never_shows_another(conveyor: Conveyor, live, tenant):
    other = make_tenant(conveyor, "globex")
    user(conveyor, tenant, "ada@acme.example", "admin")
    conveyor.automations.apply(other.workspace, {**WELCOME, "name": "Globex welcome"})
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        listed = client.get("/app/automations")
        assert "Globex welcome" not in listed.text
        for path in (
            "/app/automations/welcome-series",
            "/app/automations/welcome-series/live.json",
            "/app/automations/welcome-series/versions",
            "/app/automations/welcome-series/nodes/welcome",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "Globex" not in answer.text


def test_the_same_address_in_two_workspaces_chooses_one(conveyor: Conveyor, live, tenant):
    other = make_tenant(conveyor, "globex")
    user(conveyor, tenant, "ada@acme.example", "admin")
    user(conveyor, other, "ada@acme.example", "viewer")
    with browser(live) as client:
        asked = sign_in(client, "ada@acme.example")
        assert asked.status_code == 200 and 'name="workspace"' in asked.text
        chosen = client.post(
            "/app/signin",
            data={
                "email": "ada@acme.example",
                "password": PASSWORD,
                "workspace": "globex",
                "csrf": form_token(asked.text),
            },
        )
        assert chosen.status_code == 303
        assert "viewer" in client.get("/app/automations").text


def test_sign_in_attempts_are_rate_limited(conveyor: Conveyor, live, tenant, clock):
    user(conveyor, tenant, "ada@acme.example", "admin")
    with browser(live) as client:
        codes = [
            sign_in(client, "ada@acme.example", "wrong password!").status_code for _ in range(11)
        ]
        assert codes[:10] == [401] * 10 and codes[10] == 429
        assert sign_in(client, "ada@acme.example").status_code == 429  # even the right one
        from datetime import timedelta

        clock.advance(timedelta(minutes=1))
        assert sign_in(client, "ada@acme.example").status_code == 303


def test_the_setup_link_creates_the_first_owner_once(conveyor: Conveyor, live, tenant):
    assert conveyor.signin.needs_setup()
    token = conveyor.signin.setup_link_token(tenant.workspace)
    assert token
    with browser(live) as client:
        page = client.get(f"/app/setup?token={token}")
        assert page.status_code == 200 and "acme" in page.text
        short = client.post(
            "/app/setup",
            data={
                "token": token,
                "name": "Ada",
                "email": "ada@acme.example",
                "password": "short",
                "confirm": "short",
                "csrf": form_token(page.text),
            },
        )
        assert short.status_code == 422 and "at least 10 characters" in short.text
        done = client.post(
            "/app/setup",
            data={
                "token": token,
                "name": "Ada",
                "email": "ada@acme.example",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "csrf": form_token(page.text),
            },
        )
        assert done.status_code == 303
        assert "Welcome, Ada" in client.get(done.headers["location"], follow_redirects=True).text
        assert client.get(f"/app/setup?token={token}").status_code == 404
    assert not conveyor.signin.needs_setup()
    assert conveyor.signin.setup_link_token(tenant.workspace) is None
    members = conveyor.crm.members(tenant.workspace)
    assert [(m["email"], m["role"]) for m in members] == [("ada@acme.example", "owner")]


def test_unknown_pages_are_shown_in_the_frame(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "admin")
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        missing = client.get("/app/nowhere")
        assert missing.status_code == 404
        assert "Not found" in missing.text and 'aria-label="Sections"' in missing.text
        assert client.get("/app/automations/nope").status_code == 404


def test_the_graph_and_live_counts_follow_the_engine(conveyor: Conveyor, live, tenant, clock):
    from datetime import timedelta

    user(conveyor, tenant, "ada@acme.example", "marketer")
    conveyor.catalog.create_list(tenant.workspace, "newsletter")
    conveyor.automations.apply(tenant.workspace, WELCOME)
    conveyor.automations.set_status(tenant.workspace, "welcome-series", "active")
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        page = client.get("/app/automations/welcome-series")
        assert page.status_code == 200
        assert 'data-node="first-week"' in page.text and "<svg" in page.text
        before = client.get("/app/automations/welcome-series/live.json").json()
        assert before["nodes"] == {}
        subscribe(live, tenant, "grace@example.com")
        conveyor.engine.run_until_idle()
        after = client.get("/app/automations/welcome-series/live.json").json()
        assert after["nodes"]["first-week"]["waiting"] == 1
        assert after["nodes"]["welcome"]["passed"] == 1
        clock.advance(timedelta(days=1))
        steps = client.get("/app/automations/welcome-series/nodes/welcome?fragment=1")
        assert "grace@example.com" in steps.text
        listed = client.get("/app/automations")
        assert re.search(r"Welcome series.*?<td class=\"num\">1</td>", listed.text, re.S)


def test_a_send_node_counts_each_contact_that_went_on_once(conveyor: Conveyor, live, tenant):
    """Delivery logs its message's fate at the send node (here a retry: no sender is set);
    the node's "passed" still counts the one contact that went on, not its steps."""
    user(conveyor, tenant, "ada@acme.example", "marketer")
    conveyor.catalog.create_list(tenant.workspace, "newsletter")
    conveyor.templates.save(
        tenant.workspace, "hello", "email", {"subject": "Hi", "html": "<p>hi</p>"}
    )
    mail = {**WELCOME, "nodes": [{"id": "welcome", "type": "send_email", "template": "hello"}]}
    conveyor.automations.apply(tenant.workspace, mail)
    conveyor.automations.set_status(tenant.workspace, "welcome-series", "active")
    subscribe(live, tenant, "grace@example.com")
    conveyor.engine.run_until_idle()
    conveyor.delivery.run_until_idle()
    stats = conveyor.automations.stats(tenant.workspace, "welcome-series")
    assert stats["nodes"]["welcome"]["outcomes"] == {"queued": 1, "retrying": 1}
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        counts = client.get("/app/automations/welcome-series/live.json").json()
    assert counts["nodes"]["welcome"]["passed"] == 1


def subscribe(live: LiveServer, tenant: Tenant, email: str) -> int:
    """A contact subscribes to the newsletter, through the public API."""
    with httpx.Client(base_url=live.url, headers=tenant.admin) as api:
        made = api.post("/contacts", json={"email": email})
        assert made.status_code == 201, made.text
        cid = made.json()["id"]
        done = api.put(f"/contacts/{cid}/lists/newsletter", json={"status": "subscribed"})
        assert done.status_code == 200, done.text
    return cid


def test_contacts_search_pages_and_filters(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "viewer")
    conveyor.catalog.create_list(tenant.workspace, "newsletter")
    with httpx.Client(base_url=live.url, headers=tenant.admin) as api:
        for i in range(60):
            body = {
                "email": f"p{i:02d}@example.com",
                "external_id": f"u-{i}",
                "first_name": f"Person{i}",
            }
            if i % 3 == 0:
                body["tags"] = ["vip"]
            assert api.post("/contacts", json=body).status_code == 201
        assert (
            api.post(
                "/contacts",
                json={
                    "email": "grace@hopper.example",
                    "first_name": "Grace",
                    "last_name": "Hopper",
                },
            ).status_code
            == 201
        )
    other = make_tenant(conveyor, "globex")
    with httpx.Client(base_url=live.url, headers=other.admin) as api:
        assert (
            api.post(
                "/contacts", json={"email": "secret@globex.example", "first_name": "Grace"}
            ).status_code
            == 201
        )
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        first = client.get("/app/contacts")
        assert first.status_code == 200
        assert first.text.count('<th scope="row">') == 50
        assert "Grace" in first.text  # newest first
        older = re.search(r'href="\?(cursor=[^"]+)" rel="next"', first.text)
        assert older
        second = client.get(f"/app/contacts?{older.group(1).replace('&amp;', '&')}")
        assert second.text.count('<th scope="row">') == 11
        assert 'rel="next"' not in second.text
        by_name = client.get("/app/contacts", params={"q": "hopp"})
        assert "grace@hopper.example" in by_name.text and "secret@globex" not in by_name.text
        by_name = client.get("/app/contacts", params={"q": "SON1"})  # Person1, Person10-19
        assert by_name.text.count('<th scope="row">') == 11
        starts = client.get("/app/contacts", params={"q": "p1"})  # emails p10… to p19…
        assert starts.text.count('<th scope="row">') == 10
        assert "email starts with “p1”" in starts.text
        named = client.get("/app/contacts", params={"q": "p1", "within": "name"})
        assert "No contact matches" in named.text and "name contains" in named.text
        bad_within = client.get("/app/contacts", params={"q": "p1", "within": "phone"})
        assert bad_within.status_code == 422
        prefix = client.get("/app/contacts", params={"q": "p0@"})  # no such email start
        assert "No contact matches" in prefix.text
        start = client.get("/app/contacts", params={"q": "p05@exa"})
        assert start.text.count('<th scope="row">') == 1
        external = client.get("/app/contacts", params={"q": "u-7"})
        assert external.text.count('<th scope="row">') == 1 and "p07@example.com" in external.text
        vip = client.get("/app/contacts", params={"tag": "vip"})
        assert vip.text.count('<th scope="row">') == 20
        bad = client.get("/app/contacts", params={"list": "nope"})
        assert bad.status_code == 422 and "no list" in bad.text
        cursor = client.get("/app/contacts", params={"cursor": "garbage!"})
        assert cursor.status_code == 422


def test_a_contact_timeline_has_every_event_step_and_message(
    conveyor: Conveyor, live, tenant, clock
):
    from datetime import timedelta

    user(conveyor, tenant, "ada@acme.example", "viewer")
    conveyor.catalog.create_list(tenant.workspace, "newsletter")
    conveyor.automations.apply(
        tenant.workspace,
        {
            **WELCOME,
            "nodes": [
                {"id": "welcome", "type": "send_email", "template": "welcome-1"},
                {"id": "first-week", "type": "wait", "for": "7 days"},
                {"id": "tips", "type": "add_tag", "tag": "tipped"},
            ],
        },
    )
    conveyor.automations.set_status(tenant.workspace, "welcome-series", "active")
    cid = subscribe(live, tenant, "grace@example.com")
    conveyor.engine.run_until_idle()
    clock.advance(timedelta(days=7, seconds=1))
    conveyor.engine.run_until_idle()
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        page = client.get(f"/app/contacts/{cid}")
        assert page.status_code == 200
        text = page.text
        assert "list.subscribed" in text  # the event
        assert "welcome-series</a> › <strong>welcome</strong>" in text  # the step
        assert "welcome-1" in text and "badge-msg-" in text  # the message it queued
        assert "tipped" in text  # the tag a later step added, in the profile
        items = re.findall(r'<li class="item item-(\w+)">', text)
        assert {"event", "step", "message"} <= set(items)
        # newest first: the step a week later comes before the first email
        assert text.index("<strong>tips</strong>") < text.index("<strong>welcome</strong>")
        assert client.get("/app/contacts/999999").status_code == 404
    views = conveyor.contact_views
    everything, _ = views.timeline(tenant.workspace, cid, limit=200)
    walked, cursor = [], None
    while True:
        page_items, cursor = views.timeline(tenant.workspace, cid, cursor, limit=2)
        walked += page_items
        if cursor is None:
            break
    assert [(i.kind, i.id) for i in walked] == [(i.kind, i.id) for i in everything]
    assert len(everything) >= 5


def test_a_refused_change_is_shown_as_an_error_where_it_happened(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "marketer")
    conveyor.automations.apply(tenant.workspace, WELCOME)
    conveyor.automations.set_status(tenant.workspace, "welcome-series", "archived")
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        page = client.get("/app/automations/welcome-series")
        assert "Activate" not in page.text  # nothing to do with an archived one
        done = client.post(
            "/app/automations/welcome-series/status",
            data={"status": "active", "csrf": form_token(page.text)},
        )
        assert done.status_code == 303
        shown = client.get(done.headers["location"])
        assert 'class="flash failed" role="alert"' in shown.text
        assert "archived cannot become active" in shown.text
        assert 'class="flash' not in client.get(done.headers["location"]).text  # shown once


def test_pages_are_never_cached_or_framed(conveyor: Conveyor, live, tenant):
    with browser(live) as client:
        page = client.get("/app/signin")
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_when_configured(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "admin")
    conveyor.settings.secure_cookies = True
    with browser(live) as client:
        page = client.get("/app/signin")
        assert "Secure" in page.headers["set-cookie"]
        token = form_token(page.text)
        signed = client.post(  # a client keeps Secure cookies for https: sent by hand here
            "/app/signin",
            data={"email": "ada@acme.example", "password": PASSWORD, "csrf": token},
            headers={"Cookie": f"conveyor_signin={token}"},
        )
        assert signed.status_code == 303
        assert (
            "Secure" in signed.headers["set-cookie"] and "HttpOnly" in signed.headers["set-cookie"]
        )


def test_a_removed_member_or_a_new_password_ends_the_session(conveyor: Conveyor, live, tenant):
    user(conveyor, tenant, "ada@acme.example", "admin")
    user(conveyor, tenant, "bob@acme.example", "marketer")
    with browser(live) as ada, browser(live) as bob:
        sign_in(ada, "ada@acme.example")
        sign_in(bob, "bob@acme.example")
        assert ada.get("/app/automations").status_code == 200
        conveyor.signin.set_password(tenant.workspace, "ada@acme.example", "another long password")
        assert ada.get("/app/automations").status_code == 303  # back to sign-in
        bob_id = next(
            m["id"] for m in conveyor.crm.members(tenant.workspace) if m["email"].startswith("bob")
        )
        assert bob.get("/app/automations").status_code == 200
        conveyor.crm.remove_member(tenant.workspace, bob_id)
        gone = bob.get("/app/automations")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/app/signin")
        assert bob.get("/app/automations/x/live.json").status_code == 401


def test_a_profile_with_scores_deals_tasks_and_an_owner(conveyor: Conveyor, live, tenant):
    import yaml

    user(conveyor, tenant, "ada@acme.example", "sales")
    with open("examples/scoring/lead-scoring.yaml") as source:
        model = yaml.safe_load(source)
    with httpx.Client(base_url=live.url, headers=tenant.admin) as api:
        for key, kind in (("country", "text"), ("job_title", "text"), ("company_size", "number")):
            assert api.post("/fields", json={"key": key, "type": kind}).status_code in (200, 201)
        assert api.put("/scoring-model", json=model).status_code == 200
        cid = api.post(
            "/contacts",
            json={"email": "max@big.example", "first_name": "Max", "fields": {"country": "DE"}},
        ).json()["id"]
        member = api.post(
            "/members", json={"name": "Sam Sales", "email": "sam@acme.example"}
        ).json()
        assert api.put(f"/contacts/{cid}/owner", json={"member": member["id"]}).status_code == 200
        assert api.post(
            "/pipelines",
            json={
                "key": "sales",
                "stages": [
                    {"name": "Lead", "probability": 10},
                    {"name": "Won", "probability": 100},
                ],
            },
        ).status_code in (200, 201)
        deal = api.post(
            "/deals",
            json={"title": "Big order", "pipeline": "sales", "contact_id": cid, "value": 1200},
        )
        assert deal.status_code == 201, deal.text
        task = api.post("/tasks", json={"title": "Call Max", "contact_id": cid})
        assert task.status_code == 201, task.text
    with browser(live) as client:
        sign_in(client, "ada@acme.example")
        page = client.get(f"/app/contacts/{cid}")
        assert page.status_code == 200, page.text
        for text in (
            "Big order",
            "Lead",
            "Call Max",
            "owner Sam Sales",
            "engagement",
            "fit",
            "dach",
            "country",
        ):
            assert text in page.text, text


def test_an_automation_page_shows_its_split_test(conveyor: Conveyor, live, tenant):
    """Each path's contacts, successes and rate, and where the decision stands, with its reason."""
    test = {"metric": "converted", "event": "order_completed", "min_sample": 10, "window": "1 day"}
    definition = {
        "key": "checkout-test",
        "name": "Checkout test",
        "triggers": [{"event": "signed_up"}],
        "nodes": [
            {
                "id": "pick",
                "type": "split",
                "test": test,
                "paths": [
                    {"name": "A", "weight": 1, "next": "a"},
                    {"name": "B", "weight": 1, "next": "b"},
                ],
            },
            {"id": "a", "type": "add_tag", "tag": "path-a", "next": "end"},
            {"id": "b", "type": "add_tag", "tag": "path-b", "next": "end"},
        ],
    }
    conveyor.automations.apply(tenant.workspace, definition)
    conveyor.automations.set_status(tenant.workspace, "checkout-test", "active")
    with httpx.Client(base_url=live.url, timeout=30) as api:
        calls = [{"type": "track", "userId": f"u{i}", "event": "signed_up"} for i in range(12)]
        assert api.post("/v1/batch", headers=tenant.write, json={"batch": calls}).status_code == 200
    conveyor.engine.run_until_idle()
    conveyor.experiments.check(tenant.workspace, "checkout-test")
    user(conveyor, tenant, "mia@acme.example", "viewer")
    with browser(live) as client:
        sign_in(client, "mia@acme.example")
        page = client.get("/app/automations/checkout-test")
    assert page.status_code == 200
    html = page.text
    assert "Split tests" in html and "pick" in html
    assert "Metric: converted (order_completed)" in html
    rows = re.findall(r'<th scope="row">([AB])[^<]*</th><td class="num">(\d+)</td>', html)
    assert {name for name, _ in rows} == {"A", "B"}
    assert sum(int(n) for _, n in rows) == 12  # every contact on one path
