"""Reports end to end: the abandoned-cart automation sends through a real SMTP server, opens
and clicks arrive over HTTP (a privacy proxy's and a link scanner's among them), orders come in
as tracking calls, and the reports answer over HTTP as JSON and CSV, on both databases."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.integration.test_channel_scenarios import apply, links_in, local, mail, smtp  # noqa: F401
from tests.support.flows import settle

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link protection)"
GOOGLE_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


def track(client, tenant, user, event, **props):
    r = client.post("/v1/track", headers=tenant.write,
                    json={"userId": user, "event": event, "properties": props})  # fmt: skip
    assert r.status_code == 200, r.text


@pytest.fixture
def shop(client, server, tenant, conveyor, clock, mail):  # noqa: F811
    """Three carts left; an hour later three reminders. Ada opens (a proxy fetched the pixel
    first), clicks and orders 40; a scanner clicks Bob's link and Bob orders 25 without
    clicking; Cara does nothing and gets the second reminder."""
    apply(client, tenant, "abandoned-cart")
    for user in ("ada", "bob", "cara"):
        client.post("/v1/identify", headers=tenant.write,
                    json={"userId": user, "traits": {"email": f"{user}@example.com"}})  # fmt: skip
        track(client, tenant, user, "cart_updated", total=10)
    settle(conveyor)
    clock.advance(timedelta(hours=1, minutes=1))
    settle(conveyor)
    ada_html = mail.to("ada@example.com")[0].part("html")
    bob_html = mail.to("bob@example.com")[0].part("html")
    scanned = next(u for u in links_in(bob_html) if "/t/c/" in u)
    client.get(local(scanned, server), headers={"User-Agent": SCANNER})  # at once, a scanner
    clock.advance(timedelta(minutes=20))
    pixel = next(u for u in links_in(ada_html.replace("src=", "href=")) if "/t/o/" in u)
    client.get(local(pixel, server), headers={"User-Agent": GOOGLE_PROXY})
    client.get(local(pixel, server), headers={"User-Agent": BROWSER})
    client.get(local(pixel, server), headers={"User-Agent": BROWSER})
    clicked = next(u for u in links_in(ada_html) if "/t/c/" in u)
    assert client.get(local(clicked, server), headers={"User-Agent": BROWSER}).status_code == 302
    track(client, tenant, "ada", "order_completed", total=40)
    clock.advance(timedelta(hours=2))
    track(client, tenant, "bob", "order_completed", revenue="25.50")
    settle(conveyor)
    clock.advance(timedelta(days=1))
    settle(conveyor)
    assert len(mail.to("cara@example.com")) == 2
    return clock.now().date()


def test_automation_report_counts_people_apart_from_machines(client, tenant, shop):
    day = shop.isoformat()
    start = (shop - timedelta(days=2)).isoformat()
    r = client.get("/reports/automations/abandoned-cart", headers=tenant.admin,
                   params={"from": start, "to": day})  # fmt: skip
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["attribution"]["event"] == "order_completed"
    assert report["attribution"]["name"].startswith("last click within 5 days")
    t = report["totals"]
    assert (t["entered"], t["goal_reached"], t["completed"]) == (3, 2, 3)
    assert t["sent"] == 4  # three first reminders, Cara's second
    assert (t["opens"], t["opens_unique"], t["opens_machine"]) == (2, 1, 1)
    assert (t["clicks"], t["clicks_unique"], t["clicks_bot"]) == (1, 1, 1)
    assert (t["conversions"], t["revenue"]) == (2, 65.5)  # Ada by her click, Bob by receipt
    assert t["conversions_with_goals"] == 4
    assert t["open_rate"] == 0.25 and t["click_rate"] == 0.25 and t["click_to_open_rate"] == 1.0
    nodes = {n["node"]: n for n in report["nodes"]}
    assert [n["node"] for n in report["nodes"]] == [
        "wait-for-order", "ordered", "reminder", "one-day", "second-reminder"]  # breadth first
    assert nodes["reminder"]["sent"] == 3 and nodes["reminder"]["conversions"] == 2
    assert nodes["second-reminder"]["sent"] == 1
    assert nodes["ordered"]["goal_reached"] == 2
    funnel = {f["node"]: (f["reached"], f["converted_after"]) for f in report["funnel"]}
    assert funnel["wait-for-order"] == (3, 2)
    assert funnel["reminder"] == (3, 2)  # they ordered after the reminder
    assert funnel["one-day"] == (3, 2)  # while waiting there: the goal pulled them out
    assert funnel["ordered"] == (2, 2)
    assert funnel["second-reminder"] == (1, 0)
    with_machines = client.get("/reports/automations/abandoned-cart", headers=tenant.admin,
                               params={"from": start, "to": day, "machine": "true"}).json()  # fmt: skip
    assert with_machines["totals"]["open_rate"] == 0.25  # Ada's one message either way
    assert with_machines["totals"]["click_rate"] == 0.5  # Bob's scanned link counts too


def test_overview_template_and_csv(client, tenant, shop):
    params = {"from": (shop - timedelta(days=2)).isoformat(), "to": shop.isoformat()}
    overview = client.get("/reports/overview", headers=tenant.admin, params=params).json()
    assert overview["totals"]["conversions_all"] == 2
    assert overview["totals"]["revenue_all"] == 65.5
    assert overview["totals"]["unattributed_conversions"] == 0
    assert [c["channel"] for c in overview["channels"]] == ["email"]
    assert [a["automation"] for a in overview["automations"]] == ["abandoned-cart"]
    template = client.get("/reports/templates/cart-reminder-1", headers=tenant.admin,
                          params=params).json()  # fmt: skip
    assert [(v["version"], v["sent"], v["conversions"]) for v in template["versions"]] == [
        (1, 3, 2)]
    r = client.get("/reports/automations/abandoned-cart", headers={**tenant.admin,
                   "Accept": "text/csv"}, params={**params, "table": "nodes"})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-attribution-model"].startswith("last click")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["node"] for row in rows][:3] == ["wait-for-order", "ordered", "reminder"]
    assert rows[2]["sent"] == "3"
    weekly = client.get("/reports/overview", headers=tenant.admin,
                        params={**params, "granularity": "week", "format": "csv"})  # fmt: skip
    series = list(csv.DictReader(io.StringIO(weekly.text)))
    assert sum(int(row["sent"]) for row in series) == 4
    assert all(row["period"] <= params["to"] for row in series)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "hour"}, "granularity"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"format": "xml"}, "format"),
        ({"format": "csv", "table": "secrets"}, "table"),
        ({"from": "0001-01-01", "to": "0001-01-05"}, "from"),  # no overflow at the edges
        ({"to": "9999-12-31", "granularity": "month"}, "to"),
    ],
)
def test_bad_ranges_are_problems_naming_the_field(client, tenant, params, field):
    r = client.get("/reports/overview", headers=tenant.admin, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in r.text


def test_attribution_settings_change_what_counts(client, tenant, conveyor, clock):
    r = client.patch("/workspace/settings", headers=tenant.admin,
                     json={"attribution": {"click_days": 500}})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "attribution.click_days"
    r = client.patch("/workspace/settings", headers=tenant.admin,
                     json={"attribution": {"event": "purchase", "revenue_properties": ["value"],
                                           "open_days": 0}})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["attribution"]["event"] == "purchase"
    track(client, tenant, "zed", "purchase", value=12, revenue=99)
    track(client, tenant, "zed", "order_completed", revenue=1000)  # no longer a conversion
    conveyor.engine.run_until_idle()
    report = client.get("/reports/overview", headers=tenant.admin).json()
    assert report["attribution"]["event"] == "purchase"
    assert report["attribution"]["name"].endswith("within 0 days")
    assert (report["totals"]["conversions_all"], report["totals"]["revenue_all"]) == (1, 12.0)
    assert report["totals"]["unattributed_conversions"] == 1
    r = client.get("/reports/automations/nope", headers=tenant.admin)
    assert r.status_code == 404
