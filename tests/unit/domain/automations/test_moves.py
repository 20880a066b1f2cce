"""Editing a live automation, the pure part: removed/changed nodes, targets, due times, plans."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.domain.automations.moves import (
    CHANGED,
    REMOVED,
    SAME,
    DuplicateMove,
    Move,
    UnknownPosition,
    UnknownTarget,
    change_of,
    due_at,
    positions,
    targets,
    validate,
)
from conveyor.domain.errors import InvalidInput

from .conftest import NOW, automation

V1 = automation(
    """
key: welcome
triggers: [{list_subscribed: newsletter}]
nodes:
  - {id: hello, type: add_tag, tag: welcomed}
  - {id: week, type: wait, for: 7 days}
  - {id: second, type: add_tag, tag: second}
  - {id: later, type: wait, for: 7 days}
  - {id: third, type: add_tag, tag: third}
"""
)
V2 = automation(
    """
key: welcome
triggers: [{list_subscribed: newsletter}]
nodes:
  - {id: hello, type: add_tag, tag: welcomed}
  - {id: week, type: wait, for: 3 days}
  - {id: second, type: add_tag, tag: second}
  - {id: third, type: add_tag, tag: third}
  - id: opened
    type: wait_until
    condition: {tag: clicked}
    timeout: 2 days
  - {id: morning, type: wait_until, at: "09:00"}
"""
)


def test_a_node_is_removed_changed_or_the_same():
    assert change_of("later", V1, V2) == REMOVED
    assert change_of("week", V1, V2) == CHANGED  # 7 days → 3 days
    assert change_of("hello", V1, V2) == SAME
    # `second` keeps its settings but now leads to `third`, not `later`: changed
    assert change_of("second", V1, V2) == CHANGED


def test_positions_count_runs_per_version_and_node_in_file_order():
    counts = {(1, "later"): 4, (1, "week"): 2, (1, "hello"): 0, (2, "week"): 1}
    found = positions({1: V1, 2: V2}, counts, V2)
    assert [(p.version, p.node, p.count, p.change, p.type) for p in found] == [
        (2, "week", 1, SAME, "wait"),
        (1, "week", 2, CHANGED, "wait"),
        (1, "later", 4, REMOVED, "wait"),
    ]


def test_runs_of_a_version_no_longer_stored_count_as_removed():
    found = positions({2: V2}, {(1, "gone"): 3}, V2)
    assert [(p.node, p.type, p.change) for p in found] == [("gone", "?", REMOVED)]


def test_every_node_of_the_new_version_is_a_target():
    assert [n.id for n in targets(V2)] == ["hello", "week", "second", "third", "opened", "morning"]


def test_a_wait_starts_over_at_the_move_and_other_nodes_are_due_at_once():
    assert due_at(V2.nodes["week"], NOW) == NOW + timedelta(days=3)
    assert due_at(V2.nodes["third"], NOW) == NOW
    assert due_at(V2.nodes["opened"], NOW) == NOW  # the condition is checked at once
    assert due_at(V2.nodes["morning"], NOW) is None  # its own moment, per contact


def test_a_valid_plan_is_returned_as_given():
    plan = [Move(1, "later", "third"), Move(1, "week", "week")]
    assert validate(plan, {1: V1, 2: V2}, V2, 3) == plan
    assert plan[0].label(3) == "v1:later to v3:third"


def test_an_unknown_target_names_the_node_and_the_field():
    with pytest.raises(UnknownTarget) as caught:
        validate([Move(1, "later", "nowhere")], {1: V1}, V2, 2)
    assert caught.value.field == "moves.0.to_node"
    assert caught.value.node == "nowhere"
    assert "no node 'nowhere'" in caught.value.detail
    assert isinstance(caught.value, InvalidInput)  # the API's 422 problem


def test_an_origin_must_be_a_node_of_an_earlier_version():
    with pytest.raises(UnknownPosition) as caught:
        validate([Move(1, "nope", "third")], {1: V1}, V2, 2)
    assert (caught.value.field, caught.value.node) == ("moves.0.from_node", "nope")
    with pytest.raises(UnknownPosition) as caught:
        validate([Move(2, "week", "third")], {1: V1, 2: V2}, V2, 2)  # not earlier
    assert caught.value.field == "moves.0.from_version"
    with pytest.raises(UnknownPosition):
        validate([Move(7, "week", "third")], {1: V1}, V2, 8)  # no such version


def test_one_origin_moves_once_and_every_error_is_listed():
    plan = [Move(1, "later", "third"), Move(1, "later", "hello"), Move(1, "week", "x")]
    with pytest.raises(DuplicateMove) as caught:
        validate(plan, {1: V1}, V2, 2)
    assert caught.value.field == "moves.1.from_node"
    assert [e.field for e in caught.value.errors] == ["moves.1.from_node", "moves.2.to_node"]
