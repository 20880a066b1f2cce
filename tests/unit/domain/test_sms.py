"""SMS segment counting (GSM-7 and UCS-2, single and concatenated) and carrier keywords."""

from __future__ import annotations

import pytest

from conveyor.domain.sms import SmsSegments, keyword, segments


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_fits_160_alone_and_153_per_part(length, expected):
    assert segments("a" * length) == SmsSegments("GSM-7", length, expected)


def test_every_gsm7_basic_character_is_one_septet():
    body = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./09:;<=>?¡AZÄÖÑÜ§¿azäöñüà"
    assert segments(body) == SmsSegments("GSM-7", len(body), 1)


def test_extension_characters_stay_gsm7_but_count_two_septets():
    assert segments("€") == SmsSegments("GSM-7", 2, 1)
    for char in "€[]{}^~|\\\f":
        assert segments(char).units == 2, char
    assert segments("€" + "a" * 158) == SmsSegments("GSM-7", 160, 1)
    assert segments("€" + "a" * 159) == SmsSegments("GSM-7", 161, 2)
    assert segments("[" * 80) == SmsSegments("GSM-7", 160, 1)


def test_an_escape_sequence_is_not_cut_across_two_parts():
    # 152 septets, then € would take septets 153 and 154: it moves whole to the second part.
    assert segments("a" * 152 + "€" + "a" * 152) == SmsSegments("GSM-7", 306, 3)
    assert segments("a" * 151 + "€" + "a" * 153) == SmsSegments("GSM-7", 306, 2)


def test_one_character_outside_gsm7_switches_the_whole_body_to_ucs2():
    assert segments("a" * 69 + "ç") == SmsSegments("UCS-2", 70, 1)  # ç is not GSM-7, Ç is
    assert segments("a" * 70 + "ç") == SmsSegments("UCS-2", 71, 2)
    assert segments("“quoted”").encoding == "UCS-2"
    assert segments("Привет").encoding == "UCS-2"


@pytest.mark.parametrize(
    ("length", "expected"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_fits_70_alone_and_67_per_part(length, expected):
    assert segments("ж" * length) == SmsSegments("UCS-2", length, expected)


def test_emoji_are_two_utf16_units_and_never_split():
    assert segments("😀") == SmsSegments("UCS-2", 2, 1)
    assert segments("Hi 😀") == SmsSegments("UCS-2", 5, 1)
    assert segments("😀" * 35) == SmsSegments("UCS-2", 70, 1)
    assert segments("😀" * 36) == SmsSegments("UCS-2", 72, 2)
    # 66 units, then an emoji would straddle units 67 and 68: it opens the second part.
    assert segments("ж" * 66 + "😀" + "ж" * 66) == SmsSegments("UCS-2", 134, 3)
    assert segments("ж" * 65 + "😀" + "ж" * 67) == SmsSegments("UCS-2", 134, 2)


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop",
        "STOPALL",
        "UNSUBSCRIBE",
        "cancel",
        "End",
        "QUIT",
        "revoke",
        "OPTOUT",
        "  stop  ",
        "stop.",
        "STOP!",
        "\nStop\n",
        '"stop"',
        "¡STOP!",
    ],
)
def test_opt_out_keywords(body):
    assert keyword(body) == "stop"


@pytest.mark.parametrize("body", ["START", "start", "Yes", "YES!", "unstop", " Unstop. "])
def test_opt_in_keywords(body):
    assert keyword(body) == "start"


@pytest.mark.parametrize("body", ["HELP", "help", "Help?", "INFO", "info "])
def test_help_keywords(body):
    assert keyword(body) == "help"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "!!!",
        "stop please",
        "please stop",
        "STOP ALL",
        "stopp",
        "st op",
        "Yesterday",
        "help me",
        "no",
        "Thanks!",
        "I want to unsubscribe",
        "stop2",
    ],
)
def test_anything_but_a_single_keyword_is_no_keyword(body):
    assert keyword(body) is None
