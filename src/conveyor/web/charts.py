"""Charts drawn on the server as SVG (no chart library, no script): a time series of a few
figures per period, and an automation's funnel as horizontal bars. Pure: figures in, markup
out (escaped by the templates' autoescape where they are strings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    css: str  # the line's class (its colour lives in panel.css)
    points: list[tuple[float, float]]
    last: int


@dataclass(frozen=True)
class TimeChart:
    width: int
    height: int
    series: list[Series]
    grid: list[tuple[float, str]]  # y and its label
    ticks: list[tuple[float, str]]  # x and its label
    bottom: float


def _nice(top: int) -> int:
    """A round axis maximum at or above `top`: four grid steps of 1, 2 or 5 × 10^n each."""
    need = max(1, -(-top // 4))  # the smallest whole step that reaches `top` in four
    scale = 10 ** (len(str(need)) - 1)
    for m in (1, 2, 5, 10):
        if m * scale >= need:
            return 4 * m * scale
    return 40 * scale


def time_chart(
    periods: list[dict[str, Any]], keys: list[tuple[str, str, str]], width: int = WIDTH
) -> TimeChart:
    """One line per (key, label, css) over the periods, on one shared y scale from zero."""
    top = _nice(max([int(p.get(k) or 0) for p in periods for k, _, _ in keys] + [1]))
    inner_w, inner_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(periods) - 1, 1)

    def x(i: int) -> float:
        return round(LEFT + inner_w * i / n, 1)

    def y(v: float) -> float:
        return round(TOP + inner_h * (1 - v / top), 1)

    series = [
        Series(k, label, css, [(x(i), y(int(p.get(k) or 0))) for i, p in enumerate(periods)],
               sum(int(p.get(k) or 0) for p in periods))
        for k, label, css in keys
    ]  # fmt: skip
    grid = [(y(top * f / 4), f"{round(top * f / 4):,}") for f in range(5)]
    every = max(1, len(periods) // 8)
    ticks = [(x(i), p["period"][5:]) for i, p in enumerate(periods) if i % every == 0]
    return TimeChart(width, HEIGHT, series, grid, ticks, HEIGHT - BOTTOM)


@dataclass(frozen=True)
class Bar:
    node: str
    type: str
    reached: int
    converted: int
    y: float
    width: float
    share: str  # of the first node's reach


def funnel(rows: list[dict[str, Any]], width: int = 520) -> tuple[list[Bar], int]:
    """Bars of each node's reach, scaled to the widest; with its share of the entry."""
    widest = max([int(r.get("reached") or 0) for r in rows] + [1])
    first = int(rows[0].get("reached") or 0) if rows else 0
    bars = []
    for i, r in enumerate(rows):
        reached = int(r.get("reached") or 0)
        share = f"{reached / first * 100:.0f}%" if first else "—"
        bars.append(
            Bar(r["node"], r.get("type", ""), reached, int(r.get("converted_after") or 0),
                i * 34.0, round(width * reached / widest, 1), share)
        )  # fmt: skip
    return bars, len(rows) * 34
