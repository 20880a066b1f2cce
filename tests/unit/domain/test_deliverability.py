"""The deliverability guard's pure rules: providers by domain, the verdict from the rates."""

from __future__ import annotations

import pytest

from conveyor.domain.deliverability import (
    GuardRules,
    ProviderCounts,
    judge,
    parse_rules,
    provider_of,
)
from conveyor.domain.errors import InvalidInput


@pytest.mark.parametrize(
    ("address", "provider"),
    [
        ("ada@gmail.com", "gmail"),
        ("Ada@GoogleMail.com", "gmail"),
        ("b@yahoo.co.uk", "yahoo"),
        ("c@aol.com", "yahoo"),
        ("d@hotmail.com", "outlook"),
        ("e@live.com", "outlook"),
        ("f@me.com", "icloud"),
        ("g@acme.example", "other"),
        (None, "other"),
        ("broken", "other"),
    ],
)
def test_providers_by_domain(address, provider):
    assert provider_of(address) == provider


def test_a_workspace_maps_its_own_domains():
    assert provider_of("h@corp.example", {"corp.example": "outlook"}) == "outlook"


R = GuardRules(min_volume=100)


@pytest.mark.parametrize(
    ("sent", "bounces", "complaints", "status"),
    [
        (99, 50, 50, "ok"),  # below the minimum volume nothing is judged
        (1000, 0, 0, "ok"),
        (2000, 0, 1, "ok"),  # 0.05 %: under half of 0.2 %
        (1000, 0, 1, "throttled"),  # 0.1 %: half of it
        (1000, 0, 2, "paused"),  # 0.2 %
        (2000, 0, 3, "throttled"),  # 0.15 %
        (1000, 30, 0, "throttled"),  # 3 % hard bounces: over half of 5 %
        (1000, 50, 0, "paused"),
    ],
)
def test_the_verdict_follows_the_rates(sent, bounces, complaints, status):
    assert judge(ProviderCounts("gmail", sent, bounces, complaints), R).status == status


def test_a_pause_holds_until_resumed_and_says_why():
    verdict = judge(ProviderCounts("gmail", 1000, 0, 5), R)
    assert verdict.reason == "complaint rate 0.50% over 1000 emails reached the 0.20% threshold"
    assert judge(ProviderCounts("gmail", 1000, 0, 0), R, "paused").status == "paused"
    assert judge(ProviderCounts("gmail", 1000, 0, 0), R, "throttled").status == "ok"


def test_disabled_never_holds():
    rules = parse_rules({"enabled": False})
    assert judge(ProviderCounts("gmail", 1000, 500, 500), rules).status == "ok"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"complaint_rate": 0}, "deliverability.complaint_rate"),
        ({"min_volume": 0}, "deliverability.min_volume"),
        ({"domains": {"x.example": "aol"}}, "deliverability.domains"),
        ({"colour": 1}, "deliverability.colour"),
        ([], "deliverability"),
    ],
)
def test_bad_rules_name_the_field(raw, field):
    with pytest.raises(InvalidInput) as caught:
        parse_rules(raw)
    assert caught.value.field == field
