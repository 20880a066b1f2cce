"""`conveyor automation positions KEY` and `apply FILE --move v1:node=target` as a user runs them:
contacts waiting in a node the new file removes are moved where the flag says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.services.contacts import ContactChange
from conveyor.settings import Settings
from tests.e2e.test_cli_and_server import run

pytestmark = pytest.mark.e2e
V1 = """key: welcome
triggers: [{manual: true}]
nodes:
  - {id: hello, type: add_tag, tag: v1-hello}
  - {id: week, type: wait, for: 7 days}
  - {id: second, type: add_tag, tag: v1-second}
"""
V2 = V1.replace("v1-", "v2-").replace(
    "{id: week, type: wait, for: 7 days}", "{id: day, type: wait, for: 1 day}"
)


def test_positions_and_apply_with_moves(env, tmp_path, database_url):
    run(env, "workspace", "create", "default")
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    v1.write_text(V1)
    v2.write_text(V2)
    assert (
        "created (version 1, active)"
        in run(env, "automation", "apply", str(v1), "--activate").stdout
    )
    # Two contacts enter and wait in `week` (in-process, on the same database).
    # The CLI runs on the real clock: the simulated one starts there, to move past its moments.
    clock = SimulatedClock(datetime.now(UTC) - timedelta(minutes=1))
    settings = Settings(database_url=database_url, data_dir=Path(env["CONVEYOR_DATA_DIR"]))
    app = bootstrap(settings, clock=clock)
    try:
        ws = app.workspaces.get("default")
        ids = [
            app.contacts.create(ws, ContactChange({"email": f"c{i}@ex.com"})).id for i in range(2)
        ]
        for cid in ids:
            app.engine.enroll(ws, "welcome", cid)
    finally:
        app.close()
    shown = run(env, "automation", "positions", "welcome").stdout
    assert "live version 1, 2 inside" in shown and "week" in shown
    bad = run(env, "automation", "apply", str(v2), "--move", "v1:week=nowhere", check=False)
    assert bad.returncode == 1 and "no node 'nowhere'" in bad.stderr
    bad = run(env, "automation", "apply", str(v2), "--move", "week-day", check=False)
    assert bad.returncode == 1 and "v1:NODE=TARGET" in bad.stderr
    done = run(env, "automation", "apply", str(v2), "--move", "v1:week=day").stdout
    assert "moved 2 from v1:week to v2:day" in done and "new version (version 2" in done
    shown = run(env, "automation", "positions", "welcome").stdout
    assert "live version 2, 2 inside" in shown and "v2" in shown and "day" in shown
    assert "week" not in shown
    app = bootstrap(settings, clock=clock)
    try:
        clock.advance(timedelta(hours=1))  # past the move: the runs start `day`'s wait
        app.engine.run_until_idle()
        clock.advance(timedelta(days=1, seconds=1))
        app.engine.run_until_idle()
        ws = app.workspaces.get("default")
        for cid in ids:
            assert set(app.contacts.get(ws, cid).tags) == {"v1-hello", "v2-second"}
    finally:
        app.close()
