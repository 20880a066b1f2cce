"""Collision control: the send policy applied to messages as delivery claims them, in the same
transaction, one contact at a time (other workers wait), so caps hold across workers. A message
the rules hold back is deferred to the earliest moment they allow — pending again, not lost — or
skipped when its node says so; either way the contact's timeline says which rule and until when.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor import telemetry
from conveyor.clock import Clock
from conveyor.domain.errors import NotFound
from conveyor.domain.policies import (
    CAPPED,
    Decision,
    Outgoing,
    Policy,
    Sent,
    decide,
    merge,
    next_opening,
    parse_policy,
)
from conveyor.domain.workspaces import Workspace
from conveyor.services.deliverability import Deliverability
from conveyor.services.workspaces import Workspaces, workspace_from_row
from conveyor.store.records import ContactRecord, MessageRecord
from conveyor.store.store import Store, Tx


def workspace_policy(workspace: Workspace) -> dict[str, Any]:
    return dict(workspace.settings.get("send_policy") or {})


def contact_timezone(row: ContactRecord | None, workspace: Workspace) -> str:
    zone = (row.timezone if row is not None else None) or workspace.settings.get("timezone")
    try:
        ZoneInfo(zone or "UTC")
    except (KeyError, ValueError):
        zone = "UTC"
    return zone or "UTC"


def policy_of(workspace: Workspace, override: dict[str, Any] | None) -> Policy:
    """The policy a contact's marketing messages follow: the workspace's, with its override."""
    return parse_policy(merge(workspace_policy(workspace), override))


def lookback(policies: Iterable[Policy]) -> int:
    """How far back (seconds) a contact's sends can matter to these policies."""
    return max(
        [c.seconds for p in policies for caps in p.caps.values() for c in caps]
        + [p.repeat_within or 0 for p in policies]
        + [0]
    )


def outgoing(
    channel: str,
    template: str | None,
    message_class: str,
    config: dict[str, Any],
    created_at: datetime | None,
) -> Outgoing:
    """What the policy is asked about one message (by delivery, and by the simulator)."""
    return Outgoing(
        channel=channel,
        template=template,
        message_class=message_class,
        on_cap=config.get("on_cap", "defer"),
        allow_repeat=bool(config.get("allow_repeat")),
        send_at=config.get("send_at"),
        created_at=created_at,
    )


