"""The server-drawn charts: axis maxima, points inside the plot, the funnel's shares."""

from __future__ import annotations

import pytest

from conveyor.web.charts import HEIGHT, _nice, funnel, time_chart


@pytest.mark.parametrize("top", [1, 3, 4, 5, 9, 13, 99, 101, 4321, 10**7 + 1])
def test_the_axis_maximum_covers_the_data_in_four_round_steps(top):
    nice = _nice(top)
    step = nice // 4
    assert nice >= top and nice % 4 == 0
    assert int(str(step).rstrip("0") or "0") in (1, 2, 5)
    assert nice < 4 * top + 8  # never wildly above the data


def test_lines_share_one_scale_and_stay_inside_the_plot():
    periods = [{"period": f"2026-01-{d:02}", "sent": d * 10, "opens": d} for d in range(1, 31)]
    chart = time_chart(periods, [("sent", "Sent", "a"), ("opens", "Opens", "b")], width=900)
    sent, opens = chart.series
    assert len(sent.points) == 30 and sent.last == sum(d * 10 for d in range(1, 31))
    for x, y in sent.points + opens.points:
        assert 0 <= x <= 900 and 0 <= y <= HEIGHT
    assert sent.points[-1][1] < opens.points[-1][1]  # more is higher (smaller y)
    assert [label for _, label in chart.grid][-1] == "400"  # 300 needs steps of 75: 100
    assert len(chart.ticks) <= 10


def test_an_empty_range_draws_flat_lines_and_a_lone_period_does_not_divide_by_zero():
    chart = time_chart([{"period": "2026-01-01"}], [("sent", "Sent", "a")])
    assert chart.series[0].last == 0 and len(chart.series[0].points) == 1


def test_the_funnel_scales_to_the_widest_and_shows_shares_of_the_entry():
    bars, height = funnel(
        [
            {"node": "a", "type": "send_email", "reached": 200, "converted_after": 10},
            {"node": "b", "type": "wait", "reached": 50, "converted_after": 0},
            {"node": "c", "type": "send_email", "reached": 0, "converted_after": 0},
        ],
        width=400,
    )
    assert [b.width for b in bars] == [400, 100, 0]
    assert [b.share for b in bars] == ["100%", "25%", "0%"]
    assert height == 3 * 34
    assert funnel([])[0] == []
