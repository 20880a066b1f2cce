"""The plain-text part keeps its links, and long headers are folded (issue 19: the text part had
no links at all, not even unsubscribe; a long ASCII subject was one 1,115-character line, past
RFC 5322's 998)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from conveyor.services.rendering import EmailParts, Envelope, compose, html_to_text


def message(subject: str) -> bytes:
    parts = EmailParts(subject, "<p>Hi</p>", "Hi\n", [])
    envelope = Envelope("Shop <news@shop.example>", "ada@example.com", None, "m1@shop.example",
                        datetime(2026, 12, 1, tzinfo=UTC), None)
    return compose(parts, envelope)


def test_the_text_part_keeps_links_and_drops_unsafe_ones():
    text = html_to_text(
        '<p>Read <a href="https://shop.example/guide">the guide</a>.</p>'
        '<p><a href="https://shop.example/u/abc">Unsubscribe</a></p>'
        '<a href="https://shop.example/x"><img src="x.png" alt=""></a>'
        '<a href="mailto:help@shop.example">help@shop.example</a>'
        '<a href="javascript:alert(1)">click</a>'
    )
    assert "the guide (https://shop.example/guide)" in text
    assert "Unsubscribe (https://shop.example/u/abc)" in text
    assert "https://shop.example/x" in text  # an image link: the address alone
    assert "help@shop.example (mailto:help@shop.example)" in text
    assert "javascript" not in text and "click" in text


def test_a_long_ascii_subject_is_folded_and_reads_back_the_same():
    subject = " ".join(f"word{i}" for i in range(200))  # ~1,300 characters
    raw = message(subject)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject


@given(st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                        max_size=1200), min_size=1, max_size=30))
def test_no_header_line_passes_998(words):
    raw = message(" ".join(words))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
