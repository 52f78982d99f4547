"""The backtest chart: one self-contained HTML page (inline SVG and CSS, no script, nothing fetched).

- *Share of members per tier*: a 100% stacked bar per period (so a small top tier is as tall as its share, not a
  sliver of the largest count), the y axis ticked 0 to 100%, the x axis ticked with the period ends (thinned so that
  labels never overlap), the share written in each segment tall enough to hold it, and a legend.
- *Share per tier*: each tier's share of members as a line on its own scale (ticked at round percentages), so
  that a tier of 2% shows its moves as clearly as the largest one.
- *Benefit cost and points*: the benefit cost per ``costs.period`` (left axis, in the base currency) and the
  points outstanding (right axis) as lines, with ticks at round values on both axes.
- A table of every period: members and share per tier, moves, cost, points issued and outstanding.

Every drawn element carries ``data-*`` attributes (tier, period, value) and a ``<title>`` tooltip.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

from crmsync.policy.trial import BacktestPeriod

COLORS = ["#b8860b", "#708090", "#cd7f32", "#4682b4", "#2e8b57", "#8b4513", "#6a5acd", "#c71585", "#999999"]
COST_COLOR, POINTS_COLOR = "#c0392b", "#1f6fb2"
WIDTH, LEFT, RIGHT = 960, 80, 230
PLOT_W = WIDTH - LEFT - RIGHT
SHARE_TOP, SHARE_H = 50, 260
LINES_TOP, LINES_H = 60, 200
SMALL_TOP, SMALL_H, SMALL_GAP = 50, 70, 40
MIN_LABEL_PX = 14
LABEL_PX = 72  # room for one date label


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Ticks from 0 at a round step (1, 2, 2.5 or 5 times a power of ten), the last one at or above ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _day(p: BacktestPeriod) -> str:
    return p.as_of.astimezone(UTC).strftime("%Y-%m-%d")


def _x_axis(periods: Sequence[BacktestPeriod], bottom: float) -> list[str]:
    """Tick marks and date labels under each period (every k-th label when there are many)."""
    n = max(len(periods), 1)
    bar_w = PLOT_W / n
    every = max(math.ceil(LABEL_PX / bar_w), 1)  # a label every so many periods, so that labels never overlap
    parts = [f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{LEFT + PLOT_W}" y2="{bottom}" stroke="#333"/>']
    for i, p in enumerate(periods):
        if i % every:
            continue
        x = LEFT + (i + 0.5) * bar_w
        parts.append(f'<line class="xtick" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#333"/>')
        parts.append(
            f'<text class="xlabel" data-period="{i}" x="{x:.1f}" y="{bottom + 18}" font-size="11" '
            f'text-anchor="middle">{_day(p)}</text>'
        )
    return parts


def _y_axis(ticks: list[float], top: float, height: float, x: float, side: str, fmt: str) -> list[str]:
    """Grid lines and labels of a y axis from 0 to ``ticks[-1]`` (``side``: ``left`` or ``right``)."""
    anchor, dx = ("end", -6) if side == "left" else ("start", 6)
    parts = [f'<line class="axis" x1="{x}" y1="{top}" x2="{x}" y2="{top + height}" stroke="#333"/>']
    for t in ticks:
        y = top + height - height * t / ticks[-1]
        if side == "left":
            parts.append(
                f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}" stroke="#ddd"/>'
            )
        text = html.escape(fmt.format(_label(t)))
        parts.append(
            f'<text class="ytick {side}" data-value="{t:g}" x="{x + dx}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="{anchor}">{text}</text>'
        )
    return parts


def _legend(entries: Sequence[tuple[str, str]], top: float) -> list[str]:
    x = LEFT + PLOT_W + 56
    parts = []
    for j, (name, color) in enumerate(entries):
        y = top + j * 20
        parts.append(f'<rect class="legend" x="{x}" y="{y}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 18}" y="{y + 10}" font-size="12">{html.escape(name)}</text>')
    return parts


def share_svg(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> str:
    """100% stacked bars of each period's members per tier (the default tier at the bottom)."""
    n = max(len(periods), 1)
    bar_w = PLOT_W / n
    bottom = SHARE_TOP + SHARE_H
    parts = _y_axis([0, 25, 50, 75, 100], SHARE_TOP, SHARE_H, LEFT, "left", "{}%")
    for i, p in enumerate(periods):
        total, y = p.members, float(bottom)
        for j, name in reversed(list(enumerate(tier_names))):
            count = p.distribution.get(name, 0)
            share = count / total if total else 0.0
            h = SHARE_H * share
            y -= h
            tip = html.escape(f"{_day(p)} {name}: {count} members, {100 * share:.1f}%")
            x = LEFT + i * bar_w + min(2, bar_w / 8)
            w = bar_w - 2 * min(2, bar_w / 8)
            parts.append(
                f'<rect class="share" data-period="{i}" data-tier="{html.escape(name)}" data-count="{count}" '
                f'x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{COLORS[j % len(COLORS)]}">'
                f"<title>{tip}</title></rect>"
            )
            if h >= MIN_LABEL_PX and w >= 30:
                parts.append(
                    f'<text class="share-label" x="{x + w / 2:.1f}" y="{y + h / 2 + 4:.1f}" font-size="10" '
                    f'text-anchor="middle" fill="#fff">{100 * share:.0f}%</text>'
                )
    parts += _x_axis(periods, bottom)
    parts += _legend([(t, COLORS[j % len(COLORS)]) for j, t in enumerate(tier_names)], SHARE_TOP)
    height = bottom + 30
    return _svg("share", "Share of members per tier", parts, height)


