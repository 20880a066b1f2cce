"""A generated shop's history: contacts who update carts, some of whom order, day after day, with
the abandoned-cart automation and a promotion that shares the inbox running live (or not).

Used by benchmarks/simulate.py (100,000 contacts, ingest only), by `seed_history.py` (a workspace
to try `conveyor automation simulate` on) and by the backtest-predicts-reality test.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "automations"
CART = yaml.safe_load((EXAMPLES / "abandoned-cart.yaml").read_text())
PROMO = {  # the other automation: an offer after each order, competing for the same inbox
    "key": "thanks-offer",
    "name": "Thank-you offer",
    "triggers": [{"event": "order_completed"}],
    "entry": {"repeat": "every_time"},
    "nodes": [
        {"id": "pause", "type": "wait", "for": "2 hours"},
        {"id": "offer", "type": "send_email", "template": "thanks-offer"},
    ],
}
POLICY = {"caps": {"email": [{"max": 1, "per": "16 hours"}, {"max": 3, "per": "7 days"}]}}
TEMPLATES = ("cart-reminder-1", "cart-reminder-2", "thanks-offer")


def plan(contacts: int, days: int, seed: int = 7) -> dict[int, list[dict[str, Any]]]:
    """Tracking calls by hour from the start: each contact updates a cart now and then (about
    two a month), orders after some of them (at once, within the hour, a day later or never),
    and browses."""
    rng = random.Random(seed)
    hours = days * 24
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i in range(contacts):
        user = f"u{i}"
        for _ in range(sum(1 for _ in range(days) if rng.random() < 0.05)):
            at = rng.randrange(hours)
            total = rng.choice((19, 35, 60, 120))
            out[at].append(_track(user, "cart_updated", {"total": total, "items": 1 + total // 40}))
            roll = rng.random()
            delay = 0 if roll < 0.15 else 2 if roll < 0.3 else 26 if roll < 0.4 else None
            if delay is not None and at + delay < hours:
                out[at + delay].append(_track(user, "order_completed", {"total": total}))
        for _ in range(rng.randrange(3)):
            out[rng.randrange(hours)].append(_track(user, "page_viewed", {"url": "/shop"}))
    return out


def _track(user: str, event: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": properties}


def setup(conveyor: Any, workspace: Any, contacts: int, *, active: bool) -> Any:
    """Templates, the send policy, the two automations (active or draft) and the contacts;
    returns the workspace as it now is."""
    for key in TEMPLATES:
        conveyor.templates.save(workspace, key, "email", {"subject": key, "text": key})
    workspace = conveyor.policies.set_workspace_policy(workspace, POLICY)
    for definition in (CART, PROMO):
        conveyor.automations.apply(workspace, definition)
        if active:
            conveyor.automations.set_status(workspace, definition["key"], "active")
    for start in range(0, contacts, 1000):
        calls = [
            {"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@example.com"}}
            for i in range(start, min(start + 1000, contacts))
        ]
        assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)
    return workspace


def run(
    conveyor: Any,
    clock: Any,
    workspace: Any,
    calls: dict[int, list[dict[str, Any]]],
    days: int,
    *,
    live: bool,
    deliver: bool = False,
) -> None:
    """Hour by hour: that hour's calls, then (live) the engine and delivery until idle."""
    for hour in range(days * 24):
        batch = calls.get(hour, [])
        for start in range(0, len(batch), 1000):
            assert conveyor.ingest.calls(workspace, batch[start : start + 1000]).accepted
        if live:
            conveyor.engine.run_until_idle(max_rounds=10**7)
            if deliver:
                conveyor.delivery.run_until_idle()
                conveyor.engine.run_until_idle(max_rounds=10**7)
        clock.advance(timedelta(hours=1))
