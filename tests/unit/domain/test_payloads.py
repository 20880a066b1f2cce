"""Limits on untrusted JSON: nesting depth and lone surrogates, found with their paths."""

from __future__ import annotations

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.domain.payloads import check_depth, lone_surrogate, too_deep


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_depth_is_counted_in_objects_and_arrays():
    assert too_deep(nested(32), 32) is None
    assert too_deep(nested(33), 32) == ".".join(["a"] * 32)
    assert too_deep({"x": [1, [2, [3]]]}, 4) is None
    assert too_deep({"x": [1, [2, [3]]]}, 3) == "x.1.1"
    assert too_deep({"x": [1, [2, [3]]]}, 2) == "x.1"
    assert too_deep("text", 0) is None


def test_a_value_deeper_than_the_interpreter_stack_is_refused_without_recursion():
    with pytest.raises(InvalidInput) as caught:
        check_depth({"properties": nested(5000)}, 32, "batch.3")
    assert caught.value.field.startswith("batch.3.properties.a")


def test_lone_surrogates_are_found_in_keys_and_values():
    assert lone_surrogate({"name": "Zoë 😀", "list": ["ok"]}) is None
    assert lone_surrogate({"a": [{"b": "x\ud800"}]}) == "a.0.b"
    assert lone_surrogate({"k\udc00": 1}) is not None
