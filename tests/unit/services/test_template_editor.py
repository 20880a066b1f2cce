"""Where a draft's errors are: MJML's unbalanced tags found at their line and column (mrml says
only what is wrong), Liquid and HTML's void elements left alone."""

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.services.template_editor import Problem, mjml_problem, problem_of

FALLBACK = Problem("content.mjml", "not valid MJML: unexpected end of stream")


def test_a_tag_closed_out_of_order_is_found_where_it_is_closed():
    source = "<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n    </mj-column>\n  </mj-body>"
    found = mjml_problem(source, FALLBACK)
    assert (found.line, found.column) == (5, 3)
    assert found.message.startswith("</mj-body> closes <mj-section> (opened at line 3, column 5)")
    assert found.message.endswith("unexpected end of stream")


def test_a_tag_never_closed_is_found_where_it_opens():
    source = (
        "<mjml><mj-body>\n<mj-text>{{ contact.first_name }}<br><img src='x'>\n</mj-body></mjml>"
    )
    found = mjml_problem(source, FALLBACK)
    assert (found.line, found.column) == (3, 1)  # </mj-body> closes the open <mj-text>
    balanced = "<mjml><mj-body><mj-raw><p>{% if a < b %}x{% endif %}</mj-raw></mj-body></mjml>"
    assert mjml_problem(balanced, FALLBACK).line == 1  # nothing found: the start


@pytest.mark.parametrize(
    ("reason", "where"),
    [
        ("line 2, column 31: unknown filter 'shout'", (2, 31, "unknown filter 'shout'")),
        ("line 2, column -4: expected tag endif", (2, 1, "expected tag endif")),
        ("a email template needs 'subject'", (None, None, "a email template needs 'subject'")),
    ],
)
def test_a_reason_is_split_into_its_place_and_message(reason, where):
    found = problem_of(InvalidInput("content.html", reason))
    assert (found.line, found.column, found.message) == where
    assert found.part == "html"
