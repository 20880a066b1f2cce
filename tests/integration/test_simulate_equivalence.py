"""Simulation equals live, exactly: generated contacts, event streams, automations and send
policies run live (engine and delivery to a real SMTP sink, on the simulated clock, hour by
hour), then are simulated from the log; both give the same entries, steps with their reasons,
messages, and send-policy decisions. On both databases.

Durations are whole hours and the live loop moves hour by hour, so every timer and deferral falls
on a moment the live loop visits: the live side is then a worker that never falls behind, which
is what the simulation models.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.services.simulate import Scope
from tests.integration.conftest import make_tenant
from tests.support.flows import activate, settle
from tests.support.simulation import (
    live_entries,
    live_messages,
    live_paths,
    simulated_messages,
    simulated_paths,
)
from tests.support.smtp import SmtpSink

HOURS = 48
USERS = ("ada", "bob", "cy")
EVENTS = ("a", "b", "c")
TEMPLATES = ("t1", "t2", "t3")
_names = itertools.count()

hours = st.integers(1, 30).map(lambda n: f"{n} hours")


@st.composite
def node_specs(draw, i):
    kind = draw(st.sampled_from(["wait", "send", "send", "tag", "if", "wait_until", "goal"]))
    nid = f"n{i}"
    if kind == "wait":
        return {"id": nid, "type": "wait", "for": draw(hours)}
    if kind == "send":
        return {
            "id": nid,
            "type": "send_email",
            "template": draw(st.sampled_from(TEMPLATES)),
            **draw(st.sampled_from([{}, {"on_cap": "skip"}])),
        }
    if kind == "tag":
        return {
            "id": nid,
            "type": draw(st.sampled_from(["add_tag", "remove_tag"])),
            "tag": draw(st.sampled_from(["x", "y"])),
        }
    if kind == "if":
        cond = draw(
            st.sampled_from([{"event": "b"}, {"tag": "x"}, {"event": "c", "within": "since_entry"}])
        )
        return {
            "id": nid,
            "type": "if",
            "condition": cond,
            "then": "NEXT",
            "else": draw(st.sampled_from(["NEXT", "end"])),
        }
    if kind == "wait_until":
        return {
            "id": nid,
            "type": "wait_until",
            "timeout": draw(hours),
            "condition": {"event": draw(st.sampled_from(EVENTS)), "within": "since_entry"},
        }
    return {
        "id": nid,
        "type": "goal",
        "condition": draw(st.sampled_from([{"tag": "y"}, {"event": "b"}, {"event": "c"}])),
        "otherwise": draw(st.sampled_from(["continue", "wait", "end"])),
    }


@st.composite
def automations(draw, key):
    count = draw(st.integers(1, 4))
    # A send first, so that caps have something to hold back from the start.
    first = {
        "id": "hello",
        "type": "send_email",
        "template": draw(st.sampled_from(TEMPLATES)),
        **draw(st.sampled_from([{}, {"on_cap": "skip"}])),
    }
    nodes = [first] + [draw(node_specs(i)) for i in range(count - 1)]
    for i, node in enumerate(nodes):
        for field in ("then", "else"):
            if node.get(field) == "NEXT":
                node[field] = nodes[i + 1]["id"] if i + 1 < count else "end"
    trigger = draw(st.sampled_from([{"event": e} for e in EVENTS] + [{"tag_added": "x"}]))
    repeat = draw(
        st.sampled_from(
            [{"repeat": "once"}, {"repeat": "every_time"}, {"repeat": "after", "after": "10 hours"}]
        )
    )
    return {"key": key, "triggers": [trigger], "entry": repeat, "nodes": nodes}


worlds = st.fixed_dictionaries(
    {
        "automations": st.integers(1, 3).flatmap(
            lambda n: st.tuples(*[automations(f"auto-{i}") for i in range(n)])
        ),
        "cap": st.sampled_from([16, 4, None]),
        "events": st.lists(
            st.tuples(st.integers(0, HOURS - 20), st.sampled_from(USERS), st.sampled_from(EVENTS)),
            min_size=3,
            max_size=14,
        ),
    }
)


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds)
def test_simulating_from_the_log_equals_running_live(world, conveyor, client, clock, smtp):
    tenant = make_tenant(conveyor, f"eq-{next(_names)}")
    admin = tenant.admin
    r = client.put(
        "/channels/email",
        headers=admin,
        json={"from": "Shop <news@acme-shop.com>", "smtp_url": smtp.url},
    )
    assert r.status_code == 200, r.text
    if world["cap"]:
        r = client.put(
            "/send-policy",
            headers=admin,
            json={"caps": {"email": [{"max": 1, "per": f"{world['cap']} hours"}]}},
        )
        assert r.status_code == 200, r.text
    for key in TEMPLATES:
        r = client.post(
            "/templates",
            headers=admin,
            json={"key": key, "channel": "email", "content": {"subject": key, "text": key}},
        )
        assert r.status_code == 200, r.text
    ids = []
    for user in USERS:
        r = client.post(
            "/contacts", headers=admin, json={"external_id": user, "email": f"{user}@example.com"}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for definition in world["automations"]:
        activate(client, tenant, definition)
    # Whole hours from here on; the period starts before the first event.
    clock.advance(
        timedelta(hours=1) - (clock.now() - clock.now().replace(minute=0, second=0, microsecond=0))
    )
    start = clock.now()
    for hour in range(HOURS):
        for at, user, name in world["events"]:
            if at == hour:
                r = client.post(
                    "/v1/track",
                    headers=tenant.write,
                    json={"userId": user, "event": name}
                    if name != "c" or user != "cy"
                    else {"userId": user, "event": "tagging"},
                )
                assert r.status_code == 200, r.text
                if name == "c" and user == "cy":  # a data change the log records, mid-period
                    client.post(f"/contacts/{ids[2]}/tags", headers=admin, json={"tags": ["x"]})
        settle(conveyor)
        clock.advance(timedelta(hours=1))
    report = conveyor.simulator.backtest(
        tenant.workspace, Scope(with_active=True, watch=None), start, clock.now()
    )
    ws = tenant.workspace.id
    assert simulated_paths(report, ids) == live_paths(conveyor, ws, ids)
    assert simulated_messages(report, ids) == live_messages(conveyor, ws, ids)
    assert {c: report.entries.get(c, []) for c in ids} == live_entries(conveyor, ws, ids)
