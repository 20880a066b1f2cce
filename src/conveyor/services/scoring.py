"""Lead scoring: the workspace's scoring model, its contacts' named scores kept from the event log,
crossings of `score_crossed` thresholds (by rules and by decay), explanations and recomputes.

Scores follow the log as a consumer of the shared LogConsumer (first in the engine's pass, so
segments and automations in the same pass see the new values). Each award, each change of the
field rules' points and each crossing decay makes becomes a `score.changed` event
({score, old, new, …}) in the same transaction, which `score_crossed` triggers match. Decay
itself is a pure function of time (see `conveyor.domain.scoring`); what is materialised is only
when it will next cross a watched threshold (`cross_at`), which `sweep` looks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.automations.triggers import matches
from conveyor.domain.errors import NotFound
from conveyor.domain.evaluation import Evaluator
from conveyor.domain.scoring import (
    DEFAULT_SCORE,
    Scorer,
    ScoringModel,
    epoch_of,
    needs_rebase,
    parse_model,
    thresholds,
    weight,
)
from conveyor.domain.workspaces import Workspace
from conveyor.services import snapshots
from conveyor.services.conditions import ConditionContext, Contexts
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "scoring"
ADJUSTED = "score.adjusted"  # an automation's adjust_score with a score name: {score, by}
# Events after which field rules are decided again for the contact.
CONTACT_CHANGES = ("contact.created", "field.changed", "tag.added", "tag.removed", "contact.merged")
Progress = Callable[[int, int], None]


def score_event(contact_id: int, change: Any, workspace_id: int, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "kind": "system",
        "name": "score.changed",
        "properties": {
            "score": change.score,
            "old": round(change.old, 6),
            "new": round(change.new, 6),
            **change.because,
        },
        "context": {"source": "scoring"},
        "message_id": None,
        "timestamp": now,
        "received_at": now,
    }


class Scoring:
    def __init__(self, store: Store, clock: Clock, *, batch: int = 1000) -> None:
        self.store = store
        self.clock = clock
        self.batch = batch
        self.contexts = Contexts()

    # --- the model --------------------------------------------------------------------------

    def model(self, workspace: Workspace) -> dict[str, Any]:
        with self.store.read() as tx:
            row = tx.scoring.model(workspace.id)
            if row is None:
                raise NotFound("this workspace has no scoring model yet; PUT /scoring-model")
            return {
                "version": row.version,
                "updated_at": row.updated_at,
                "definition": row.definition,
                "contacts_scored": tx.scoring.count(workspace.id),
            }

    def validate(self, workspace: Workspace, raw: Any) -> ScoringModel:
        with self.store.read() as tx:
            ctx = ConditionContext(tx, workspace)
            return parse_model(raw, _parser(ctx))

    def apply(
        self, workspace: Workspace, raw: Any, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Store a new model and recompute every contact's scores from the log with it."""
        self.validate(workspace, raw)
        now = self.clock.now()
        version = 0

        def save(tx: Tx) -> None:
            nonlocal version
            version = tx.scoring.save_model(workspace.id, raw, epoch_of(now), now)

        scored = self.recompute(workspace, progress, first=save)
        return {"version": version, "contacts": scored}

    def store_model(self, workspace: Workspace, raw: Any) -> int:
        """Store a new model without recomputing: for a caller that stores it with other
        changes in one transaction and runs `recompute` once they committed. Its version."""
        self.validate(workspace, raw)
        now = self.clock.now()
        return self.store.transact(
            lambda tx: tx.scoring.save_model(workspace.id, raw, epoch_of(now), now)
        )

    # --- recomputing ------------------------------------------------------------------------

    def recompute(
        self,
        workspace: Workspace,
        progress: Progress | None = None,
        *,
        first: Callable[[Tx], None] | None = None,
        page: int = 1000,
    ) -> int:
        """Every contact's scores again from the log, a page of contacts per transaction; how
        many contacts have scores. Writes no `score.changed`: a recompute replays no triggers.

        The first transaction (which also saves a new model) takes over the log up to now
        from the scoring consumer (its cursor moves there). Each page then locks that cursor,
        forgets its contacts' scores and scores their events up to it; events past it are the
        consumer's, with the new model. So each event counts once, whoever gets to it first."""

        def start(tx: Tx) -> int:
            if first is not None:
                first(tx)
            position, high = tx.events.position(LOG_CONSUMER), tx.high_water()
            if high is None:  # SQLite: one writer at a time, so every event is committed
                high = tx.events.latest_id()
            if high > position:
                tx.events.move_cursors([LOG_CONSUMER], high)
            return tx.scoring.contact_count(workspace.id)

        total = self.store.transact(start, follow_log=True)
        after, done, scored = 0, 0, 0

        def one_page(tx: Tx) -> tuple[list[int], int]:
            ids = tx.scoring.contact_ids(workspace.id, after, page)
            if not ids:
                return ids, 0
            up_to = tx.events.position(LOG_CONSUMER)
            tx.scoring.clear_contacts(workspace.id, ids)
            ctx = ConditionContext(tx, workspace)
            return ids, self._rescore(tx, ctx, ids, up_to)

        while True:
            ids, n = self.store.transact(one_page)
            if not ids:
                break
            after, done, scored = ids[-1], done + len(ids), scored + n
            if progress is not None:
                progress(done, max(total, done))
        return scored

    def _rescore(self, tx: Tx, ctx: ConditionContext, ids: list[int], up_to: int) -> int:
        model, now = ctx.scoring, self.clock.now()
        if not model.scores:
            return 0
        scorer = Scorer(model, _epoch(ctx), self._watched(tx, ctx), now, emit=False)
        names = model.events() | {ADJUSTED}
        for e in tx.scoring.events_of(ctx.workspace.id, ids, names, up_to):
            if e.name == ADJUSTED:
                self._adjusted(scorer, e)
            else:
                scorer.on_event(e.contact_id, e.id, e.name, e.properties or {}, e.timestamp)
        if model.has_field_rules():
            self._fields(tx, ctx, scorer, ids, now)
        rows = scorer.rows()
        tx.scoring.add_states([_state_row(ctx, *row) for row in rows])
        tx.scoring.add_awards([_award_row(ctx, a) for a in scorer.awards])
        return len({row[0] for row in rows})

    # --- following the log ------------------------------------------------------------------

    def on_events(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        model = ctx.scoring
        if not model.scores:
            return
        names = model.events()
        # A merged contact's history is now the kept one's: it is scored again from the log
        # (its events up to this batch's end), not from the batch.
        merged = {r.contact_id for r in rows if r.name == "contact.merged"}
        scored = [
            r
            for r in rows
            if (r.name in names or r.name == ADJUSTED) and r.contact_id not in merged
        ]
        changed = (
            {r.contact_id for r in rows if r.name in CONTACT_CHANGES} - merged
            if model.has_field_rules()
            else set()
        )
        ws = ctx.workspace.id
        if scored or changed:
            contacts = {r.contact_id for r in scored} | changed
            scorer = Scorer(model, _epoch(ctx), self._watched(tx, ctx), now)
            for record in tx.scoring.states(ws, contacts).values():
                scorer.load(
                    record.contact_id, record.score, record.norm, record.fixed, record.checked_at
                )
            self._caps(tx, ctx, scorer, scored)
            for e in scored:
                if e.name == ADJUSTED:
                    self._adjusted(scorer, e)
                else:
                    scorer.on_event(e.contact_id, e.id, e.name, e.properties or {}, e.timestamp)
            if changed:
                self._fields(tx, ctx, scorer, sorted(changed), now)
            self._write(tx, ctx, scorer, now)
        if merged:
            tx.scoring.clear_contacts(ws, sorted(merged))
            self._rescore(tx, ctx, sorted(merged), rows[-1].id)

    def _caps(self, tx: Tx, ctx: ConditionContext, scorer: Scorer, events: list[Any]) -> None:
        capped = {
            (spec.name, rule.id): rule.cap.seconds
            for spec in ctx.scoring.scores.values()
            for rule in spec.event_rules
            if rule.cap is not None
            and any(matches(rule.on, e.name, e.properties or {}) for e in events)
        }
        if not capped:
            return
        since = min(e.timestamp for e in events) - timedelta(seconds=max(capped.values()))
        # (awards after the batch's events count too: awards_since has no upper bound)
        keys = [f"{s}/{r}" for s, r in capped]
        for award in tx.scoring.awards_since(
            ctx.workspace.id, {e.contact_id for e in events}, keys, since
        ):
            scorer.earned_before(award.contact_id, award.score, award.rule, award.at, award.points)

    @staticmethod
    def _adjusted(scorer: Scorer, e: Any) -> None:
        props = e.properties or {}
        by = props.get("by")
        number = isinstance(by, int | float) and not isinstance(by, bool) and math.isfinite(by)
        if isinstance(props.get("score"), str) and number:
            scorer.adjust(e.contact_id, props["score"], float(by), e.timestamp, e.id)

    def _fields(
        self, tx: Tx, ctx: ConditionContext, scorer: Scorer, ids: list[int], now: datetime
    ) -> None:
        """Decide the field rules again for these contacts (their points are `fixed`): each
        rule in one statement for them all, in SQL (which agrees with the evaluator)."""
        scope = ctx.scope(now)
        for spec in ctx.scoring.scores.values():
            if not spec.field_rules:
                continue
            fixed = dict.fromkeys(ids, 0.0)
            for rule in spec.field_rules:
                for cid in tx.audiences.member_ids(scope, rule.when, ids):
                    fixed[cid] += rule.points
            for cid, points in fixed.items():
                scorer.set_fixed(cid, spec.name, points)

    def _write(self, tx: Tx, ctx: ConditionContext, scorer: Scorer, now: datetime) -> None:
        tx.scoring.save_states([_state_row(ctx, *row) for row in scorer.rows()])
        tx.scoring.add_awards([_award_row(ctx, a) for a in scorer.awards])
        ws = ctx.workspace.id
        tx.events.append([score_event(c.contact_id, c, ws, now) for c in scorer.changes])

    def _watched(self, tx: Tx, ctx: ConditionContext) -> dict[str, set[float]]:
        """The thresholds active automations' `score_crossed` triggers watch (kept with the
        catalog)."""
        if "scoring.watched" not in ctx.derived:
            definitions = [
                tx.automations.definition(row.id, row.version)
                for row in ctx.automation_rows.values()
                if row.status == "active"
            ]
            found = thresholds(definitions)
            found.pop(DEFAULT_SCORE, None)
            ctx.derived["scoring.watched"] = found
        watched: dict[str, set[float]] = ctx.derived["scoring.watched"]
        return watched

    # --- decay ------------------------------------------------------------------------------

    def sweep(self, limit: int | None = None, *, looked: bool = False) -> int:
        """Record the threshold crossings decay has made by now; how many scores were looked
        at (0: none was due). `looked`: the caller has just seen one due."""
        now = self.clock.now()
        if not looked:
            with self.store.peek() as tx:
                if not tx.scoring.any_due(now):
                    return 0
        return self.store.transact(lambda tx: self._sweep(tx, now, limit or self.batch))

    def _sweep(self, tx: Tx, now: datetime, limit: int) -> int:
        due = tx.scoring.claim_due(now, limit)
        by_workspace: dict[int, list[Any]] = {}
        for record in due:
            by_workspace.setdefault(record.workspace_id, []).append(record)
        for ws, records in by_workspace.items():
            row = tx.workspaces.get(ws)
            if row is None:
                continue
            ctx = self.contexts.get(tx, row)
            scorer = Scorer(ctx.scoring, _epoch(ctx), self._watched(tx, ctx), now)
            for r in records:
                scorer.load(r.contact_id, r.score, r.norm, r.fixed, r.checked_at)
                if r.score in ctx.scoring.scores:
                    scorer.settle(r.contact_id, r.score)
            stale = [
                {
                    **_state_row(ctx, r.contact_id, r.score, None, now, None),
                    "norm": r.norm,
                    "fixed": r.fixed,
                }
                for r in records
                if r.score not in ctx.scoring.scores
            ]
            tx.scoring.save_states(stale)
            self._write(tx, ctx, scorer, now)
        return len(due)

    def arm(self) -> int:
        """After automations changed which thresholds are watched: have every decaying score
        of such a workspace looked at again (by `sweep`), from now on. How many were armed.
        Also moves a model's epoch forward when its weights grew large (every few years)."""
        now = self.clock.now()

        def work(tx: Tx) -> int:
            armed = 0
            for row in tx.scoring.models():
                ws = tx.workspaces.get(row.workspace_id)
                if ws is None:
                    continue
                ctx = self.contexts.get(tx, ws)
                days = max((needs_rebase(d, now) for d in ctx.score_decays.values()), default=0)
                if days:  # weights grow with time since the epoch: move it, scale the norms
                    factors = {
                        name: 1.0 if d is None else 2.0 ** (-(days * 86400) / d.half_life)
                        for name, d in ctx.score_decays.items()
                    }
                    tx.scoring.rebase(row.workspace_id, factors, row.epoch + timedelta(days=days))
                watched = {k: sorted(v) for k, v in self._watched(tx, ctx).items()}
                if watched != {k: sorted(v) for k, v in (row.armed or {}).items()}:
                    armed += tx.scoring.rearm(row.workspace_id, now)
                    tx.scoring.set_armed(row.workspace_id, watched)
            return armed

        return self.store.transact(work)

    def run_until_idle(self) -> None:
        self.arm()
        while self.sweep():
            pass

    # --- explaining -------------------------------------------------------------------------

    def explain(self, workspace: Workspace, contact_id: int) -> dict[str, Any]:
        """A contact's scores now: each rule's points earned and what they are worth now."""
        now = self.clock.now()
        with self.store.read() as tx:
            ctx = ConditionContext(tx, workspace)
            loaded = snapshots.load(tx, ctx, [contact_id], set())
            if contact_id not in loaded.snapshots:
                raise NotFound(f"no contact {contact_id} in this workspace")
            states = tx.scoring.states(workspace.id, [contact_id])
            awards = tx.scoring.awards_of(workspace.id, contact_id)
        snap = loaded.snapshots[contact_id]
        evaluator = Evaluator(ctx.conditions)
        out: dict[str, Any] = {}
        for name, spec in ctx.scoring.scores.items():
            decay = ctx.score_decays[name]
            record = states.get((contact_id, name))
            value = 0.0
            if record is not None:
                value = record.norm * (1.0 if decay is None else decay.factor(now)) + record.fixed
            rules: dict[str, dict[str, Any]] = {}
            for a in awards:
                if a.score != name:
                    continue
                entry = rules.setdefault(
                    a.rule,
                    {
                        "rule": a.rule,
                        "kind": "event",
                        "awards": 0,
                        "points": 0.0,
                        "now": 0.0,
                        "last_at": None,
                    },
                )
                entry["awards"] += 1
                entry["points"] += a.points
                entry["now"] += (
                    a.points * weight(decay, a.at) * (1.0 if decay is None else decay.factor(now))
                )
                entry["last_at"] = max(filter(None, (entry["last_at"], a.at)))
            for rule in spec.field_rules:
                verdict = evaluator.evaluate(rule.when, snap, now)
                if verdict.ok:
                    rules[rule.id] = {
                        "rule": rule.id,
                        "kind": "field",
                        "points": rule.points,
                        "now": rule.points,
                        "why": verdict.why,
                    }
            out[name] = {
                "score": name,
                "value": round(value, 4),
                "half_life_days": None if decay is None else round(decay.half_life / 86400, 4),
                "rules": [
                    {**r, "points": round(r["points"], 4), "now": round(r["now"], 4)}
                    for r in rules.values()
                ],
            }
        return {
            "contact_id": contact_id,
            "at": now,
            "default_score": snap.score,
            "scores": list(out.values()),
        }


def _parser(ctx: ConditionContext) -> Any:
    from conveyor.domain.conditions import Parser

    return Parser(ctx.fields, set(ctx.lists))


def _epoch(ctx: ConditionContext) -> datetime:
    assert ctx.scoring_row is not None
    return ctx.scoring_row.epoch


def _state_row(
    ctx: ConditionContext,
    contact_id: int,
    score: str,
    state: Any,
    checked_at: datetime,
    cross_at: datetime | None,
) -> dict[str, Any]:
    return {
        "contact_id": contact_id,
        "score": score,
        "workspace_id": ctx.workspace.id,
        "norm": state.norm if state is not None else 0.0,
        "fixed": state.fixed if state is not None else 0.0,
        "checked_at": checked_at,
        "cross_at": cross_at,
    }


def _award_row(ctx: ConditionContext, a: Any) -> dict[str, Any]:
    return {
        "contact_id": a.contact_id,
        "workspace_id": ctx.workspace.id,
        "score": a.score,
        "rule": a.rule,
        "event_id": a.event_id,
        "at": a.at,
        "points": a.points,
    }


__all__ = ["LOG_CONSUMER", "Scoring"]
