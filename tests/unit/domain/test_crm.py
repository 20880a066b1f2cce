"""The sales side's pure rules: pipelines as data, money in cents, moves, turns, the forecast."""

from __future__ import annotations

import pytest

from conveyor.domain import crm
from conveyor.domain.errors import InvalidInput


def test_a_pipeline_reads_its_stages_in_order_and_names_a_bad_one():
    pipeline = crm.parse_pipeline(
        {"key": "sales", "stages": ["Lead", {"name": "Won", "probability": 100}]}
    )
    assert [(s.name, s.probability) for s in pipeline.stages] == [("Lead", 0), ("Won", 100)]
    assert pipeline.name == "sales"
    with pytest.raises(InvalidInput) as caught:
        pipeline.stage("Closing")
    assert caught.value.field == "stage" and "Lead, Won" in caught.value.detail
    for raw, field in [
        ({"key": "Sales!", "stages": ["A"]}, "key"),
        ({"key": "s", "stages": []}, "stages"),
        ({"key": "s", "stages": [{"name": "A", "probability": 101}]}, "stages.0.probability"),
        ({"key": "s", "stages": [{"name": "A", "probability": True}]}, "stages.0.probability"),
        ({"key": "s", "stages": ["A", "A"]}, "stages.1.name"),
        ({"key": "s", "stages": ["A"], "colour": "red"}, "colour"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            crm.parse_pipeline(raw)
        assert caught.value.field == field, raw


@pytest.mark.parametrize(
    ("value", "minor"),
    [(0, 0), (1500, 150000), (1499.99, 149999), ("12.5", 1250), (0.015, 2), (10**12, 10**14)],
)
def test_values_are_kept_in_cents(value, minor):
    assert crm.to_minor(value) == minor
    assert crm.from_minor(minor) == (minor // 100 if minor % 100 == 0 else minor / 100)


@pytest.mark.parametrize("value", [-1, -0.01, "x", None, True, float("nan"), float("inf"), 10**13])
def test_bad_values_are_refused_naming_the_field(value):
    with pytest.raises(InvalidInput) as caught:
        crm.to_minor(value)
    assert caught.value.field == "value"


def test_moves_in_one_step_may_not_go_round_in_a_circle():
    pipeline = crm.parse_pipeline({"key": "s", "stages": ["A", "B", "C"]})
    crm.check_moves(pipeline, ["A", "B", "C"])
    crm.check_moves(pipeline, ["B", "B"])  # staying put is no cycle
    with pytest.raises(InvalidInput, match="a cycle"):
        crm.check_moves(pipeline, ["A", "B", "A"])
    with pytest.raises(InvalidInput, match="no stage 'D'"):
        crm.check_moves(pipeline, ["A", "D"])


def test_round_robin_takes_the_next_member_in_id_order_and_wraps():
    assert crm.next_member([5, 2, 9], None) == 2
    assert crm.next_member([5, 2, 9], 2) == 5
    assert crm.next_member([5, 2, 9], 9) == 2
    assert crm.next_member([5, 2, 9], 7) == 9  # the last one left the team


def test_the_forecast_weighs_open_value_by_stage_probability_per_currency():
    def deal(stage, probability, minor, owner="a@x", currency="EUR", month="2027-01"):
        return crm.ForecastDeal("sales", stage, owner, month, currency, minor, probability)

    out = crm.forecast([
        deal("Lead", 10, 100000), deal("Proposal", 60, 50050), deal("Lead", 10, 1000, "b@x"),
        deal("Lead", 10, 2000, currency="USD", month=None),
    ])  # fmt: skip
    assert out["pipeline"] == [
        {"pipeline": "sales", "currency": "EUR", "deals": 3, "open_value": 1510.5,
         "weighted_value": 401.3},
        {"pipeline": "sales", "currency": "USD", "deals": 1, "open_value": 20,
         "weighted_value": 2},
    ]  # fmt: skip
    assert {(r["owner"], r["currency"]): r["deals"] for r in out["owner"]} == {
        ("a@x", "EUR"): 2, ("b@x", "EUR"): 1, ("a@x", "USD"): 1,
    }  # fmt: skip
    assert [r["month"] for r in out["month"]] == ["2027-01", None]
    assert crm.forecast([]) == {"pipeline": [], "stage": [], "owner": [], "month": []}
