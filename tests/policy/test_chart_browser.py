"""The backtest chart, rendered by a headless Chromium: what is drawn is what the periods say.

The browser is Chromium driven by Playwright (``CRMSYNC_CHROMIUM``, default ``/usr/bin/chromium``; Debian:
``apt-get install chromium``; ``.ci/run`` installs it). Without it this test fails, it does not skip.
"""

from __future__ import annotations

import io
import itertools
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from crmsync.policy.chart import COLORS, SHARE_H, write_chart
from crmsync.policy.trial import BacktestPeriod, CostUnit, PointsLiability, shift

CHROMIUM = os.environ.get("CRMSYNC_CHROMIUM", "/usr/bin/chromium")
TIERS = ["Platinum", "Gold", "Silver", "<Bronze & co>"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium) or set CRMSYNC_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def _periods(seed: int) -> list[BacktestPeriod]:
    """Random periods: a top tier of a few per cent (or none at all), costs and points moving."""
    rng = random.Random(seed)
    n = [1, 3, 12, 40][seed % 4]
    out = []
    for i in range(n):
        members = rng.randint(50, 200_000)
        top = 0 if seed == 5 else int(members * rng.uniform(0.002, 0.03))
        gold = int(members * rng.uniform(0.02, 0.1))
        silver = int(members * rng.uniform(0.1, 0.3))
        dist = {"Platinum": top, "Gold": gold, "Silver": silver, "<Bronze & co>": members - top - gold - silver}
        cost = Decimal(top * 40 + gold * 15 + silver * 5)
        points = PointsLiability(rng.randint(0, 10**6), 0, 0, rng.randint(0, 10**7))
        at = shift(datetime(2024, 1, 31, tzinfo=UTC), "month", i)
        out.append(BacktestPeriod(at, dist, cost, 0, 0, cost_unit=CostUnit("EUR", "month"), points=points))
    return out


def _boxes(page: Any, selector: str) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        selector,
        """els => els.map(e => { const r = e.getBoundingClientRect();
            return {x: r.x, y: r.y, w: r.width, h: r.height, text: e.textContent,
                    data: Object.assign({}, e.dataset), fill: e.getAttribute('fill')}; })""",
    )


def _render(browser: Any, periods: list[BacktestPeriod], tmp_path: Path) -> tuple[Any, list[str], bytes]:
    path = write_chart(tmp_path / "chart.html", periods, TIERS, title="Backtest")
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, requests, page.screenshot(full_page=True)


@pytest.mark.parametrize("seed", range(6))
def test_the_chart_draws_each_share_with_axes_and_lines(browser: Any, tmp_path: Path, seed: int) -> None:
    periods = _periods(seed)
    page, requests, png = _render(browser, periods, tmp_path)
    assert requests == [(tmp_path / "chart.html").as_uri()]  # nothing fetched: one self-contained file
    ticks = {b["text"]: b for b in _boxes(page, "#share text.ytick")}
    assert list(ticks) == ["0%", "25%", "50%", "75%", "100%"]
    zero, full = ticks["0%"]["y"] + ticks["0%"]["h"] / 2, ticks["100%"]["y"] + ticks["100%"]["h"] / 2
    assert abs((zero - full) - SHARE_H) < 2
    bars = _boxes(page, "#share rect.share")
    assert len(bars) == len(periods) * len(TIERS)
    for i, p in enumerate(periods):
        mine = sorted((b for b in bars if b["data"]["period"] == str(i)), key=lambda b: b["y"])
        assert [b["data"]["tier"] for b in mine if b["h"] > 0] == [t for t in TIERS if p.distribution[t]]
        for b in mine:
            assert abs(b["h"] - SHARE_H * p.distribution[b["data"]["tier"]] / p.members) < 0.6
        drawn = [b for b in mine if b["h"] > 0]
        assert abs(drawn[0]["y"] - full) < 2.5 and abs(drawn[-1]["y"] + drawn[-1]["h"] - zero) < 2.5
        for upper, lower in itertools.pairwise(drawn):
            assert abs(upper["y"] + upper["h"] - lower["y"]) < 0.6  # stacked without gaps
    _check_x_labels(page, periods)
    _check_lines(page, periods)
    _check_tier_scales(page, periods)
    _check_pixels(png, bars)


