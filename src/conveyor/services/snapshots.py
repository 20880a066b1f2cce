"""Contact facts for many contacts in one read: what conditions and the engine know of them.

One set-based read per kind (contacts, tags, subscriptions, the events conditions ask about,
unfinished runs) gives both the evaluator's `Snapshot` of each contact and the rows a
ContactWriter adopts, so a contact is read once per transaction whatever uses it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from conveyor.domain.conditions import DEAL_EVENTS
from conveyor.domain.evaluation import DealFact, EventFact, RunFact, Snapshot
from conveyor.domain.fields import STANDARD_FIELDS
from conveyor.domain.scoring import ScoreState
from conveyor.services.conditions import ConditionContext
from conveyor.store.records import ContactRecord
from conveyor.store.store import Tx


@dataclass
class Loaded:
    """What one read brought: rows for a writer to adopt, facts for conditions, runs."""

    rows: list[Any] = field(default_factory=list)
    tags: dict[int, set[str]] = field(default_factory=dict)
    subscriptions: dict[int, dict[int, str]] = field(default_factory=dict)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    runs: list[Any] = field(default_factory=list)  # unfinished (active, queued) runs


def load(
    tx: Tx,
    ctx: ConditionContext,
    contact_ids: Iterable[int],
    names: set[str],
    *,
    lock_runs: bool = False,
    up_to_id: int | None = None,
) -> Loaded:
    """The contacts' facts, with the events named `names`; `lock_runs` locks their unfinished
    runs for this transaction (PostgreSQL), for a caller that will change them; `up_to_id`
    keeps only the events of the log up to that id (a replay's history before it starts)."""
    rows, tags, subs = tx.contacts.with_relations(ctx.workspace.id, list(contact_ids))
    ids = [row.id for row in rows]
    if not ids:
        return Loaded()
    history: dict[int, list[EventFact]] = defaultdict(list)
    found = (
        tx.segments.contact_events(ids, names)
        if up_to_id is None
        else tx.events.of_contacts(ids, names, up_to_id=up_to_id)
    )
    for e in found:
        history[e.contact_id].append(EventFact(e.name, e.timestamp, e.properties or {}, e.kind))
    runs = (
        tx.automations.of_contacts(ids, ("active", "queued"), lock=lock_runs)
        if ctx.automations
        else []
    )
    inside: dict[int, list[RunFact]] = defaultdict(list)
    for run in runs:
        key = ctx.automations.get(run.automation_id)
        if key is not None:
            inside[run.contact_id].append(RunFact(key, run.entered_at))
    owned: dict[int, list[DealFact]] = defaultdict(list)
    if names.intersection(DEAL_EVENTS):  # a condition asks about deals
        for contact_id, *deal in tx.crm.deal_facts(ids):
            owned[contact_id].append(DealFact(*deal))
    scores: dict[int, dict[str, ScoreState]] = defaultdict(dict)
    if ctx.score_decays:
        for record in tx.scoring.states(ctx.workspace.id, ids).values():
            if record.score in ctx.score_decays:
                decay = ctx.score_decays[record.score]
                scores[record.contact_id][record.score] = ScoreState(
                    record.norm, record.fixed, decay
                )
    snapshots = {
        row.id: snapshot(
            ctx,
            row,
            tags.get(row.id, ()),
            subs.get(row.id, {}),
            history.get(row.id, []),
            inside.get(row.id, []),
            deals=owned.get(row.id, []),
            scores=scores.get(row.id, {}),
        )
        for row in rows
    }
    return Loaded(rows, tags, subs, snapshots, runs)


def snapshot(
    ctx: ConditionContext,
    row: ContactRecord,
    tags: Iterable[str],
    subscriptions: dict[int, str],
    events: list[EventFact],
    runs: list[RunFact],
    *,
    deals: list[DealFact] | None = None,
    scores: dict[str, ScoreState] | None = None,
) -> Snapshot:
    """One contact's facts from its row (stored, or made up for a simulation)."""
    return Snapshot(
        standard={name: getattr(row, name) for name in STANDARD_FIELDS},
        score=row.score,
        fields=dict(row.fields or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        tags=set(tags),
        lists={
            ctx.list_keys[lid]: st for lid, st in subscriptions.items() if lid in ctx.list_keys
        },
        events=events,
        runs=runs,
        timezone=row.timezone or ctx.timezone,
        deals=deals or [],
        scores=scores or {},
    )
