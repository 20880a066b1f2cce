"""What a tick writes at its end: contacts and events (the writer), runs new and changed, steps,
outbox messages — and the metrics of what it did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import telemetry
from conveyor.services.engine.runs import LiveRun

if TYPE_CHECKING:
    from conveyor.services.engine.tick import Tick


def _step_labels(tick: Tick, item: tuple[LiveRun | None, dict[str, Any]]) -> tuple[str, str]:
    """A step's metric labels: its node's type ("entry" for a skipped entry) and outcome."""
    row = item[1]
    try:
        node = tick.automation(row["automation_id"], row["version"]).nodes.get(row["node"])
    except Exception:  # counting never fails a tick
        node = None
    return (node.type if node is not None else "entry", row["outcome"])


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
    tick.tx.automations.add_steps(
        [{**row, "run_id": run.id if run else None} for run, row in tick.steps]
    )
    telemetry.count(telemetry.STEPS, (_step_labels(tick, item) for item in tick.steps))
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
