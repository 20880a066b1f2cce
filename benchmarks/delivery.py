"""Delivery benchmark: emails/s rendered and sent over SMTP, and webhook calls/s, end to end.

Per dialect, on a fresh database, in a fresh (spawned) process so that its RSS is the sender's
alone: a workspace, N contacts (identify calls: email, names, a declared `plan` field), an HTML
email template (a style block, personalisation, a loop over the trigger's items, six tracked links)
and two active automations, one `send_email` node each triggered by a tracked `bench_mail`
event, one `webhook` node (with a JSON body template) triggered by `bench_hook`. The outbox
rows come from the engine: the events are ingested and `Engine.run_until_idle` writes one row
per contact, untimed. Timed is only `Delivery.run_until_idle`: claim under a lease, prepare
(load contacts and templates; render: Liquid, CSS inlining, text part, tracked links, MIME),
send concurrently, record outcomes and events (as sends finish, in a thread, so recording
overlaps sending and is shown inside it). The split comes from timing wrappers around
`Delivery`'s own steps in this process (nothing in src/ is changed); "other" is what is left
(opening the read transaction, round bookkeeping).

The peers run in their own processes, so they do not share the sender's GIL: an aiosmtpd sink
that counts what it receives (and keeps the first message, checked for personalisation, tracked
links and a text part), and a uvicorn server that counts webhook calls. Both counts must equal
N. The delivery service refuses loopback webhook URLs, so `webhook_allow` names 127.0.0.1/32.

    .venv/bin/python benchmarks/delivery.py [--messages 5000] [--dialect sqlite|postgresql|both]
        [--batch 200] [--connections 8] [--webhooks N] [--profile DIR]

Then the same number of emails again with a send policy on (two caps and a send window that
every message passes), to measure what checking the policy costs (target: < 20 % slower).

`--batch` is `Settings.delivery_batch` (messages per round), `--connections` the SMTP URL's
`max_connections`; `--profile DIR` writes a cProfile of each timed phase to DIR.
Databases: a temp-dir SQLite file, or `conveyor_bench_delivery_<pid>` on 127.0.0.1:5432
(dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import email
import email.policy
import multiprocessing
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from common import database, dialects, free_port, log, machine, print_table, rss_mb
from sqlalchemy import func, select

import conveyor.services.delivery as delivery_module
from conveyor.bootstrap import Conveyor, bootstrap
from conveyor.settings import Settings
from conveyor.store.schema import outbox

SENDER = "Acme Shop <news@acme-shop.example>"
HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ workspace.name }}</title>
<style>
  body { margin: 0; background: #f4f4f7; font-family: Helvetica, Arial, sans-serif; }
  .wrap { max-width: 600px; margin: 0 auto; background: #ffffff; }
  h1 { font-size: 24px; color: #1a1a2e; padding: 24px 24px 0; }
  p { font-size: 15px; line-height: 1.5; color: #333333; padding: 0 24px; }
  .item { border-top: 1px solid #eeeeee; padding: 12px 24px; }
  .item a { color: #0b6efd; text-decoration: none; font-weight: bold; }
  .cta { display: inline-block; background: #0b6efd; color: #ffffff; padding: 12px 20px;
         border-radius: 4px; text-decoration: none; }
  .footer { font-size: 11px; color: #888888; padding: 24px; }
</style></head>
<body><div class="wrap">
  <h1>Hi {{ contact.first_name | default: 'there' }}, your {{ contact.plan | default: 'free' }}
    plan has new picks</h1>
  <p>Thanks for shopping with {{ workspace.name }}, {{ contact.name }}. Based on what you
    looked at last week, we think you will like these:</p>
  {% for item in event.items %}
  <div class="item"><a href="https://shop.example/p/{{ item.sku }}?utm_source=email">
    {{ item.name }}</a> &mdash; {{ item.price }} EUR</div>
  {% endfor %}
  <p><a class="cta" href="https://shop.example/picks?plan={{ contact.plan | url_encode }}">
    See all picks</a></p>
  <p>Questions? <a href="https://help.shop.example/">Our help centre</a> answers in minutes.</p>
  <div class="footer">You receive this because you signed up at shop.example as
    {{ contact.email }}. <a href="{{ unsubscribe_url }}">Unsubscribe</a> &middot;
    <a href="https://shop.example/privacy">Privacy</a></div>
</div></body></html>
"""
ITEMS = [
    {"sku": "tee-42", "name": "Organic tee", "price": 29},
    {"sku": "mug-7", "name": "Enamel mug", "price": 14},
    {"sku": "cap-3", "name": "Canvas cap", "price": 22},
]
MAIL_AUTOMATION = {
    "key": "bench-mail",
    "triggers": [{"event": "bench_mail"}],
    "nodes": [{"id": "mail", "type": "send_email", "template": "bench-mail"}],
}
# The same email again, sent with the send policy on: caps and a send window that every
# message passes (so the cost measured is the checking, not deferral).
POLICED_AUTOMATION = {
    "key": "bench-mail-policed",
    "triggers": [{"event": "bench_mail_policed"}],
    "nodes": [{"id": "mail", "type": "send_email", "template": "bench-mail"}],
}
POLICY = {
    "caps": {"email": [{"max": 5, "per": "16 hours"}, {"max": 20, "per": "7 days"}]},
    "windows": {"email": {"from": "00:00", "to": "23:59"}},
}


