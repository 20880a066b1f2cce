"""The deliverability guard: rolling complaint and hard-bounce rates per mailbox provider, and
marketing email to a provider throttled, then paused, when they climb (see
conveyor.domain.deliverability for the rules).

`check` runs in the worker every minute (and on demand): it reads each workspace's emails sent,
hard bounces and complaints in the window (since the provider's last resume, if later), asks
`judge`, stores each provider's status with the rates it was judged on, and logs a
`deliverability.throttled|paused|recovered` event on a change. Delivery asks `hold` about the
marketing emails it claims, inside its claim transaction: a paused provider's are deferred
(pending again, re-asked every 15 minutes), a throttled provider's beyond its hourly allowance
wait for the next hour. `resume` lifts a pause and releases what it held.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.deliverability import (
    PROVIDERS,
    GuardRules,
    ProviderCounts,
    judge,
    parse_rules,
    provider_of,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import format_datetime
from conveyor.domain.workspaces import Workspace
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import ContactRecord, MessageRecord, ProviderHealthRecord
from conveyor.store.store import Store, Tx

REASON = "deliverability guard"  # how held messages' `error` starts
RECHECK = timedelta(minutes=15)  # a paused provider's messages ask again this often
HOUR = timedelta(hours=1)


def rules_of(workspace: Workspace) -> GuardRules:
    try:
        return parse_rules(workspace.settings.get("deliverability"))
    except InvalidInput:  # settings are checked when saved; an old bad one means defaults
        return GuardRules()


def _paused_prefix(provider: str) -> str:
    return f"{REASON}: marketing email to {provider} is paused"


class Deliverability:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- judging ---------------------------------------------------------------------------

    def check(self, workspace: Workspace | None = None) -> int:
        """Judge every provider of one workspace (or all): how many changed status."""
        with self.store.read() as tx:
            spaces = (
                [workspace]
                if workspace is not None
                else [workspace_from_row(r) for r in tx.workspaces.all()]
            )
        return sum(self.store.transact(lambda tx, ws=ws: self._check(tx, ws)) for ws in spaces)

    def _check(self, tx: Tx, workspace: Workspace) -> int:
        now = self.clock.now()
        rules = rules_of(workspace)
        kept = {p: r for (_, p), r in tx.deliverability.health([workspace.id]).items()}
        window_start = now - timedelta(seconds=rules.window)
        since = {
            p: max(window_start, kept[p].since) if p in kept and kept[p].since else window_start
            for p in PROVIDERS
        }
        earliest = min(since.values())
        sent: dict[str, int] = defaultdict(int)
        bounces: dict[str, int] = defaultdict(int)
        complaints: dict[str, int] = defaultdict(int)
        for recipient, at in tx.deliverability.sent_to(workspace.id, earliest):
            p = provider_of(recipient, rules.domains)
            sent[p] += at >= since[p]
        for name, props, at, email in tx.deliverability.troubles(workspace.id, earliest):
            p = provider_of(email, rules.domains)
            if at < since[p]:
                continue
            if name == "email.complained":
                complaints[p] += 1
            elif props.get("type", "hard") == "hard":
                bounces[p] += 1
        changed = 0
        for p in PROVIDERS:
            counts = ProviderCounts(p, sent[p], bounces[p], complaints[p])
            row = kept.get(p)
            current = row.status if row is not None else "ok"
            if row is None and not counts.sent:
                continue  # nothing to say about a provider never written to
            verdict = judge(counts, rules, current)
            values: dict[str, Any] = {
                "stats": {**counts.as_dict(), "since": format_datetime(since[p])},
                "checked_at": now,
            }
            if verdict.status != current:
                changed += 1
                values |= {"status": verdict.status, "reason": verdict.reason, "changed_at": now}
                name = "recovered" if verdict.status == "ok" else verdict.status
                self._event(tx, workspace, now, f"deliverability.{name}", p, verdict.reason, counts)
            elif row is None:
                values |= {"status": current, "reason": None, "changed_at": now}
            tx.deliverability.save(workspace.id, p, values)
        return changed

    def _event(
        self,
        tx: Tx,
        workspace: Workspace,
        now: datetime,
        name: str,
        provider: str,
        reason: str | None,
        counts: ProviderCounts | None = None,
    ) -> None:
        writer = ContactWriter(tx, workspace, now, source="deliverability")
        props: dict[str, Any] = {"provider": provider, "reason": reason}
        if counts is not None:
            props["stats"] = counts.as_dict()
        writer.record(None, name, props)
        writer.flush()

    # --- reading and resuming --------------------------------------------------------------

    def status(self, workspace: Workspace) -> dict[str, Any]:
        """Every provider's status, the reason and the rates it was last judged on."""
        with self.store.read() as tx:
            kept = {p: r for (_, p), r in tx.deliverability.health([workspace.id]).items()}
        return {
            "rules": rules_of(workspace).as_dict(),
            "providers": [_shown(p, kept.get(p)) for p in PROVIDERS],
        }

    def resume(self, workspace: Workspace, provider: str) -> dict[str, Any]:
        """Lift a pause (or a throttle): rates count afresh from now, and the marketing email it
        held goes out at once."""
        if provider not in PROVIDERS:
            raise InvalidInput("provider", f"one of {', '.join(PROVIDERS)}")

        def work(tx: Tx) -> int:
            now = self.clock.now()
            row = tx.deliverability.health([workspace.id]).get((workspace.id, provider))
            was = row.status if row is not None else "ok"
            tx.deliverability.save(
                workspace.id,
                provider,
                {
                    "status": "ok",
                    "reason": f"resumed by hand (was {was})",
                    "since": now,
                    "changed_at": now,
                    "checked_at": now,
                    "hour_start": None,
                    "hour_sent": 0,
                    **({"stats": {}} if row is None else {}),
                },
            )
            self._event(tx, workspace, now, "deliverability.resumed", provider, f"was {was}")
            return tx.deliverability.release(
                workspace.id, f"{REASON}: marketing email to {provider}", now
            )

        released = self.store.transact(work)
        shown = next(p for p in self.status(workspace)["providers"] if p["provider"] == provider)
        return {**shown, "released": released}

    # --- applied by delivery ---------------------------------------------------------------

    def hold(
        self,
        tx: Tx,
        rows: list[MessageRecord],
        people: dict[int, ContactRecord],
        workspaces: dict[int, Workspace],
        now: datetime,
    ) -> dict[int, tuple[datetime, str]]:
        """Of these claimed marketing emails, those the guard holds back: id → (until, why)."""
        if not rows:
            return {}
        kept = tx.deliverability.health({r.workspace_id for r in rows})
        if not any(r.status != "ok" for r in kept.values()):
            return {}
        held: dict[int, tuple[datetime, str]] = {}
        counted: dict[tuple[int, str], list[Any]] = {}
        for row in rows:
            workspace = workspaces[row.workspace_id]
            rules = rules_of(workspace)
            person = people.get(row.contact_id)
            provider = provider_of(person.email if person else row.recipient, rules.domains)
            health = kept.get((row.workspace_id, provider))
            if health is None or health.status == "ok" or not rules.enabled:
                continue
            if health.status == "paused":
                why = (
                    f"{_paused_prefix(provider)} ({health.reason}); "
                    f"resume with `conveyor deliverability resume {provider}`"
                )
                held[row.id] = (now + RECHECK, why[:1000])
                continue
            key = (row.workspace_id, provider)
            if key not in counted:
                start, used = health.hour_start, health.hour_sent
                if start is None or now >= start + HOUR:
                    start, used = now, 0
                counted[key] = [start, used]
            start, used = counted[key]
            if used < rules.throttle_per_hour:
                counted[key][1] += 1
                continue
            why = (
                f"{REASON}: marketing email to {provider} is throttled to "
                f"{rules.throttle_per_hour} an hour ({health.reason})"
            )
            held[row.id] = (start + HOUR, why[:1000])
        for (workspace_id, provider), (start, used) in counted.items():
            tx.deliverability.save(workspace_id, provider, {"hour_start": start, "hour_sent": used})
        return held


def _shown(provider: str, row: ProviderHealthRecord | None) -> dict[str, Any]:
    if row is None:
        return {"provider": provider, "status": "ok", "reason": None, "stats": {},
                "changed_at": None, "checked_at": None}  # fmt: skip
    return {
        "provider": provider,
        "status": row.status,
        "reason": row.reason,
        "stats": row.stats,
        "changed_at": format_datetime(row.changed_at),
        "checked_at": format_datetime(row.checked_at),
    }
