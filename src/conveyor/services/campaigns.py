"""Campaigns: a template sent once to an audience (lists/segments/tags minus exclusions), now, at
a moment, or at a local time in each contact's timezone, optionally throttled per hour.

Starting a campaign is one transaction: the status moves scheduled → sending (compare-and-set),
the audience is frozen into `campaign_recipients` and every message is queued into the outbox
(set-based INSERT … SELECT). A killed worker therefore leaves either nothing (it starts again)
or everything. From there the messages are ordinary marketing messages: delivery applies the
send policy, suppressions and the list's unsubscribes and records every skip with its reason.
Pause holds the queued messages, cancel withdraws them (one UPDATE each); a message delivery
has already claimed is finished as it would have been, never half-sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.campaigns import (
    MOVES,
    CampaignSpec,
    ab_winner,
    check_move,
    local_plan,
    parse_ab_test,
    parse_audience,
    parse_campaign,
    parse_schedule,
    starts_at,
    throttle_slots,
)
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.experiments import ArmCounts
from conveyor.domain.workspaces import Workspace
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.audiences import AudienceIds
from conveyor.store.records import CampaignRecord
from conveyor.store.store import Store, Tx

REACTIONS = {
    "delivered": ("email.delivered", "sms.delivered"),
    "opened": ("email.opened",),
    "clicked": ("email.clicked",),
    "bounced": ("email.bounced",),
    "complained": ("email.complained",),
    "unsubscribed": ("email.unsubscribed",),
}


@dataclass(frozen=True)
class CampaignInfo:
    key: str
    name: str
    channel: str
    template: str
    status: str
    audience: dict[str, Any]
    schedule: dict[str, Any] | None
    throttle_per_hour: int | None
    on_cap: str
    starts_at: datetime | None
    audience_count: int | None
    notes: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    ab_test: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: CampaignRecord) -> CampaignInfo:
        audience = dict(row.audience)
        on_cap = str(audience.pop("on_cap", "skip"))
        return cls(
            key=row.key,
            name=row.name,
            channel=row.channel,
            template=row.template,
            status=row.status,
            audience=audience,
            schedule=row.schedule,
            throttle_per_hour=row.throttle_per_hour,
            on_cap=on_cap,
            starts_at=row.starts_at,
            audience_count=row.audience_count,
            notes=list(row.notes or []),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            ab_test=row.ab_test,
        )


def resolve(tx: Tx, workspace: Workspace, raw: dict[str, Any], needs: str | None) -> AudienceIds:
    """An audience's list and segment keys as ids; an unknown one is a 422 naming it."""
    audience = parse_audience(raw)
    lists = {r.key: r.id for r in tx.catalog.lists(workspace.id)}
    segments = {r.key: r.id for r in tx.segments.all(workspace.id)}

    def ids(keys: tuple[str, ...], known: dict[str, int], where: str) -> tuple[int, ...]:
        for key in keys:
            if key not in known:
                kind = "list" if "lists" in where else "segment"
                raise InvalidInput(where, f"no {kind} '{key}' in this workspace")
        return tuple(known[k] for k in keys)

    return AudienceIds(
        workspace_id=workspace.id,
        lists=ids(audience.lists, lists, "audience.lists"),
        segments=ids(audience.segments, segments, "audience.segments"),
        tags=audience.tags,
        exclude_lists=ids(audience.exclude_lists, lists, "audience.exclude.lists"),
        exclude_segments=ids(audience.exclude_segments, segments, "audience.exclude.segments"),
        exclude_tags=audience.exclude_tags,
        needs="email" if needs == "email" else "phone" if needs == "sms" else None,
    )


