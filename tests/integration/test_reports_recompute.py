"""The rollups equal a plain recomputation from the raw event log (and the funnel from the raw
step log), on both databases, for seeded random histories folded in random batch sizes with
crashes (rolled-back passes) in between."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conveyor.domain.reports import AttributionModel, revenue_minor
from conveyor.services.log import LogConsumer
from conveyor.services.reports import LOG_CONSUMER

START = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
AUTOMATIONS = ["welcome", "cart", ""]
NODES = ["send-1", "send-2"]
TEMPLATES = [("hello", 1), ("hello", 2), ("promo", 1)]
AGENTS_MACHINE = ["apple", "google"]


class Crash(Exception):
    pass


def history(seed: int, model: AttributionModel) -> list[dict[str, Any]]:
    """Events as the system and clients record them: sends, deliveries, bounces, opens
    (some by machines), clicks (some by scanners), unsubscribes, complaints, runs, goals,
    conversions (some backdated by the client), and noise no report counts."""
    rnd = random.Random(seed)
    now = START
    events: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    next_message = 1

    def add(contact: int, name: str, props: dict[str, Any], kind: str = "system", at=None):
        events.append(
            {"contact_id": contact, "name": name, "properties": props, "kind": kind,
             "timestamp": at or now}
        )  # fmt: skip

    for _ in range(rnd.randint(150, 260)):
        now += timedelta(minutes=rnd.choice([1, 7, 45, 180, 600, 1500]))
        contact = rnd.randint(1, 6)
        roll = rnd.random()
        if roll < 0.25 or not messages:
            automation = rnd.choice(AUTOMATIONS)
            template, version = rnd.choice(TEMPLATES)
            channel = rnd.choice(["email", "email", "email", "sms"])
            props: dict[str, Any] = {
                "message": next_message,
                "channel": channel,
                "template": template,
                "template_version": version,
            }
            if automation:
                props |= {"automation": automation, "node": rnd.choice(NODES), "run": 1}
            messages.append({**props, "contact": contact})
            next_message += 1
            add(contact, f"{channel}.sent", props | {"to": "x"})
            continue
        m = rnd.choice(messages)
        base = {k: v for k, v in m.items() if k != "contact"}
        who, channel = m["contact"], m["channel"]
        if roll < 0.45:
            extra = {}
            if rnd.random() < 0.3:
                extra = {"proxy": rnd.choice(AGENTS_MACHINE)}
            elif rnd.random() < 0.2:
                extra = {"machine": "too_fast"}
            add(who, f"{channel}.opened", base | extra)
        elif roll < 0.6:
            extra = {"machine": "scanner_agent"} if rnd.random() < 0.25 else {}
            add(who, f"{channel}.clicked", base | {"url": "u", "link": 0} | extra)
        elif roll < 0.66:
            add(who, f"{channel}.delivered", base)
        elif roll < 0.7:
            add(who, "email.bounced", base | {"type": rnd.choice(["hard", "soft"])})
        elif roll < 0.72:
            add(who, "email.complained", base)
        elif roll < 0.75:
            add(who, "email.unsubscribed", base | {"list": None})
        elif roll < 0.77:
            add(contact, "sms.unsubscribed", {"from": "+1"})
        elif roll < 0.8:
            add(who, f"{channel}.failed", base | {"reason": "x"})
        elif roll < 0.87:
            automation = rnd.choice(AUTOMATIONS[:2])
            name = rnd.choice(["entered", "entered", "completed", "exited", "goal_reached"])
            props = {"automation": automation}
            if name == "goal_reached":
                props["goal"] = "bought"
            add(contact, f"automation.{name}", props)
        elif roll < 0.97:
            amount = rnd.choice([19.99, "42.50", 100, None, "n/a", True])
            key = rnd.choice(model.revenue_properties)
            back = timedelta(hours=rnd.choice([0, 0, 0, 5, 30]))
            add(who if rnd.random() < 0.8 else contact, model.event, {key: amount},
                kind="track", at=now - back)  # fmt: skip
        else:  # noise: a client's fake "system-looking" event, and an unrelated one
            add(contact, "email.opened", {"message": 1, "channel": "email"}, kind="track")
            add(contact, "page", {"path": "/"}, kind="page")
    return events


def recompute(events: list[Any], model: AttributionModel, zone: ZoneInfo) -> Counter:
    """Every figure, straight from the log, one metric at a time."""
    out: Counter = Counter()
    system = [e for e in events if e.kind == "system"]

    def day(e: Any) -> str:
        return e.timestamp.astimezone(zone).date().isoformat()

    def action(e: Any) -> str:
        return e.name.split(".", 1)[1]

    about: dict[int, list[Any]] = {}
    for e in system:
        if e.name.split(".")[0] in ("email", "sms") and "message" in e.properties:
            about.setdefault(e.properties["message"], []).append(e)

    def key(message_id: int) -> tuple[Any, ...]:
        p = about[message_id][0].properties
        return (p.get("automation", ""), p.get("node", ""), p.get("template", ""),
                p.get("template_version", 0), p.get("channel", ""), "")  # fmt: skip

    def human(e: Any) -> bool:
        return not (e.properties.get("machine") or e.properties.get("proxy"))

    plain = {"sent": "sent", "failed": "failed", "delivered": "delivered",
             "complained": "complained", "unsubscribed": "unsubscribed"}  # fmt: skip
    for message_id, those in about.items():
        k = key(message_id)
        for e in those:
            a = action(e)
            if a in plain:
                out[(day(e), *k, plain[a])] += 1
            if a == "bounced":
                out[(day(e), *k, f"bounced_{e.properties['type']}")] += 1
            for verb, total, machine in (("opened", "opens", "opens_machine"),
                                         ("clicked", "clicks", "clicks_bot")):  # fmt: skip
                if a == verb:
                    out[(day(e), *k, total if human(e) else machine)] += 1
        for verb, unique in (("opened", "opens_unique"), ("clicked", "clicks_unique")):
            firsts = [e for e in those if action(e) == verb and human(e)]
            if firsts:
                out[(day(firsts[0]), *k, unique)] += 1
            anyone = [e for e in those if action(e) == verb]
            if anyone:
                out[(day(anyone[0]), *k, f"{unique}_any")] += 1
    for e in system:
        if e.name == "sms.unsubscribed":
            out[(day(e), "", "", "", 0, "sms", "", "unsubscribed")] += 1
        if e.name.startswith("automation."):
            node = e.properties.get("goal", "") if action(e) == "goal_reached" else ""
            out[(day(e), e.properties["automation"], node, "", 0, "", "", action(e))] += 1
    # Attribution: the last human click within the click window, else the last human open or
    # send within the open window, among what the log held before the conversion.
    for c in events:
        if c.name != model.event:
            continue
        amount = revenue_minor(c.properties, model)
        none = (day(c), "", "", "", 0, "", "")
        out[(*none, "conversions_all")] += 1
        out[(*none, "revenue_all")] += amount
        clicks, views = [], []
        for message_id, those in about.items():
            before = [e for e in those if e.id < c.id]
            if not before or about[message_id][0].contact_id != c.contact_id:
                continue
            last_click = max((e.timestamp for e in before if action(e) == "clicked" and human(e)),
                             default=None)  # fmt: skip
            last_open = max((e.timestamp for e in before if action(e) == "opened" and human(e)),
                            default=None)  # fmt: skip
            sent = [e.timestamp for e in before if action(e) == "sent"]
            if (
                last_click
                and c.timestamp - timedelta(days=model.click_days) <= last_click <= c.timestamp
            ):
                clicks.append((last_click, message_id))
            for moment in (last_open, sent[-1] if sent else None):
                if (
                    moment
                    and c.timestamp - timedelta(days=model.open_days) <= moment <= c.timestamp
                ):
                    views.append((moment, message_id))
        credited = max(clicks)[1] if clicks else (max(views)[1] if views else None)
        if credited is not None:
            out[(day(c), *key(credited), "conversions")] += 1
            out[(day(c), *key(credited), "revenue")] += amount
    return +out  # zero counts are no rows


def as_logged(rows: list[dict], workspace_id: int) -> list[dict]:
    """Generated history rows as the event log stores them (received when they happened)."""
    return [
        {**r, "workspace_id": workspace_id, "context": None, "message_id": None,
         "received_at": r["timestamp"]}
        for r in rows
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_recompute_from_the_log_through_crashes(conveyor, clock, seed):
    rnd = random.Random(seed * 7919)
    settings: dict[str, Any] = {"timezone": "America/New_York"}
    if seed == 2:
        settings["attribution"] = {"event": "purchase", "revenue_properties": ["value"],
                                   "click_days": 2, "open_days": 0}  # fmt: skip
    workspace, _ = conveyor.workspaces.create("shop", settings)
    workspace = conveyor.workspaces.get("shop")
    from conveyor.domain.reports import attribution_model

    model = attribution_model(workspace.settings)
    rows = history(seed, model)
    store = conveyor.store
    with store.write() as tx:
        tx.events.append(as_logged(rows, workspace.id))
    crashes = passes = 0

    def crashy(tx, ctx, events, now):
        nonlocal crashes, passes
        passes += 1
        if passes % 3 == 1 or rnd.random() < 0.2:
            crashes += 1
            raise Crash  # after the reports consumer wrote: the pass rolls back as a whole

    consumer = LogConsumer(
        store, clock,
        [(LOG_CONSUMER, conveyor.reports.on_events), ("test-crash", crashy)],
    )  # fmt: skip
    while True:
        try:
            if not consumer.process(limit=rnd.choice([1, 3, 17, 64])):
                break
        except Crash:
            continue
    assert crashes > 0
    with store.read() as tx:
        kept = tx.reports.all_rows(workspace.id)
        events = tx.events.page(workspace.id, limit=100_000, newest_first=False)
    expected = recompute(events, model, ZoneInfo("America/New_York"))
    got = {k: v for k, v in kept.items() if v}
    assert got == dict(expected)
    assert any(k[-1] == "conversions" for k in got)  # attribution happened in the history
    assert any(k[-1] == "opens_machine" for k in got)
    # The overview's coarser rollup holds the same sums per day, automation, channel, metric.
    coarse: Counter = Counter()
    for (day, automation, _n, _t, _v, channel, _c, metric), value in expected.items():
        coarse[(day, automation, channel, metric)] += value
    totals: Counter = Counter()
    for (day, *_dims, metric), value in expected.items():
        totals[(day, metric)] += value
    with store.read() as tx:
        overview = tx.reports.overview_rows(workspace.id)
        series = tx.reports.totals_rows(workspace.id)
    assert {k: v for k, v in overview.items() if v} == dict(+coarse)
    assert {k: v for k, v in series.items() if v} == dict(+totals)


FLOW_NODES = ["pause", "send", "check", "bought"]


def step_history(seed: int, automation_ids: list[int], contacts: int) -> list[dict[str, Any]]:
    """Steps as the engine logs them, runs interleaved: nodes reached in any order and again
    (loops, waits logged twice), goals at the goal node (some runs reach several), skipped
    entries (no run), over days that differ between UTC and the workspace's timezone."""
    rnd = random.Random(seed)
    planned: list[tuple[datetime, int, dict[str, Any]]] = []
    for run in range(1, rnd.randint(60, 120)):
        automation_id = rnd.choice(automation_ids)
        contact = rnd.randint(1, contacts)
        at = START + timedelta(minutes=rnd.randint(0, 60 * 24 * 12))
        for _ in range(rnd.randint(1, 7)):
            node = rnd.choice(FLOW_NODES)
            outcome = "goal_reached" if node == "bought" else rnd.choice(["waited", "queued"])
            planned.append((at, run, {"run_id": run, "contact_id": contact,
                                      "automation_id": automation_id, "node": node,
                                      "outcome": outcome}))  # fmt: skip
            at += timedelta(minutes=rnd.choice([0, 5, 90, 600, 2000]))
    for _ in range(10):  # skipped entries: no run, never in the funnel
        at = START + timedelta(minutes=rnd.randint(0, 60 * 24 * 12))
        planned.append((at, 0, {"run_id": None, "contact_id": 1,
                                "automation_id": automation_ids[0], "node": "pause",
                                "outcome": "entry_skipped"}))  # fmt: skip
    planned.sort(key=lambda p: (p[0], p[1]))
    return [{**row, "at": at, "version": 1, "reason": None} for at, _, row in planned]


