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
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.campaigns import (
    MOVES,
    CampaignSpec,
    check_move,
    parse_campaign,
    parse_schedule,
    starts_at,
)
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.audiences import audience_of, resolve
from conveyor.services.campaign_sending import CampaignSender
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


class Campaigns:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.sender = CampaignSender(store, clock)

    def run_due(self) -> int:
        """The worker's part (see services.campaign_sending): start, decide A/B tests, finish."""
        return self.sender.run_due()

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
        resolve(tx, workspace, spec.audience.as_dict(), spec.channel, self.clock.now())

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

    def count(
        self,
        workspace: Workspace,
        key: str | None = None,
        audience: Any = None,
        channel: str | None = None,
    ) -> int:
        """How many contacts the audience holds now (with `channel`: those with an address for
        it; a saved campaign: its own channel, and once started its frozen count)."""
        with self.store.read() as tx:
            if key is not None:
                row = self._row(tx, workspace, key)
                if row.audience_count is not None:
                    return row.audience_count  # frozen
                raw, channel = audience_of(row), row.channel
            else:
                raw = audience
            audience = resolve(tx, workspace, raw, channel, self.clock.now())
            return tx.campaigns.count_audience(audience)

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
