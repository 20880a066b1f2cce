"""The worker's part of campaigns: start the due ones (freeze the audience and queue every
message in one transaction), pick an A/B test's winner when its wait is over and queue it for the
rest, and mark sent the campaigns with nothing left to send."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.campaigns import (
    ab_winner,
    local_plan,
    parse_ab_test,
    parse_schedule,
    throttle_slots,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.experiments import ArmCounts
from conveyor.services.audiences import audience_of, resolve
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import CampaignRecord
from conveyor.store.store import Store, Tx


class CampaignSender:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def run_due(self) -> int:
        """Start the campaigns whose time has come; mark sent those with nothing left to send.
        How many campaigns it moved (0: nothing to do)."""
        now = self.clock.now()
        with self.store.peek() as tx:
            due = [r.id for r in tx.campaigns.due(now)]
            sending = tx.campaigns.sending()
        moved = 0
        for campaign_id in due:
            moved += self.store.transact(lambda tx, c=campaign_id: self._start(tx, c, now))
        for row in sending:
            if not _testing(row):
                with self.store.peek() as tx:  # a look first: no write transaction each round
                    busy = tx.campaigns.unfinished(row.id)
                if not busy:
                    moved += self.store.transact(lambda tx, c=row.id: self._finish(tx, c))
            elif row.started_at and now >= row.started_at + _wait(row):
                moved += self.store.transact(lambda tx, c=row.id: self._decide(tx, c, now))
        return moved

    def _start(self, tx: Tx, campaign_id: int, now: datetime) -> int:
        row = tx.campaigns.by_id(campaign_id)
        if row is None or row.status != "scheduled":
            return 0
        if not tx.campaigns.change(
            row.id, {"status": "sending", "started_at": now, "updated_at": now}, when=("scheduled",)
        ):
            return 0  # a peer started or cancelled it
        found = tx.workspaces.get(row.workspace_id)
        assert found is not None
        workspace = workspace_from_row(found)
        notes: list[str] = []
        try:
            audience = resolve(tx, workspace, audience_of(row), row.channel, now)
        except InvalidInput as exc:  # a list or segment deleted since it was scheduled
            notes.append(f"not sent: {exc.detail}")
            tx.campaigns.change(
                row.id,
                {"status": "cancelled", "notes": notes, "audience_count": 0, "finished_at": now},
                when=("sending",),
            )
            return 1
        count = tx.campaigns.freeze(row.id, audience)
        payload = {"config": _config(row), "trigger": {}}
        schedule = parse_schedule(row.schedule) if row.schedule else None
        if schedule is not None and schedule.local:
            zone = str(workspace.settings.get("timezone") or "UTC")
            plan = local_plan(schedule, tx.campaigns.recipient_zones(row.id), zone, now)
            tx.campaigns.queue(row, payload, now, send_after=plan.fallback, by_zone=plan.by_zone)
            if plan.late:
                when = "at once" if schedule.late == "now" else "at that time the next day"
                notes.append(
                    f"local {schedule.local_time:%H:%M} on {schedule.date} had passed in "
                    f"{', '.join(plan.late)} when the campaign started: "
                    f"those contacts get it {when}"
                )
        elif row.ab_test:
            test = row.ab_test
            variants, percent = list(test["variants"]), int(test["sample"])
            for i, key in enumerate(variants):
                tx.campaigns.queue(
                    row,
                    payload,
                    now,
                    send_after=now,
                    template=key,
                    sample=(percent, len(variants), i),
                )
            shares = tx.campaigns.queued_by_template(row.id)
            notes.append(
                f"A/B: sample of {sum(shares.values())} ({percent} %) queued: "
                + ", ".join(f"{k} {shares.get(k, 0)}" for k in variants)
                + f"; the rest gets the winner at {(now + _wait(row)).isoformat()}"
            )
        elif row.throttle_per_hour:
            for lo, hi, at in throttle_slots(count, row.throttle_per_hour, now):
                tx.campaigns.queue(row, payload, now, send_after=at, seq_range=(lo, hi))
        else:
            tx.campaigns.queue(row, payload, now, send_after=now)
        queued = sum(tx.campaigns.queued_by_template(row.id).values())
        notes.append(f"audience frozen at {now.isoformat()}: {count} contacts, {queued} queued")
        tx.campaigns.change(row.id, {"audience_count": count, "notes": notes}, when=("sending",))
        return 1

    def _decide(self, tx: Tx, campaign_id: int, now: datetime) -> int:
        """The A/B test's wait is over: pick the winner (the split-test decision) and queue it
        for the rest of the audience, in one transaction with the decision."""
        row = tx.campaigns.by_id(campaign_id)
        if row is None or row.status != "sending" or not _testing(row) or not row.started_at:
            return 0
        test = parse_ab_test(row.ab_test)
        sent = tx.campaigns.sent_by_template(row.id)
        names = ["email.clicked", "email.unsubscribed", "email.complained"]
        seen = tx.campaigns.reactions_by_template(row.workspace_id, row.id, row.started_at, names)
        if test.metric == "converted":
            wins = tx.campaigns.conversions_by_template(row.id, test.event)
        else:
            wins = {k: seen.get(("email.clicked", k), 0) for k in test.variants}
        arms = [
            ArmCounts(
                name=k,
                entered=sent.get(k, 0),
                converted=wins.get(k, 0),
                unsubscribed=seen.get(("email.unsubscribed", k), 0),
                complained=seen.get(("email.complained", k), 0),
            )
            for k in test.variants
        ]
        outcome = ab_winner(test, arms, row.started_at, now)
        payload = {"config": _config(row), "trigger": {}}
        before = tx.campaigns.queued_by_template(row.id).get(outcome.winner, 0)
        tx.campaigns.queue(
            row, payload, now, send_after=now, template=outcome.winner, rest=test.sample
        )
        queued = tx.campaigns.queued_by_template(row.id).get(outcome.winner, 0) - before
        decided = {**(row.ab_test or {}), "winner": outcome.winner, "decision": outcome.decision}
        notes = [*(row.notes or []), outcome.note, f"{queued} queued with {outcome.winner}"]
        tx.campaigns.change(
            row.id, {"ab_test": decided, "notes": notes, "updated_at": now}, when=("sending",)
        )
        return 1

    def _finish(self, tx: Tx, campaign_id: int) -> int:
        row = tx.campaigns.by_id(campaign_id)
        if row is None or row.status != "sending" or _testing(row):
            return 0
        if tx.campaigns.unfinished(row.id):
            return 0
        now = self.clock.now()
        return int(
            tx.campaigns.change(
                row.id, {"status": "sent", "finished_at": now, "updated_at": now}, when=("sending",)
            )
        )


def _testing(row: CampaignRecord) -> bool:
    """An A/B campaign whose winner is not picked yet."""
    return bool(row.ab_test) and "winner" not in (row.ab_test or {})


def _wait(row: CampaignRecord) -> timedelta:
    return timedelta(seconds=int((row.ab_test or {}).get("wait", 0)))


def _config(row: CampaignRecord) -> dict[str, Any]:
    """What delivery reads from each message: the campaign, its lists (only subscribers get
    it; the unsubscribe link leaves them) and what a cap does to it."""
    config: dict[str, Any] = {"campaign": row.key, "on_cap": row.audience.get("on_cap", "skip")}
    lists = list(row.audience.get("lists") or [])
    if lists and not (row.audience.get("segments") or row.audience.get("tags")):
        # Sent for its lists only when they are the whole audience: a contact who came in
        # through a segment or tag is not skipped for not being on a list.
        config |= {"list": lists[0]} if len(lists) == 1 else {"lists": lists}
    return config