def recompute_funnel(rows: list[Any], keys: dict[int, str], zone: ZoneInfo) -> Counter:
    """Per (automation, day, node): runs whose first step at the node was that day, and of
    those the runs with a goal step at or after it, straight from the step log."""
    out: Counter = Counter()
    by_run: dict[int, list[Any]] = {}
    for s in rows:
        if s.run_id is not None:
            by_run.setdefault(s.run_id, []).append(s)
    for those in by_run.values():
        goals = [s.id for s in those if s.outcome == "goal_reached"]
        for node in {s.node for s in those}:
            first = min((s for s in those if s.node == node), key=lambda s: s.id)
            key = (keys[first.automation_id], first.at.astimezone(zone).date().isoformat(), node)
            out[(*key, "reached")] += 1
            if any(g >= first.id for g in goals):
                out[(*key, "converted")] += 1
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_the_funnel_rollup_equals_a_recompute_from_the_step_log_through_crashes(
    conveyor, clock, seed
):
    rnd = random.Random(seed * 104729)
    workspace, _ = conveyor.workspaces.create("shop", {"timezone": "America/New_York"})
    keys = {}
    for key in ("welcome", "cart"):
        conveyor.automations.apply(workspace, {
            "key": key, "triggers": [{"event": f"signal_{key}"}],
            "nodes": [{"id": "pause", "type": "wait", "for": "1 hour"},
                      {"id": "bought", "type": "goal", "condition": {"event": "order_completed"}}],
        })  # fmt: skip
    store = conveyor.store
    with store.read() as tx:
        for key in ("welcome", "cart"):
            keys[tx.automations.by_key(workspace.id, key).id] = key
    planned = step_history(seed, sorted(keys), contacts=5)
    crashes = 0
    # Steps arrive while the fold runs: in a few slices, each folded before the next lands.
    cuts = sorted(rnd.sample(range(1, len(planned)), 3))
    for part in (planned[a:b] for a, b in zip([0, *cuts], [*cuts, len(planned)], strict=True)):
        with store.write() as tx:
            tx.automations.add_steps([{**r, "workspace_id": workspace.id} for r in part])
        while True:
            limit = rnd.choice([1, 2, 5, 13, 100])
            if rnd.random() < 0.3:

                def crashy(tx, limit=limit):
                    after = tx.reports.steps_position()
                    assert after is not None
                    tx.reports.fold_steps(after, tx.steps_high_water(), limit)
                    raise Crash  # after the fold wrote: the pass rolls back as a whole

                try:
                    store.transact(crashy, follow_log=True)
                except Crash:
                    crashes += 1
                continue
            if not conveyor.reports.fold_steps(limit):
                break
    assert crashes > 0
    with store.read() as tx:
        kept = tx.reports.funnel_rows(workspace.id)
        logged = tx.reports.logged_steps(workspace.id)
    expected = recompute_funnel(logged, keys, ZoneInfo("America/New_York"))
    assert {k: v for k, v in kept.items() if v} == dict(+expected)
    assert any(k[-1] == "converted" for k in expected)
    # The report reads it back: a range's sums, per node.
    report = conveyor.reports.automation(
        conveyor.workspaces.get("shop"),
        "welcome",
        START.date() - timedelta(days=1),
        START.date() + timedelta(days=20),
    )
    reached: Counter = Counter()
    for (automation, _day, node, metric), value in expected.items():
        if automation == "welcome" and metric == "reached":
            reached[node] += value
    assert {n["node"]: n["reached"] for n in report["nodes"] if n["reached"]} == dict(reached)