def hook_automation(port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/hook/{{{{ contact.id }}}}"
    node = {"id": "hook", "type": "webhook", "template": "bench-hook", "url": url}
    return {"key": "bench-hook", "triggers": [{"event": "bench_hook"}], "nodes": [node]}


# --- the peers, each in its own process --------------------------------------------------------


def smtp_sink(port: int, ready: Any, stop: Any, report: Any) -> None:
    """aiosmtpd on 127.0.0.1:port, counting messages until `stop` is set."""
    from aiosmtpd.controller import Controller

    seen: dict[str, Any] = {"messages": 0, "bytes": 0, "first": None}

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen["messages"] += len(envelope.rcpt_tos)
            seen["bytes"] += len(envelope.content)
            if seen["first"] is None:
                seen["first"] = envelope.content
            return "250 Message accepted"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    report.send(seen)


def http_sink(port: int, ready: Any, stop: Any, report: Any) -> None:
    """uvicorn on 127.0.0.1:port answering every request 204, counting them until `stop`."""
    import uvicorn

    seen = {"calls": 0, "bytes": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            seen["bytes"] += len(message.get("body", b""))
            more = message.get("more_body", False)
        seen["calls"] += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    ready.set()
    stop.wait()
    server.should_exit = True
    thread.join(timeout=10)
    report.send(seen)


@contextlib.contextmanager
def peer(target: Callable[..., None]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run a sink in a spawned process; yield its port and, after it stops, what it counted."""
    ctx = multiprocessing.get_context("spawn")
    port, ready, stop = free_port(), ctx.Event(), ctx.Event()
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(port, ready, stop, theirs), daemon=True)
    proc.start()
    if not ready.wait(30):
        proc.kill()
        raise SystemExit(f"{target.__name__} did not start")
    counted: dict[str, Any] = {}
    try:
        yield port, counted
    finally:
        stop.set()
        if mine.poll(30):
            counted |= mine.recv()
        proc.join(timeout=10)


# --- the sender ------------------------------------------------------------------------------


class Stopwatch:
    """Wraps `Delivery`'s steps on one instance and adds up their seconds."""

    def __init__(self, conveyor: Conveyor) -> None:
        self.seconds: Counter[str] = Counter()
        self._recording = False
        delivery = conveyor.delivery
        store = delivery.store
        prepare_one = delivery_module.prepare
        prepare_all, record, run = delivery._prepare, delivery._record, delivery._run

        def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[name] += time.perf_counter() - started

            return call

        def recording(*args: Any) -> Any:
            self._recording = True
            return record(*args)

        def transact(work: Callable[..., Any]) -> Any:  # claim or record, commit included
            started, self._recording = time.perf_counter(), False
            try:
                return store.transact(work)
            finally:
                self.seconds["record" if self._recording else "claim"] += (
                    time.perf_counter() - started
                )

        class TimedStore:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

        timed_store = TimedStore()
        timed_store.transact = transact  # type: ignore[attr-defined]
        delivery.store = timed_store  # type: ignore[assignment]
        delivery._prepare = timed("prepare", prepare_all)  # type: ignore[method-assign]
        delivery._record = recording  # type: ignore[method-assign]
        delivery._run = timed("send", run)  # type: ignore[method-assign]
        delivery_module.prepare = timed("render", prepare_one)

    def reset(self) -> None:
        self.seconds.clear()


def sent_counts(conveyor: Conveyor) -> dict[tuple[str, str], int]:
    query = select(outbox.c.channel, outbox.c.status, func.count()).group_by(
        outbox.c.channel, outbox.c.status
    )
    with conveyor.store.db.read_connection() as conn:
        return {(c, s): n for c, s, n in conn.execute(query)}


def enqueue(conveyor: Conveyor, workspace: Any, event: str, n: int) -> float:
    """Track `event` for every contact and let the engine write the outbox (untimed)."""
    for start in range(0, n, 1000):
        calls = [
            {
                "type": "track",
                "userId": f"u{i}",
                "event": event,
                "messageId": f"{event}-{i}",
                "properties": {"items": ITEMS, "total": 65},
            }
            for i in range(start, min(start + 1000, n))
        ]
        assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)
    started = time.perf_counter()
    conveyor.engine.run_until_idle(max_rounds=10**6)
    return time.perf_counter() - started


def deliver(
    conveyor: Conveyor, watch: Stopwatch, n: int, profile: str | None, name: str, dialect: str
) -> dict[str, float]:
    watch.reset()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    done = conveyor.delivery.run_until_idle(max_rounds=10**6)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler is not None and profile is not None:
        path = os.path.join(profile, f"delivery-{name}-{dialect}.prof")
        profiler.dump_stats(path)
        log.print(f"{dialect}: {name}: profile in {path}")
    if done != n:
        raise SystemExit(f"{dialect}: {name}: delivery handled {done} messages, expected {n}")
    split = {k: v / seconds * 100 for k, v in watch.seconds.items()}
    split["render"] = split.get("render", 0.0)
    split["load"] = split.get("prepare", 0.0) - split["render"]
    # Outcomes are recorded in a thread while the round still sends: "record" is inside "send".
    split["other"] = 100 - sum(split.get(k, 0.0) for k in ("claim", "prepare", "send"))
    log.print(f"{dialect}: {name}: {n:,} in {seconds:.2f}s = {n / seconds:,.0f}/s", highlight=False)
    return {"seconds": seconds, "per_s": n / seconds, **{f"pct_{k}": v for k, v in split.items()}}


def delivery_bench(
    dialect: str, args: dict[str, Any], smtp_port: int, http_port: int, out: Any
) -> None:
    """Runs in a fresh (spawned) process; sends its results down `out`."""
    n, hooks = args["messages"], args["webhooks"]
    with database(dialect, "delivery") as (url, _):
        settings = Settings(
            database_url=url,
            webhook_allow="127.0.0.1/32",
            delivery_batch=args["batch"],
            public_url="https://mail.acme-shop.example",
        )
        conveyor = bootstrap(settings)
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        conveyor.catalog.declare_field(workspace, "plan", "text", None, None)
        smtp_url = (
            f"smtp://127.0.0.1:{smtp_port}?security=none&max_connections={args['connections']}"
        )
        workspace = conveyor.channels.configure(
            workspace, "email", {"from": SENDER, "smtp_url": smtp_url}
        )
        conveyor.templates.save(
            workspace,
            "bench-mail",
            "email",
            {"subject": "{{ contact.first_name }}, new picks for you", "html": HTML},
        )
        body = '{"email": {{ contact.email | json }}, "plan": {{ contact.plan | json }}}'
        conveyor.templates.save(workspace, "bench-hook", "webhook", {"body": body})
        for automation in (MAIL_AUTOMATION, POLICED_AUTOMATION, hook_automation(http_port)):
            conveyor.automations.apply(workspace, automation)
            conveyor.automations.set_status(workspace, automation["key"], "active")
        for start in range(0, max(n, hooks), 1000):
            calls = [
                {
                    "type": "identify",
                    "userId": f"u{i}",
                    "traits": {
                        "email": f"person{i}@example.org",
                        "first_name": f"Ada{i}",
                        "last_name": "Lovelace",
                        "plan": ("free", "pro", "team")[i % 3],
                    },
                }
                for i in range(start, min(start + 1000, max(n, hooks)))
            ]
            assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)
        conveyor.engine.run_until_idle(max_rounds=10**6)
        watch = Stopwatch(conveyor)
        result: dict[str, Any] = {"messages": n, "webhooks": hooks}

        result["engine_mail"] = enqueue(conveyor, workspace, "bench_mail", n)
        result["rss_before"] = rss_mb()
        mail = deliver(conveyor, watch, n, args["profile"], "email", dialect)
        result |= {f"mail_{k}": v for k, v in mail.items()}
        workspace = conveyor.policies.set_workspace_policy(workspace, POLICY)
        result["engine_policed"] = enqueue(conveyor, workspace, "bench_mail_policed", n)
        policed = deliver(conveyor, watch, n, args["profile"], "email+policy", dialect)
        result |= {f"policed_{k}": v for k, v in policed.items()}
        result["policy_slower_pct"] = (mail["per_s"] / policed["per_s"] - 1) * 100
        if hooks:
            result["engine_hook"] = enqueue(conveyor, workspace, "bench_hook", hooks)
            hook = deliver(conveyor, watch, hooks, args["profile"], "webhook", dialect)
            result |= {f"hook_{k}": v for k, v in hook.items()}
        counts = sent_counts(conveyor)
        result["sent_email"] = counts.get(("email", "sent"), 0)
        result["sent_webhook"] = counts.get(("webhook", "sent"), 0)
        result["not_sent"] = sum(v for (_, s), v in counts.items() if s != "sent")
        result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conveyor.delivery.close()
        conveyor.close()
    out.send(result)


def check_sample(raw: bytes | None) -> str:
    """What is wrong with the first message the sink received, or "ok"."""
    if raw is None:
        return "no message"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    if html is None or text is None:
        return "no HTML or no text part"
    body = html.get_content()
    problems = [
        what
        for what, ok in (
            ("personalised", "Hi Ada" in body and "Organic tee" in body),
            ("links tracked", body.count("/t/c/") >= 5 and "shop.example/p/" not in body),
            ("open pixel", "/t/o/" in body),
            ("CSS inlined", 'style="' in body),
            ("text part", "Hi Ada" in text.get_content()),
            ("List-Unsubscribe", bool(message["List-Unsubscribe"])),
        )
        if not ok
    ]
    return "ok" if not problems else "not " + ", ".join(problems)


def run_dialect(dialect: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with peer(smtp_sink) as (smtp_port, smtp), peer(http_sink) as (http_port, http):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=delivery_bench, args=(dialect, args, smtp_port, http_port, theirs)
        )
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not mine.poll():
            raise SystemExit(f"{dialect}: the benchmark process failed ({proc.exitcode})")
        result: dict[str, Any] = mine.recv()
    result |= {
        "sink_messages": smtp["messages"],
        "sink_kb": smtp["bytes"] / max(smtp["messages"], 1) / 1024,
        "sample": check_sample(smtp["first"]),
        "http_calls": http["calls"],
    }
    n, hooks = result["messages"], result["webhooks"]
    if result["sink_messages"] != 2 * n or result["sent_email"] != 2 * n:
        raise SystemExit(f"{dialect}: the sink received {result['sink_messages']} of {n}")
    if result["http_calls"] != hooks or result["sent_webhook"] != hooks:
        raise SystemExit(f"{dialect}: the HTTP server received {result['http_calls']} of {hooks}")
    if result["sample"] != "ok":
        raise SystemExit(f"{dialect}: the first message is {result['sample']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batch", type=int, default=200, help="Settings.delivery_batch")
    parser.add_argument("--connections", type=int, default=8, help="SMTP max_connections")
    parser.add_argument("--webhooks", type=int, help="webhook calls (default: --messages)")
    parser.add_argument("--profile", metavar="DIR", help="write cProfile stats here")
    args = parser.parse_args()
    options = {
        "messages": args.messages,
        "webhooks": args.messages if args.webhooks is None else args.webhooks,
        "batch": args.batch,
        "connections": args.connections,
        "profile": os.path.abspath(args.profile) if args.profile else None,
    }
    if options["profile"]:
        os.makedirs(options["profile"], exist_ok=True)
    facts_before = machine()
    results = {dialect: run_dialect(dialect, options) for dialect in dialects(args.dialect)}

    rows = [  # label, result key, format
        ("emails (one per contact, from the engine)", "messages"),
        ("  engine seconds to write the outbox (untimed)", "engine_mail", "{:,.1f}"),
        ("  delivery seconds (Delivery.run_until_idle)", "mail_seconds", "{:,.2f}"),
        ("emails/s rendered + sent over SMTP (target >= 500)", "mail_per_s"),
        ("  % claim (transaction)", "mail_pct_claim", "{:.0f}"),
        ("  % prepare: load contacts/templates", "mail_pct_load", "{:.0f}"),
        ("  % prepare: render (Liquid, CSS inline, text, MIME)", "mail_pct_render", "{:.0f}"),
        ("  % send (SMTP, concurrent; outcomes recorded meanwhile)", "mail_pct_send", "{:.0f}"),
        ("    % record (outcomes + events, transactions, during the sends)", "mail_pct_record",
         "{:.0f}"),
        ("  % other", "mail_pct_other", "{:.0f}"),
        ("emails/s with caps and a send window on", "policed_per_s"),
        ("  slower with the policy, % (target < 20)", "policy_slower_pct", "{:.0f}"),
        ("messages received by the SMTP sink (== 2 x emails)", "sink_messages"),
        ("  KB per message", "sink_kb", "{:,.1f}"),
        ("webhook calls (one per contact)", "webhooks"),
        ("webhook calls/s (local uvicorn)", "hook_per_s"),
        ("  % prepare (load + render)", "hook_pct_prepare", "{:.0f}"),
        ("  % send (HTTP, concurrent)", "hook_pct_send", "{:.0f}"),
        ("  % claim + record", "hook_pct_db", "{:.0f}"),
        ("calls received by the HTTP server (== webhooks)", "http_calls"),
        ("sender RSS MB before delivery", "rss_before"),
        ("sender peak RSS MB (getrusage)", "rss_peak"),
    ]
    for result in results.values():
        if "hook_pct_claim" in result:
            result["hook_pct_db"] = result["hook_pct_claim"] + result["hook_pct_record"]
    n = args.messages
    title = (
        f"Conveyor delivery benchmark, {n:,} emails, batch {args.batch}, "
        f"{args.connections} SMTP connections"
    )
    print_table(title, rows, results, facts_before)


if __name__ == "__main__":
    main()
