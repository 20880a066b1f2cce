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