def test_the_migration_backfills_the_funnel_and_the_overview_from_what_is_there(
    conveyor, clock, database_url
):
    """A workspace upgraded to 0021_reports with history already folded: the new rollups are
    filled from the step log and report_daily, equal to the recomputation."""
    from alembic import command

    from conveyor.store import migrate
    from conveyor.store.database import make_engine

    workspace, _ = conveyor.workspaces.create("shop", {"timezone": "America/New_York"})
    conveyor.automations.apply(workspace, {
        "key": "welcome", "triggers": [{"event": "signal"}],
        "nodes": [{"id": "pause", "type": "wait", "for": "1 hour"}],
    })  # fmt: skip
    store = conveyor.store
    with store.read() as tx:
        keys = {tx.automations.by_key(workspace.id, "welcome").id: "welcome"}
    model = AttributionModel("order_completed", ("revenue", "total"), 5, 1)
    with store.write() as tx:
        tx.events.append(as_logged(history(5, model), workspace.id))
        tx.automations.add_steps(
            [{**r, "workspace_id": workspace.id} for r in step_history(5, list(keys), 4)]
        )
    consumer = LogConsumer(store, clock, [(LOG_CONSUMER, conveyor.reports.on_events)])
    while consumer.process(100):
        pass
    engine = make_engine(database_url)
    try:
        config = migrate.alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0020_builder")
    finally:
        migrate.upgrade(engine)  # back to head: 0021 backfills (and the database stays usable)
        engine.dispose()
    with store.read() as tx:
        daily = tx.reports.all_rows(workspace.id)
        overview = tx.reports.overview_rows(workspace.id)
        funnel = tx.reports.funnel_rows(workspace.id)
        logged = tx.reports.logged_steps(workspace.id)
    coarse: Counter = Counter()
    for (day, automation, _n, _t, _v, channel, _c, metric), value in daily.items():
        coarse[(day, automation, channel, metric)] += value
    assert overview == dict(coarse) and overview
    totals: Counter = Counter()
    for (day, *_dims, metric), value in daily.items():
        totals[(day, metric)] += value
    with store.read() as tx:
        assert tx.reports.totals_rows(workspace.id) == dict(totals)
    expected = recompute_funnel(logged, keys, ZoneInfo("America/New_York"))
    assert {k: v for k, v in funnel.items() if v} == dict(+expected) and expected
    assert not conveyor.reports.fold_steps()  # the position is at the end of the step log
