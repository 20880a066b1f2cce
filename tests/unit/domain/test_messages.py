"""Segment-spec calls: validation, clock-skew correction, and how traits map to attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.domain.messages import parse_call, trait_key, traits_to_values

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_call_needs_an_identity_and_names_what_is_missing():
    with pytest.raises(InvalidInput) as caught:
        parse_call({"type": "track", "event": "x"})
    assert caught.value.field == "userId"
    with pytest.raises(InvalidInput) as caught:
        parse_call({"type": "track", "userId": "u"})
    assert caught.value.field == "event"
    with pytest.raises(InvalidInput) as caught:
        parse_call({"type": "alias", "userId": "u"})
    assert caught.value.field == "previousId"


def test_endpoint_type_is_implied_and_must_match():
    call = parse_call({"userId": 42, "event": "x"}, call_type="track")
    assert call.type == "track" and call.userId == "42"
    with pytest.raises(InvalidInput, match="takes 'track' calls"):
        parse_call({"type": "identify", "userId": "u"}, call_type="track")
    with pytest.raises(InvalidInput) as caught:
        parse_call({"type": "purchase", "userId": "u"})
    assert caught.value.field == "type"


def test_timestamp_wins_then_skew_corrected_original_timestamp():
    explicit = parse_call(
        {"type": "track", "userId": "u", "event": "e", "timestamp": "2026-01-01T00:00:00Z"}
    )
    assert explicit.occurred_at(NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    # The device clock runs 1 hour fast: it says it sent 10 s after the event happened.
    skewed = parse_call(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "originalTimestamp": "2026-03-01T13:00:00Z",
            "sentAt": "2026-03-01T13:00:10Z",
        }
    )
    assert skewed.occurred_at(NOW) == NOW - timedelta(seconds=10)
    assert parse_call({"type": "page", "anonymousId": "a"}).occurred_at(NOW) == NOW


def test_sent_at_corrects_a_client_clock_as_segment_documents():
    # Every SDK sends its own clock's `timestamp` beside `sentAt`: a device one hour slow
    # still lands at the moment it happened on the server's clock (10 s before receipt).
    slow = parse_call(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": (NOW - timedelta(hours=1, seconds=10)).isoformat(),
            "sentAt": (NOW - timedelta(hours=1)).isoformat(),
        }
    )
    assert slow.occurred_at(NOW) == NOW - timedelta(seconds=10)
    # A server-side import of old events sent now (a correct clock) keeps their moments.
    old = datetime(2025, 6, 1, tzinfo=UTC)
    imported = parse_call(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": old.isoformat(),
            "sentAt": NOW.isoformat(),
        }
    )
    assert imported.occurred_at(NOW) == old
    # originalTimestamp (the raw device clock) is what is corrected when both are given.
    both = parse_call(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": "2020-01-01T00:00:00Z",
            "originalTimestamp": (NOW - timedelta(minutes=5)).isoformat(),
            "sentAt": NOW.isoformat(),
        }
    )
    assert both.occurred_at(NOW) == NOW - timedelta(minutes=5)
    # "Sent before it happened" cannot be: never later than the receipt.
    odd = parse_call(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": (NOW + timedelta(minutes=1)).isoformat(),
            "sentAt": NOW.isoformat(),
        }
    )
    assert odd.occurred_at(NOW) == NOW


def test_identify_takes_traits_from_context_as_rudderstack_sends_them():
    call = parse_call(
        {
            "type": "identify",
            "userId": "u",
            "context": {"traits": {"email": "a@b.co", "plan": "pro"}},
            "traits": {"plan": "team"},
        }
    )
    assert call.traits == {"email": "a@b.co", "plan": "team"}
    # Other calls keep context.traits as context only.
    track = parse_call(
        {"type": "track", "userId": "u", "event": "e", "context": {"traits": {"plan": "x"}}}
    )
    assert not hasattr(track, "traits")


def test_traits_map_to_contact_attributes():
    values = traits_to_values(
        {
            "email": "a@b.co",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "createdAt": "2020-01-01",
            "address": {"city": "London", "postalCode": "N1"},
            "id": "u1",
            "planName": "pro",
        }
    )
    assert values == {
        "email": "a@b.co",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "trait_created_at": "2020-01-01",
        "address_city": "London",
        "address_postal_code": "N1",
        "plan_name": "pro",
    }
    assert traits_to_values({"name": "Grace Brewster Hopper"}) == {
        "first_name": "Grace",
        "last_name": "Brewster Hopper",
    }


def test_trait_keys():
    assert trait_key("firstName") == "first_name"
    assert trait_key("userId") is None
    assert trait_key("Lifetime Value") == "lifetime_value"


def test_a_sent_at_centuries_away_from_the_moment_is_no_error():
    far = parse_call(
        {
            "type": "alias",
            "userId": "u",
            "previousId": "p",
            "timestamp": "0001-01-01T00:00:00Z",
            "sentAt": "9999-12-31T00:00:00Z",
        }
    )
    assert far.occurred_at(NOW) == datetime(1, 1, 1, tzinfo=UTC)
