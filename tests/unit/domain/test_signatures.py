"""Webhook signatures: Stripe's `t=…,v1=…` scheme, checked for tampering, keys and replays."""

from __future__ import annotations

import hashlib
import hmac

from conveyor.domain.signatures import sign, verify

SECRET = b"whsec_test"
BODY = b'{"event":"order_completed","total":42.5}'
T = 1_767_600_000


def test_the_header_is_stripes_scheme() -> None:
    expected = hmac.new(SECRET, f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == f"t={T},v1={expected}"


def test_a_signature_verifies_within_the_tolerance() -> None:
    header = sign(SECRET, T, BODY)
    assert verify(SECRET, header, BODY, now=T)
    assert verify(SECRET, header, BODY, now=T + 300)
    assert verify(SECRET, header, BODY, now=T - 300)  # the sender's clock runs a little ahead


def test_a_tampered_body_does_not_verify() -> None:
    header = sign(SECRET, T, BODY)
    assert not verify(SECRET, header, BODY.replace(b"42.5", b"0.5"), now=T)
    assert not verify(SECRET, header, BODY + b" ", now=T)


def test_a_wrong_secret_does_not_verify() -> None:
    assert not verify(b"whsec_other", sign(SECRET, T, BODY), BODY, now=T)


def test_a_stale_or_future_timestamp_does_not_verify() -> None:
    header = sign(SECRET, T, BODY)
    assert not verify(SECRET, header, BODY, now=T + 301)
    assert not verify(SECRET, header, BODY, now=T + 10, tolerance=5)
    assert not verify(SECRET, header, BODY, now=T - 301)


def test_a_replayed_signature_with_a_new_timestamp_does_not_verify() -> None:
    v1 = sign(SECRET, T, BODY).split(",")[1]
    assert not verify(SECRET, f"t={T + 1000},{v1}", BODY, now=T + 1000)


def test_one_matching_v1_among_several_verifies() -> None:
    """While a secret is rotated the sender signs with both."""
    old = sign(b"whsec_old", T, BODY).split(",")[1]
    header = f"{sign(SECRET, T, BODY)},{old}"
    assert verify(SECRET, header, BODY, now=T)
    assert verify(b"whsec_old", header, BODY, now=T)


def test_malformed_headers_do_not_verify() -> None:
    good = sign(SECRET, T, BODY)
    v1 = good.split(",")[1]
    for header in [
        "",
        v1,  # no timestamp
        f"t={T}",  # no signature
        f"t=abc,{v1}",
        f"t=-{T},{v1}",
        f"t={T},t={T},{v1}",
        f"t={T},{v1},garbage",
        f"t={T},v1=\u00e9{v1[4:]}",  # non-ASCII, must not raise
        good.upper(),
    ]:
        assert not verify(SECRET, header, BODY, now=T), header


def test_tokens_from_urls_are_checked_without_raising():
    from conveyor.domain import tracking
    from conveyor.domain.signatures import digits, same_secret

    assert digits("123") and not digits("²") and not digits("١٢") and not digits("1" * 19)
    assert same_secret("abc", "abc") and not same_secret("é", "abc")
    assert not same_secret("\ud800", "abc")
    token = tracking.sign("s", "open", 1, 2)
    assert tracking.verify("s", "open", token) == tracking.TokenData(1, 2)
    for bad in ("²." + token[2:], token[:-1] + "é", "1.2.²", "١.٢.x"):
        assert tracking.verify("s", "open", bad) is None
    assert tracking.workspace_of("².1.x") is None