class SendPolicies:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        workspaces: Workspaces,
        guard: Deliverability | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.workspaces = workspaces
        self.guard = guard  # the deliverability guard: holds marketing email to a provider

    # --- applied by delivery -----------------------------------------------------------------

    def apply(self, tx: Tx, rows: list[MessageRecord], now: datetime) -> list[MessageRecord]:
        """The claimed rows that may go now; the others are deferred or skipped in `tx`."""
        policed = [r for r in rows if r.message_class == "marketing" and r.channel in CAPPED]
        if not policed:
            return rows
        contact_ids = {r.contact_id for r in policed}
        tx.messages.lock_contacts(contact_ids)
        workspaces = {w.id: workspace_from_row(w) for w in tx.workspaces.all()}
        overrides = tx.messages.contact_policies(contact_ids)
        people: dict[int, ContactRecord] = {}
        for workspace_id in {r.workspace_id for r in policed}:
            for row in tx.contacts.by_ids(workspace_id, {r.contact_id for r in policed}):
                people[row.id] = row
        workspace_of = {r.contact_id: workspaces[r.workspace_id] for r in policed}
        policies: dict[int, Policy] = {
            cid: policy_of(ws, overrides.get(cid)) for cid, ws in workspace_of.items()
        }
        longest = lookback(policies.values())
        history: dict[int, list[Sent]] = defaultdict(list)
        claimed = {r.id for r in rows}
        for sent in tx.messages.recent_sends(
            contact_ids, now - timedelta(seconds=longest), claimed
        ):
            history[sent.contact_id].append(Sent(sent.channel, sent.template, sent.sent_at))
        guarded = (
            self.guard.hold(
                tx, [r for r in policed if r.channel == "email"], people, workspaces, now
            )
            if self.guard is not None
            else {}
        )
        held: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        blocked: set[int] = set()
        # Higher priority first: when two messages compete for one slot, it goes to the
        # automation that matters more; then the oldest.
        for row in sorted(policed, key=lambda r: (-r.priority, r.created_at, r.id)):
            config = (row.payload or {}).get("config", {})
            ws = workspaces[row.workspace_id]
            if row.id in guarded:
                decision = Decision("defer", *guarded[row.id])
            else:
                decision = decide(
                    outgoing(row.channel, row.template, row.message_class, config, row.created_at),
                    history[row.contact_id],
                    policies[row.contact_id],
                    now,
                    contact_timezone(people.get(row.contact_id), ws),
                )
            if decision.action == "send":
                history[row.contact_id].append(Sent(row.channel, row.template, now))
                continue
            blocked.add(row.id)
            telemetry.DEFERRALS.labels(
                row.channel, "deferred" if decision.action == "defer" else "skipped"
            ).inc()
            held.append(
                {
                    "id": row.id,
                    "status": "pending" if decision.action == "defer" else "skipped",
                    "send_after": decision.until or row.send_after,
                    "error": decision.reason[:1000],
                }
            )
            if row.run_id is not None and row.automation_id:
                steps.append(_step(row, now, decision))
        tx.messages.postpone(held)
        tx.automations.add_steps(steps)
        return [r for r in rows if r.id not in blocked]

    # --- settings ------------------------------------------------------------------------------

    def set_workspace_policy(self, workspace: Workspace, raw: Any) -> Workspace:
        parse_policy(raw)  # refuse a bad policy, naming the field
        return self.workspaces.update_settings(workspace, {"send_policy": raw or None})

    def set_contact_policy(self, workspace: Workspace, contact_id: int, raw: Any) -> None:
        parse_policy(raw)

        def work(tx: Tx) -> None:
            if not tx.contacts.by_ids(workspace.id, [contact_id]):
                raise NotFound(f"no contact {contact_id} in this workspace")
            tx.messages.set_contact_policy(workspace.id, contact_id, raw or None, self.clock.now())

        self.store.transact(work)

    def effective(self, workspace: Workspace, contact_id: int) -> dict[str, Any]:
        """The policy that applies to a contact now, its own part, and when each channel next
        allows a marketing message."""
        now = self.clock.now()
        with self.store.read() as tx:
            rows = tx.contacts.by_ids(workspace.id, [contact_id])
            if not rows:
                raise NotFound(f"no contact {contact_id} in this workspace")
            override = tx.messages.contact_policies([contact_id]).get(contact_id)
            policy = parse_policy(merge(workspace_policy(workspace), override))
            longest = max(
                [c.seconds for caps in policy.caps.values() for c in caps]
                + [policy.repeat_within or 0, 0]
            )
            sent = [
                Sent(s.channel, s.template, s.sent_at)
                for s in tx.messages.recent_sends(
                    [contact_id], now - timedelta(seconds=longest), ()
                )
            ]
        zone = contact_timezone(rows[0], workspace)
        next_allowed = {}
        for channel in CAPPED:
            decision: Decision = decide(
                Outgoing(channel, None, "marketing"), sent, policy, now, zone
            )
            next_allowed[channel] = {
                "at": (decision.until or now).isoformat(),
                "reason": decision.reason,
            }
        window_state = {
            ch: next_opening(w, now, ZoneInfo(zone)) <= now for ch, w in policy.windows.items()
        }
        return {
            "contact_id": contact_id,
            "timezone": zone,
            "policy": policy.as_dict(),
            "contact_override": override,
            "window_open": window_state,
            "recent_marketing": {ch: sum(1 for s in sent if s.channel == ch) for ch in CAPPED},
            "next_allowed": next_allowed,
        }


def _step(row: MessageRecord, now: datetime, decision: Decision) -> dict[str, Any]:
    reason: dict[str, Any] = {"why": decision.reason, "message": row.id, "channel": row.channel}
    if decision.until is not None:
        reason["until"] = decision.until.isoformat()
    return {
        "workspace_id": row.workspace_id,
        "run_id": row.run_id,
        "contact_id": row.contact_id,
        "automation_id": row.automation_id,
        "version": row.version,
        "node": row.node,
        "outcome": "deferred" if decision.action == "defer" else "skipped",
        "reason": reason,
        "at": now,
    }