def _check_x_labels(page: Any, periods: list[BacktestPeriod]) -> None:
    labels = _boxes(page, "#share text.xlabel")
    assert 1 <= len(labels) <= 13
    bars = {b["data"]["period"]: b for b in _boxes(page, "#share rect.share")}
    for label in labels:
        bar = bars[label["data"]["period"]]
        assert label["text"] == f"{periods[int(label['data']['period'])].as_of:%Y-%m-%d}"
        assert bar["x"] - 1 <= label["x"] + label["w"] / 2 <= bar["x"] + bar["w"] + 1
    for a, b in itertools.pairwise(labels):
        assert a["x"] + a["w"] <= b["x"]  # labels do not overlap


def _axis_scale(page: Any, svg: str, side: str) -> tuple[float, float, float]:
    """(y of 0, y of the top tick, the top tick's value) of a y axis, from the drawn tick labels."""
    ticks = _boxes(page, f"{svg} text.ytick.{side}")
    ys = [(float(t["data"]["value"]), t["y"] + t["h"] / 2) for t in ticks]
    return ys[0][1], ys[-1][1], ys[-1][0]


def _check_lines(page: Any, periods: list[BacktestPeriod]) -> None:
    for series, side, values in (
        ("cost", "left", [float(p.cost) for p in periods]),
        ("points", "right", [float(p.points.outstanding) for p in periods]),
    ):
        y0, y1, top = _axis_scale(page, "#lines", side)
        assert top >= max(values) and (max(values) == 0 or top < 2.5 * max(values))
        dots = _boxes(page, f'#lines circle[data-series="{series}"]')
        assert len(dots) == len(periods)
        for dot, value in zip(dots, values, strict=True):
            assert abs(dot["y"] + dot["h"] / 2 - (y0 + (y1 - y0) * value / top)) < 1


def _check_tier_scales(page: Any, periods: list[BacktestPeriod]) -> None:
    """Each tier has its own scale: its highest share is drawn in the upper part of its panel."""
    groups = page.eval_on_selector_all("#tiers g.tier", "gs => gs.map(g => g.dataset.tier)")
    assert groups == TIERS
    for name in TIERS:
        shares = [100 * p.distribution[name] / p.members for p in periods]
        sel = f'#tiers g.tier[data-tier="{name}"]'
        y0, y1, top = _axis_scale(page, sel, "left")
        dots = _boxes(page, f"{sel} circle")
        for dot, share in zip(dots, shares, strict=True):
            assert abs(dot["y"] + dot["h"] / 2 - (y0 + (y1 - y0) * share / top)) < 1
        if max(shares) > 0:
            assert max(shares) / top >= 0.4


def _check_pixels(png: bytes, bars: list[dict[str, Any]]) -> None:
    """What the screen shows: the middle of each segment at least 3 px tall has the tier's colour."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    for b in bars:
        if b["h"] >= 3 and b["w"] >= 3:
            x, y = int(b["x"] + 2), int(b["y"] + b["h"] / 2)
            color = "#{:02x}{:02x}{:02x}".format(*image.getpixel((x, y)))
            assert color == b["fill"], (b["data"], color)
    assert {b["fill"] for b in bars} <= set(COLORS)


def test_the_page_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    page = write_chart(tmp_path / "c.html", _periods(2), TIERS).read_text(encoding="utf-8")
    assert "&lt;Bronze &amp; co&gt;" in page and "<Bronze" not in page
    for needle in ("<script", "http:", "https:", "src=", "href=", "url(", "@import"):
        assert needle not in page
