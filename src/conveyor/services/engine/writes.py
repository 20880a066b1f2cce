"""What a tick writes at its end: contacts and events (the writer), runs new and changed, steps,
outbox messages — and the metrics of what it did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import telemetry

if TYPE_CHECKING:
    from conveyor.services.engine.tick import Tick


def _step_labels(
    tick: Tick, automation_id: int, version: int, node: str, outcome: str
) -> tuple[str, str]:
    """A step's metric labels: its node's type ("entry" for a skipped entry) and outcome."""
    try:
        found = tick.automation(automation_id, version).nodes.get(node)
    except Exception:  # counting never fails a tick
        found = None
    return (found.type if found is not None else "entry", outcome)


def flush(tick: Tick) -> None:
    """The tick's writes, a few bulk statements in its transaction; new runs get their ids."""
    tick.writer.flush()
    touched = list(tick.touched.values())
    new = [r for r in touched if r.new]
    ids = tick.tx.automations.add_runs([r.insert_row(tick.workspace.id) for r in new])
    tick.tx.automations.save_runs([{**r.columns(), "id": r.id} for r in touched if not r.new])
    for run, run_id in zip(new, ids, strict=True):
        run.id, run.new = run_id, False
        tick.known[run_id] = run
    rows: list[dict[str, Any]] = []
    tally: dict[tuple[int, int, str, str], int] = {}
    for run, row in tick.steps:  # the tick's own dicts: no copy
        row["run_id"] = run.id if run else None
        rows.append(row)
        key = (row["automation_id"], row["version"], row["node"], row["outcome"])
        tally[key] = tally.get(key, 0) + 1
    tick.tx.automations.add_steps(rows)
    for (automation_id, version, node, outcome), n in tally.items():
        labels = _step_labels(tick, automation_id, version, node, outcome)
        telemetry.STEPS.labels(*labels).inc(n)
    telemetry.count(telemetry.RUNS_ADVANCED, ((why,) for why in tick.advanced))
    tick.tx.automations.add_messages(
        [
            {**row, "run_id": run.id, "idempotency_key": f"run:{run.id}:step:{step}"}
            for run, step, row in tick.messages
        ]
    )
    tick.touched, tick.steps, tick.messages, tick.advanced = {}, [], [], []
    for run in touched:
        run.changed = False
