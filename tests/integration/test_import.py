"""CSV import over the API: good rows in, bad rows by line, the same file twice changes nothing."""

from __future__ import annotations

import pytest

from conveyor.services.imports import GROWN_TABLES

CSV = """Email,First Name,Last Name,Plan,Tags,Phone
ada@example.com,Ada,Lovelace,pro,math;poetry,+44 20 7946 0958
grace@example.com,Grace,Hopper,free,navy,
not-an-email,Bad,Row,free,,
"linus@example.com","Linus, Jr.",Torvalds,team,,
margaret@example.com,Margaret,Hamilton,gold,,

alan@example.com,Alan,Turing,,,12
"""


def post_csv(client, tenant, text, **params):
    return client.post(
        "/contacts/import",
        headers={**tenant.admin, "Content-Type": "text/csv"},
        content=text.encode(),
        params=params,
    )


def test_import_reports_bad_rows_by_line_and_is_idempotent(client, tenant):
    client.post(
        "/fields",
        headers=tenant.admin,
        json={"key": "plan", "type": "choice", "choices": ["free", "pro", "team"]},
    )
    r = post_csv(client, tenant, CSV, list="newsletter")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["rows"], report["created"], report["failed"]) == (6, 3, 3)
    assert report["list_created"] is True
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (4, "email"),
        (6, "plan"),
        (8, "phone"),
    ]
    ada = client.get(
        "/contacts/lookup", headers=tenant.admin, params={"email": "ada@example.com"}
    ).json()
    assert ada["first_name"] == "Ada" and ada["fields"] == {"plan": "pro"}
    assert ada["tags"] == ["math", "poetry"] and ada["lists"] == {"newsletter": "subscribed"}
    assert ada["phone"] == "+442079460958"
    linus = client.get(
        "/contacts/lookup", headers=tenant.admin, params={"email": "linus@example.com"}
    ).json()
    assert linus["first_name"] == "Linus, Jr."
    events_before = client.get("/events", headers=tenant.admin, params={"limit": 500}).json()[
        "items"
    ]

    again = post_csv(client, tenant, CSV, list="newsletter").json()
    assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (0, 0, 3, 3)
    assert again["list_created"] is False
    events_after = client.get("/events", headers=tenant.admin, params={"limit": 500}).json()[
        "items"
    ]
    assert events_after == events_before


def test_import_updates_existing_contacts_and_empty_cells_keep_values(client, tenant):
    client.post(
        "/contacts",
        headers=tenant.admin,
        json={"email": "ada@example.com", "first_name": "Augusta", "last_name": "King"},
    )
    text = "email,first_name,last_name\nADA@example.com,Ada,\n"
    report = post_csv(client, tenant, text).json()
    assert (report["created"], report["updated"]) == (0, 1)
    ada = client.get(
        "/contacts/lookup", headers=tenant.admin, params={"email": "ada@example.com"}
    ).json()
    assert (ada["first_name"], ada["last_name"]) == ("Ada", "King")


def test_column_mapping_and_its_errors(client, tenant):
    text = "E-Mail Address,Vorname,Kundennummer,Ignored\nada@example.com,Ada,K-1,x\n"
    r = post_csv(
        client,
        tenant,
        text,
        map=["E-Mail Address=email", "Vorname=first_name", "Kundennummer=external_id"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1 and r.json()["ignored_columns"] == ["Ignored"]
    assert (
        client.get("/contacts/lookup", headers=tenant.admin, params={"external_id": "K-1"}).json()[
            "first_name"
        ]
        == "Ada"
    )
    r = post_csv(client, tenant, text, map=["Nope=email"])
    assert r.status_code == 422 and "Nope" in r.json()["detail"]
    r = post_csv(client, tenant, text, map=["Vorname=favourite_colour"])
    assert r.status_code == 422 and r.json()["field"] == "map"
    r = post_csv(client, tenant, "first_name\nAda\n")
    assert r.status_code == 422 and "email" in r.json()["detail"]
    assert post_csv(client, tenant, "").status_code == 422


def last_analyzed(conveyor) -> dict[str, object]:
    with conveyor.store.db.peek_connection() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        rows = conn.exec_driver_sql(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = ANY(%(t)s)",
            {"t": list(GROWN_TABLES)},
        ).all()
    return dict(rows)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_large_import_leaves_the_planner_fresh_statistics(conveyor):
    """An import that writes 1,000 contacts or more has PostgreSQL analyse the tables it grew at
    once (Store.refresh_statistics), as its docs advise after a bulk load: a segment saved the
    next minute is planned on the new rows, not on the empty table's statistics. A smaller one
    leaves it to autovacuum. (SQLite gathers no statistics unless told to.)"""
    workspace, _ = conveyor.workspaces.create("bulky")
    conveyor.catalog.create_list(workspace, "news")

    def rows(start: int, count: int):
        yield "email,tags\n"
        for i in range(start, start + count):
            yield f"p{i}@example.com,crowd\n"

    before = last_analyzed(conveyor)
    small = conveyor.imports.run(workspace, rows(0, 999), list_key="news")
    assert small.created == 999
    assert last_analyzed(conveyor) == before
    large = conveyor.imports.run(workspace, rows(999, 1_000), list_key="news")
    assert large.created == 1_000
    after = last_analyzed(conveyor)
    assert set(after) == set(GROWN_TABLES)
    for table in GROWN_TABLES:
        assert after[table] is not None and (
            before.get(table) is None or after[table] > before[table]
        ), table


def test_statistics_are_refreshed_for_known_tables_only(conveyor):
    with pytest.raises(ValueError, match="no table contact"):
        conveyor.store.refresh_statistics("contacts", "contact")
    conveyor.store.refresh_statistics("contacts")  # PostgreSQL: ANALYZE; SQLite: nothing to do
