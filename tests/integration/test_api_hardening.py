"""Inputs that used to answer 500 (issue 20): each is now a 4xx problem naming the field, and
nothing of it is stored."""

from __future__ import annotations

import pytest


def assert_problem(response, status: int, field: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == field, problem
    for word in words:
        assert word in problem["detail"], problem
    return problem


@pytest.mark.parametrize(
    "source", ['{% include "footer" %}', "{% render 'footer', x: 1 %}", "{% liquid\ninclude x %}"]
)
def test_a_template_that_includes_another_is_refused_on_save(client, tenant, source):
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "inc", "channel": "email", "content": {"subject": "Hi", "html": f"<p>{source}</p>"}})
    assert_problem(r, 422, "content.html", "include")
    assert client.get("/templates/inc", headers=tenant.admin).status_code == 404


LONE = "\\ud800"  # as JSON spells it: one half of a surrogate pair, which UTF-8 cannot encode


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/contacts", '{"email": "a@example.com", "first_name": "Ann%s"}', "first_name"),
    ("/templates", '{"key": "t", "channel": "sms", "content": {"body": "Hi %s"}}', "content.body"),
    ("/templates", '{"key": "t", "channel": "sms", "name": "%s", "content": {"body": "x"}}', "name"),
    ("/segments", '{"key": "s", "name": "S%s", "condition": {"tag": "vip"}}', "name"),
    ("/lists", '{"key": "news", "name": "%s"}', "name"),
])
def test_a_lone_surrogate_anywhere_in_a_json_body_is_a_422_naming_the_field(
    client, tenant, path, body, field
):
    headers = {**tenant.admin, "Content-Type": "application/json"}
    for lone in (LONE, "\\uDFFF"):
        assert_problem(client.post(path, headers=headers, content=body % lone), 422, field,
                       "surrogate")
    # The same character as the bytes UTF-8 would give it (Python's json reads them).
    raw = (body % "\ud800").encode("utf-8", "surrogatepass")
    assert_problem(client.post(path, headers=headers, content=raw), 422, field)
    # A proper pair (an emoji) is fine.
    r = client.post(path, headers=headers, content=body % "\\ud83d\\ude00")
    assert r.status_code in (200, 201), r.text
    assert client.get(path, headers=tenant.admin).status_code == 200


def nested_condition(levels: int) -> dict:
    condition: dict = {"tag": "vip"}
    for i in range(levels - 1):
        condition = {"not": condition} if i % 2 else {"all": [condition]}
    return condition


def test_conditions_nested_too_deep_are_refused_naming_where(client, tenant):
    fine = nested_condition(32)
    r = client.post("/segments", headers=tenant.admin,
                    json={"key": "fine", "name": "Fine", "condition": fine})
    assert r.status_code == 201, r.text
    assert client.get("/segments/fine/count", headers=tenant.admin).json() == {"count": 0}
    for levels in (33, 300):
        deep = nested_condition(levels)
        r = client.post("/segments", headers=tenant.admin,
                        json={"key": "deep", "name": "Deep", "condition": deep})
        problem = assert_problem(r, 422, r.json().get("field"), "at most 32 levels")
        steps = problem["field"].split(".")
        assert steps[0] == "condition" and steps.count("all") + steps.count("not") == 32
        r = client.post("/segments/count", headers=tenant.admin, json={"condition": deep})
        assert r.status_code == 422, r.text
    assert client.get("/segments/deep", headers=tenant.admin).status_code == 404


def resident_bytes() -> int:
    """This process's resident memory (the live server runs in it, on a thread)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_a_huge_csv_field_is_reported_by_line_and_memory_stays_bounded(client, tenant):
    big = 40_000_000

    def body():  # sent as it is made: the test holds no 40 MB either
        yield b"email,first_name\nann@example.com,Ann\nbob@example.com,\""
        for _ in range(big // 1_000_000):
            yield b"x" * 1_000_000
        yield b"\"\n"
        yield b"cy@example.com," + b"y" * 70_000 + b"\n"
        yield b"di@example.com,Di\n"

    before = resident_bytes()
    r = client.post("/contacts/import", headers={**tenant.admin, "Content-Type": "text/csv"},
                    content=body())
    grown = resident_bytes() - before
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] == 2 and report["failed"] == 2, report
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(3, "file"), (4, "file")]
    assert "over" in report["errors"][0]["detail"] and "limit" in report["errors"][1]["detail"]
    emails = {c["email"] for c in client.get("/contacts", headers=tenant.admin).json()["items"]}
    assert emails == {"ann@example.com", "di@example.com"}
    # Buffered, decoded and copied, the same body took 300+ MB; spooled to a file, a few MB.
    assert grown < 40_000_000, f"resident memory grew by {grown / 1e6:.0f} MB"


def test_an_import_over_the_limit_is_a_413_even_when_streamed(client, tenant, conveyor):
    limit = conveyor.settings.max_import_bytes

    def body():
        yield b"email\n"
        for _ in range(limit // 1_000_000 + 1):
            yield b"a@example.com\n" * 71_429

    r = client.post("/contacts/import", headers={**tenant.admin, "Content-Type": "text/csv"},
                    content=body())
    assert r.status_code == 413, r.text


def test_a_template_part_over_the_size_limit_is_refused_naming_it(client, tenant, conveyor):
    limit = conveyor.settings.max_template_bytes
    body = "<p>{{ contact.first_name }}</p>" * (limit // 30 + 1)
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "big", "channel": "email", "content": {"subject": "Hi", "html": body}})
    assert_problem(r, 422, "content.html", f"at most {limit} bytes")
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "big", "channel": "webhook", "content": {"body": "{}", "headers": {"X-A": body}}})
    assert_problem(r, 422, "content.headers.X-A", f"at most {limit} bytes")
    assert client.get("/templates/big", headers=tenant.admin).status_code == 404
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "big", "channel": "email", "content": {"subject": "Hi", "html": body[:limit]}})
    assert r.status_code == 200, r.text


def test_an_inbound_hook_body_nested_too_deep_is_refused_and_stores_nothing(conveyor, tenant):
    from conveyor.domain.errors import InvalidInput

    body: dict = {"email": "deep@example.com"}
    inner = body
    for _ in range(40):
        inner["more"] = {}
        inner = inner["more"]
    with pytest.raises(InvalidInput) as caught:
        conveyor.ingest.hook(tenant.workspace, "welcome", body)
    assert caught.value.field.startswith("more.more") and "levels deep" in caught.value.detail
    with conveyor.store.read() as tx:
        assert tx.contacts.by_emails(tenant.workspace.id, ["deep@example.com"]) == []