class Campaigns:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- definitions -----------------------------------------------------------------------

    def _check(self, tx: Tx, workspace: Workspace, spec: CampaignSpec) -> None:
        wanted = [("template", spec.template)]
        if spec.ab_test is not None:
            wanted = [(f"ab_test.variants.{i}", k) for i, k in enumerate(spec.ab_test.variants)]
        for field, key in wanted:
            template = tx.templates.by_key(workspace.id, key)
            if template is None:
                raise InvalidInput(field, f"no template '{key}' in this workspace")
            if template.channel != spec.channel:
                raise InvalidInput(
                    field, f"template '{key}' is for {template.channel}, not {spec.channel}"
                )
        resolve(tx, workspace, spec.audience.as_dict(), spec.channel)

    def validate(self, workspace: Workspace, raw: Any) -> CampaignSpec:
        spec = parse_campaign(raw)
        with self.store.read() as tx:
            self._check(tx, workspace, spec)
        return spec

    def apply(self, workspace: Workspace, raw: Any) -> tuple[CampaignInfo, str]:
        """Create a campaign, or change a draft; what happened: created, updated, unchanged."""
        spec = parse_campaign(raw)
        now = self.clock.now()
        values = {
            "name": spec.name,
            "channel": spec.channel,
            "template": spec.template,
            "audience": {**spec.audience.as_dict(), "on_cap": spec.on_cap},
            "schedule": spec.schedule.as_dict() if spec.schedule else None,
            "throttle_per_hour": spec.throttle_per_hour,
            "ab_test": spec.ab_test.as_dict() if spec.ab_test else None,
        }

        def work(tx: Tx) -> tuple[CampaignInfo, str]:
            self._check(tx, workspace, spec)
            row = tx.campaigns.get(workspace.id, spec.key)
            if row is None:
                tx.campaigns.add(
                    {
                        **values,
                        "workspace_id": workspace.id,
                        "key": spec.key,
                        "status": "draft",
                        "notes": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                outcome = "created"
            elif all(getattr(row, k) == v for k, v in values.items()):
                outcome = "unchanged"
            else:
                why = check_move(row.status, "edit")
                if why or not tx.campaigns.change(
                    row.id, {**values, "updated_at": now}, when=("draft",)
                ):
                    raise Conflict(f"campaign '{spec.key}': {why}; only a draft can change")
                outcome = "updated"
            found = tx.campaigns.get(workspace.id, spec.key)
            assert found is not None
            return CampaignInfo.of(found), outcome

        return self.store.transact(work)

    def get(self, workspace: Workspace, key: str) -> CampaignInfo:
        with self.store.read() as tx:
            return CampaignInfo.of(self._row(tx, workspace, key))

    def all(self, workspace: Workspace) -> list[CampaignInfo]:
        with self.store.read() as tx:
            return [CampaignInfo.of(r) for r in tx.campaigns.all(workspace.id)]

    def count(self, workspace: Workspace, key: str | None = None, audience: Any = None) -> int:
        """How many contacts the audience holds now (those with an address for the channel)."""
        with self.store.read() as tx:
            if key is not None:
                row = self._row(tx, workspace, key)
                if row.audience_count is not None:
                    return row.audience_count  # frozen
                raw, channel = _audience(row), row.channel
            else:
                raw, channel = audience, None
            return tx.campaigns.count_audience(resolve(tx, workspace, raw, channel))

    def _row(self, tx: Tx, workspace: Workspace, key: str) -> CampaignRecord:
        row = tx.campaigns.get(workspace.id, key)
        if row is None:
            raise NotFound(f"no campaign '{key}' in this workspace")
        return row

    # --- lifecycle -------------------------------------------------------------------------

    def schedule(self, workspace: Workspace, key: str, raw: Any = None) -> CampaignInfo:
        """draft → scheduled, with `raw` (or the definition's schedule; none: send now)."""
        now = self.clock.now()
        plan = parse_schedule(raw) if raw is not None else None

        def work(tx: Tx) -> CampaignInfo:
            row = self._row(tx, workspace, key)
            schedule = plan or (parse_schedule(row.schedule) if row.schedule else None)
            if schedule is not None and schedule.local and row.throttle_per_hour:
                raise InvalidInput("schedule", "a local-time schedule cannot be throttled")
            if schedule is not None and schedule.local and row.ab_test:
                raise InvalidInput("schedule", "an A/B test cannot go at a local time")
            start = starts_at(schedule, now) if schedule is not None else now
            self._move(
                tx,
                row,
                "schedule",
                {
                    "status": "scheduled",
                    "schedule": schedule.as_dict() if schedule else {"at": now.isoformat()},
                    "starts_at": start,
                    "updated_at": now,
                },
            )
            return CampaignInfo.of(self._row(tx, workspace, key))

        return self.store.transact(work)

    def unschedule(self, workspace: Workspace, key: str) -> CampaignInfo:
        return self._simple(workspace, key, "unschedule", "draft", lambda tx, row: None)

    def pause(self, workspace: Workspace, key: str) -> CampaignInfo:
        return self._simple(
            workspace, key, "pause", "paused", lambda tx, row: tx.campaigns.hold(row.id)
        )

    def resume(self, workspace: Workspace, key: str) -> CampaignInfo:
        return self._simple(
            workspace, key, "resume", "sending", lambda tx, row: tx.campaigns.release(row.id)
        )

    def cancel(self, workspace: Workspace, key: str) -> CampaignInfo:
        """Stop it: queued messages are withdrawn in the same transaction as the status."""

        def effect(tx: Tx, row: CampaignRecord) -> None:
            withdrawn = tx.campaigns.withdraw(row.id)
            if withdrawn:
                note = f"cancelled: {withdrawn} queued messages withdrawn"
                tx.campaigns.change(
                    row.id, {"notes": [*(row.notes or []), note]}, when=("cancelled",)
                )

        return self._simple(workspace, key, "cancel", "cancelled", effect, finished=True)

    def _simple(
        self, workspace: Workspace, key: str, move: str, status: str, effect: Any, finished=False
    ) -> CampaignInfo:
        def work(tx: Tx) -> CampaignInfo:
            row = self._row(tx, workspace, key)
            now = self.clock.now()
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if finished:
                values["finished_at"] = now
            self._move(tx, row, move, values)  # first: the row's lock orders us after a start
            effect(tx, row)
            return CampaignInfo.of(self._row(tx, workspace, key))

        return self.store.transact(work)

    def _move(self, tx: Tx, row: CampaignRecord, move: str, values: dict[str, Any]) -> None:
        why = check_move(row.status, move)
        if why is not None or not tx.campaigns.change(row.id, values, when=MOVES[move]):
            current = tx.campaigns.by_id(row.id)
            status = current.status if current else row.status
            raise Conflict(f"campaign '{row.key}': {check_move(status, move) or why}")

    # --- the worker's part -----------------------------------------------------------------

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
            audience = resolve(tx, workspace, _audience(row), row.channel)
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
        queued = 0
        if schedule is not None and schedule.local:
            zone = str(workspace.settings.get("timezone") or "UTC")
            plan = local_plan(schedule, tx.campaigns.recipient_zones(row.id), zone, now)
            queued = tx.campaigns.queue(
                row, payload, now, send_after=plan.fallback, by_zone=plan.by_zone
            )
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
            shares = [
                tx.campaigns.queue(
                    row,
                    payload,
                    now,
                    send_after=now,
                    template=key,
                    sample=(percent, len(variants), i),
                )
                for i, key in enumerate(variants)
            ]
            queued = sum(shares)
            notes.append(
                f"A/B: sample of {queued} ({percent} %) queued: "
                + ", ".join(f"{k} {n}" for k, n in zip(variants, shares, strict=True))
                + f"; the rest gets the winner at {(now + _wait(row)).isoformat()}"
            )
        elif row.throttle_per_hour:
            for lo, hi, at in throttle_slots(count, row.throttle_per_hour, now):
                queued += tx.campaigns.queue(row, payload, now, send_after=at, seq_range=(lo, hi))
        else:
            queued = tx.campaigns.queue(row, payload, now, send_after=now)
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
        queued = tx.campaigns.queue(
            row, payload, now, send_after=now, template=outcome.winner, rest=test.sample
        )
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

    # --- report ----------------------------------------------------------------------------

    def report(self, workspace: Workspace, key: str) -> dict[str, Any]:
        """The campaign's own counts, from its outbox rows and the events about its messages."""
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            statuses = tx.campaigns.status_counts(row.id)
            skipped = tx.campaigns.reasons(row.id, ("skipped",))
            failed = tx.campaigns.reasons(row.id, ("failed", "dead"))
            names = [n for names in REACTIONS.values() for n in names]
            seen = (
                tx.campaigns.reactions(workspace.id, row.id, row.started_at, names)
                if row.started_at
                else {}
            )
            by_template: dict[str, int] = {}
            seen_by_template: dict[tuple[str, str], int] = {}
            if row.ab_test and row.started_at:
                by_template = tx.campaigns.sent_by_template(row.id)
                seen_by_template = tx.campaigns.reactions_by_template(
                    workspace.id, row.id, row.started_at, ["email.opened", "email.clicked"]
                )
        return {
            "key": row.key,
            "status": row.status,
            "audience": row.audience_count,
            "queued": sum(statuses.values()),
            "waiting": statuses.get("pending", 0) + statuses.get("held", 0),
            "sending": statuses.get("sending", 0),
            "sent": statuses.get("sent", 0),
            "skipped": statuses.get("skipped", 0),
            "skipped_reasons": skipped,
            "failed": statuses.get("failed", 0) + statuses.get("dead", 0),
            "failed_reasons": failed,
            "cancelled": statuses.get("cancelled", 0),
            **{k: sum(seen.get(n, 0) for n in names) for k, names in REACTIONS.items()},
            "notes": list(row.notes or []),
            "ab_test": _ab_report(row.ab_test, by_template, seen_by_template),
        }


def _testing(row: CampaignRecord) -> bool:
    """An A/B campaign whose winner is not picked yet."""
    return bool(row.ab_test) and "winner" not in (row.ab_test or {})


def _wait(row: CampaignRecord) -> timedelta:
    return timedelta(seconds=int((row.ab_test or {}).get("wait", 0)))


def _ab_report(
    test: dict[str, Any] | None, sent: dict[str, int], seen: dict[tuple[str, str], int]
) -> dict[str, Any] | None:
    if not test:
        return None
    return {
        "variants": [
            {
                "template": k,
                "sent": sent.get(k, 0),
                "opened": seen.get(("email.opened", k), 0),
                "clicked": seen.get(("email.clicked", k), 0),
            }
            for k in test["variants"]
        ],
        "sample": test["sample"],
        "metric": test["metric"],
        "winner": test.get("winner"),
        "decision": test.get("decision"),
    }


def _audience(row: CampaignRecord) -> dict[str, Any]:
    return {k: v for k, v in row.audience.items() if k != "on_cap"}


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
