"""A backtest split by contact across processes tells exactly what one process tells: the
parts' reports (each from its share of the log) merge into the whole's, every contact's path
included, on a generated shop where another automation competes for the inbox under caps."""

from __future__ import annotations

import pytest
from benchmarks import history

from conveyor.services.simulate import Scope
from conveyor.services.simulate.partition import shareable
from conveyor.services.simulate.report import merged

DAYS, CONTACTS = 6, 90


@pytest.fixture
def shop(conveyor, clock):
    workspace, _ = conveyor.workspaces.create("shop")
    workspace = history.setup(conveyor, conveyor.workspaces.get("shop"), CONTACTS, active=True)
    start = clock.now()
    history.run(conveyor, clock, workspace, history.plan(CONTACTS, DAYS), DAYS, live=True)
    return workspace, start, clock.now()


@pytest.mark.parametrize(
    "scope",
    [
        Scope(history.CART, watch=None),  # the draft alone: the other's real sends count
        Scope(history.CART, with_active=True, watch=None),  # everything re-derived
        Scope(history.CART, sample=40, watch=None),
    ],
    ids=["draft", "with-active", "sample"],
)
def test_a_partitioned_backtest_equals_the_whole(conveyor, shop, scope):
    workspace, start, end = shop
    simulator = conveyor.simulator
    whole = simulator.backtest(workspace, scope, start, end, workers=1)
    expected = whole.as_dict()
    assert expected["automations"]["abandoned-cart"]["entries"] > 5
    assert expected["automations"]["abandoned-cart"]["messages"]["sent"] > 2
    paths = {c: whole.path(c) for c in range(1, CONTACTS + 1)}
    assert sum(len(p["steps"]) for p in paths.values()) > 20

    # In three processes (each reading its share of the log), merged
    split = simulator.backtest(workspace, scope, start, end, workers=3)
    assert split.as_dict() == expected
    assert {c: split.path(c) for c in paths} == paths

    # The parts are disjoint shares of the contacts, and each is a real share
    parts = [simulator.part(workspace, scope, start, end, (p, 2)) for p in range(2)]
    followed = [set(part.paths) for part in parts]
    assert followed[0] and followed[1] and not followed[0] & followed[1]
    assert all(c % 2 == p for p, ids in enumerate(followed) for c in ids)
    assert sum(part.events for part in parts) == whole.events
    assert merged(parts).as_dict() == expected


def test_only_a_database_other_processes_can_open_is_split():
    assert shareable("sqlite:////var/lib/conveyor/conveyor.db")
    assert shareable("postgresql+psycopg://conveyor@db/conveyor")
    assert not shareable("sqlite://")
    assert not shareable("sqlite:///:memory:")
    assert not shareable("sqlite:///file:x?mode=memory&uri=true")