def _line(
    series: str, values: Sequence[float], top_value: float, color: str, unit: str, box: tuple[float, float]
) -> list[str]:
    """A polyline with a point per period, scaled from 0 to ``top_value`` into ``box`` (top, height)."""
    series = html.escape(series)
    n = max(len(values), 1)
    bar_w = PLOT_W / n
    top, height = box
    pts = [(LEFT + (i + 0.5) * bar_w, top + height - height * v / top_value) for i, v in enumerate(values)]
    coords = " ".join(f"{x:.2f},{y:.2f}" for x, y in pts)
    parts = [f'<polyline class="line" data-series="{series}" points="{coords}" fill="none" stroke="{color}" '
             'stroke-width="2"/>']  # fmt: skip
    for i, ((x, y), v) in enumerate(zip(pts, values, strict=True)):
        parts.append(
            f'<circle class="point" data-series="{series}" data-period="{i}" data-value="{v:g}" cx="{x:.2f}" '
            f'cy="{y:.2f}" r="3" fill="{color}"><title>{html.escape(f"{series}: {v:,.2f}{unit}")}</title></circle>'
        )
    return parts


def lines_svg(periods: Sequence[BacktestPeriod]) -> str:
    """The benefit cost per cost period (left axis) and the points outstanding (right axis) over the periods."""
    cost = [float(p.cost) for p in periods]
    points = [float(p.points.outstanding) for p in periods]
    unit = periods[0].cost_unit if periods else None
    money = f"{unit.currency} per {unit.per}" if unit else ""
    cost_ticks, point_ticks = nice_ticks(max(cost, default=0)), nice_ticks(max(points, default=0))
    parts = _y_axis(cost_ticks, LINES_TOP, LINES_H, LEFT, "left", "{}")
    parts += _y_axis(point_ticks, LINES_TOP, LINES_H, LEFT + PLOT_W, "right", "{}")
    box = (LINES_TOP, LINES_H)
    parts += _line("cost", cost, cost_ticks[-1], COST_COLOR, f" {money}", box)
    parts += _line("points", points, point_ticks[-1], POINTS_COLOR, " points", box)
    parts += _x_axis(periods, LINES_TOP + LINES_H)
    parts += _legend([(f"cost, {money}", COST_COLOR), ("points outstanding", POINTS_COLOR)], LINES_TOP)
    return _svg("lines", "Benefit cost and points outstanding", parts, LINES_TOP + LINES_H + 30)


def tiers_svg(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> str:
    """One small chart per tier (highest first): its share of members per period, on its own scale."""
    parts: list[str] = []
    for j, name in enumerate(tier_names):
        top = SMALL_TOP + j * (SMALL_H + SMALL_GAP)
        shares = [100 * p.distribution.get(name, 0) / p.members if p.members else 0.0 for p in periods]
        ticks = nice_ticks(max(shares, default=0), 2)
        color = COLORS[j % len(COLORS)]
        parts.append(f'<g class="tier" data-tier="{html.escape(name)}">')
        parts += _y_axis(ticks, top, SMALL_H, LEFT, "left", "{}%")
        parts += _line(f"share:{name}", shares, ticks[-1], color, "%", (top, SMALL_H))
        parts += _legend([(name, color)], top)
        parts.append("</g>")
    bottom = SMALL_TOP + len(tier_names) * (SMALL_H + SMALL_GAP) - SMALL_GAP
    parts += _x_axis(periods, bottom)
    return _svg("tiers", "Share per tier, each on its own scale", parts, bottom + 30)


def _svg(name: str, title: str, parts: list[str], height: float) -> str:
    head = f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{html.escape(title)}</text>'
    return (
        f'<svg id="{name}" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}">{head}{"".join(parts)}</svg>'
    )


def table_html(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> str:
    """Every period's members and share per tier, moves, cost and points."""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in tier_names)
    rows = []
    for p in periods:
        total = p.members or 1
        cells = "".join(
            f"<td>{p.distribution.get(t, 0)} ({100 * p.distribution.get(t, 0) / total:.1f}%)</td>" for t in tier_names
        )
        rows.append(
            f"<tr><td>{_day(p)}</td>{cells}<td>{p.up}</td><td>{p.down}</td><td>{p.cost}</td>"
            f"<td>{p.points.issued}</td><td>{p.points.outstanding}</td></tr>"
        )
    unit = periods[0].cost_unit if periods else None
    cost = f"cost ({html.escape(unit.currency)} per {html.escape(unit.per)})" if unit else "cost"
    return (
        f"<table><tr><th>as of</th>{head}<th>up</th><th>down</th><th>{cost}</th><th>points issued</th>"
        f"<th>points outstanding</th></tr>{''.join(rows)}</table>"
    )


def chart_html(periods: Sequence[BacktestPeriod], tier_names: Sequence[str], title: str = "Tier distribution") -> str:
    """The self-contained HTML page of the module's docstring."""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:16px}svg{display:block;margin-bottom:12px}"
        "td,th{padding:2px 8px;text-align:right;white-space:nowrap}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{share_svg(periods, tier_names)}{tiers_svg(periods, tier_names)}"
        f"{lines_svg(periods)}"
        f"{table_html(periods, tier_names)}</body></html>"
    )


def write_chart(
    path: str | Path, periods: Sequence[BacktestPeriod], tier_names: Sequence[str], title: str = ""
) -> Path:
    """Write :func:`chart_html` to ``path`` and return it."""
    out = Path(path)
    out.write_text(chart_html(periods, tier_names, title or "Tier distribution"), encoding="utf-8")
    return out
