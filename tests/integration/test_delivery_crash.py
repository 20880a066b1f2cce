"""Senders SIGKILLed mid-round, again and again: every message still arrives, and a kill repeats at
most the messages that were sent and not yet recorded at that instant — never more than
`delivery_in_flight` (issue 20: outcomes used to be recorded once per round of up to 200, so 572
of 3,000 emails arrived twice over 36 kills)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from sqlalchemy import func, select

from conveyor.store.schema import outbox
from tests.support import cli
from tests.support.smtp import SmtpSink

MESSAGES = int(os.environ.get("CONVEYOR_CRASH_MESSAGES", "600"))
KILLS = int(os.environ.get("CONVEYOR_CRASH_KILLS", "8"))
AUTOMATION = {
    "key": "mailer",
    "triggers": [{"event": "mail_me"}],
    "nodes": [{"id": "mail", "type": "send_email", "template": "note"}],
}


def sent(conveyor) -> int:
    with conveyor.store.db.read_connection() as conn:
        where = outbox.c.status == "sent"
        return conn.execute(select(func.count()).select_from(outbox).where(where)).scalar_one()


def test_a_killed_sender_repeats_at_most_what_was_in_flight(conveyor, database_url, tmp_path):
    workspace, _ = conveyor.workspaces.create("senders")
    conveyor.templates.save(
        workspace, "note", "email", {"subject": "Note {{ contact.external_id }}", "text": "Hello"}
    )
    conveyor.automations.apply(workspace, AUTOMATION)
    conveyor.automations.set_status(workspace, "mailer", "active")
    calls = [
        {"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@example.com"}}
        for i in range(MESSAGES)
    ] + [{"type": "track", "userId": f"u{i}", "event": "mail_me"} for i in range(MESSAGES)]
    assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)
    conveyor.engine.run_until_idle()  # the outbox holds MESSAGES emails, due (simulated past)

    sink = SmtpSink().start()
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_DATA_DIR": str(tmp_path),
        "CONVEYOR_SMTP_URL": sink.url,
        "CONVEYOR_EMAIL_FROM": "Shop <news@shop.example>",
        "CONVEYOR_DELIVERY_LEASE_SECONDS": "2",  # a dead sender's claims return quickly
        "CONVEYOR_DELIVERY_BATCH": "200",
    }
    in_flight = conveyor.settings.delivery_in_flight
    rnd = random.Random(20261201)
    worker: cli.Started | None = None
    mid_round = 0
    try:
        for _ in range(KILLS):
            worker = cli.start(["worker", "--role", "delivery"], env=env)
            # Strike while it sends: once mail has arrived since it started.
            before, deadline = len(sink.messages), time.monotonic() + 60
            while len(sink.messages) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rnd.uniform(0.0, 0.15))
            mid_round += sent(conveyor) < MESSAGES
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = None
        worker = cli.start(["worker", "--role", "delivery"], env=env)
        deadline = time.monotonic() + 120
        while sent(conveyor) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        sink.stop()

    assert mid_round >= 3, f"only {mid_round} kills hit a round under way"
    assert sent(conveyor) == MESSAGES, "every message went out in the end"
    arrivals = Counter(m.message["Message-ID"] for m in sink.messages)
    assert len(arrivals) == MESSAGES, "nothing lost"
    repeats = sum(arrivals.values()) - MESSAGES
    print(f"\n{KILLS} kills: {repeats} repeated messages (at most {in_flight} per kill)")
    assert repeats <= KILLS * in_flight
