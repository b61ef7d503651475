"""A stacked bar chart as inline SVG, drawn on the server: no script, no library, no fetch.

The console's content security policy allows no inline style or script, so the chart is plain
SVG elements with presentation attributes (`fill`, `x`, `height`), which CSP does not govern.
It is an image to assistive technology (`role="img"`, named by its `<title>` and described by
its `<desc>`, which states the totals and the busiest bucket); the page puts the same numbers
in a data table beside it, which is the accessible form of the chart. Every label is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markupsafe import Markup

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PALETTE", "BarChart", "Series", "nice_ceiling", "stacked_bar_svg", "tick_step"]

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), darkest first;
#: yellow is left out (too little contrast on white). More series than colours repeat them; the
#: data table beside the chart still tells them apart.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

_WIDTH = 720
_HEIGHT = 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 56
_MAX_X_LABELS = 12
#: About how wide a character of the chart's labels is (15px text, in viewBox units).
_CHAR_WIDTH = 8.5
_LEGEND_ROW = 22


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer: a label (a practice) and its value in each bucket."""

    label: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BarChart:
    """Buckets along x (e.g. days), and the series stacked in each (e.g. practices)."""

    buckets: tuple[str, ...]
    series: tuple[Series, ...]

    def totals(self) -> list[int]:
        """The height of each bucket's bar."""
        return [sum(s.values[i] for s in self.series) for i in range(len(self.buckets))]


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times 10^k at or above `value` (at least 1): the y axis's top."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _attrs(**values: object) -> Markup:
    return Markup(" ").join(
        Markup('{}="{}"').format(name.rstrip("_").replace("_", "-"), value)
        for name, value in values.items()
    )


def stacked_bar_svg(chart: BarChart, *, title: str, desc: str, ident: str) -> Markup:
    """The chart as an `<svg>` element, ready to place in a template (already escaped).

    `ident` makes the ids of its title and description unique on the page.
    """
    legend_rows = math.ceil(len(chart.series) / 4) if chart.series else 0
    height = _HEIGHT + legend_rows * _LEGEND_ROW
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    top = nice_ceiling(max(chart.totals(), default=0))
    parts: list[Markup] = [
        Markup(
            '<svg xmlns="http://www.w3.org/2000/svg" {} role="img" aria-labelledby="{} {}">'
        ).format(
            _attrs(viewBox=f"0 0 {_WIDTH} {height}", width="100%", class_="chart"),
            f"{ident}-title",
            f"{ident}-desc",
        ),
        Markup('<title id="{}">{}</title>').format(f"{ident}-title", title),
        Markup('<desc id="{}">{}</desc>').format(f"{ident}-desc", desc),
    ]
    parts += _axis(top, plot_w, plot_h)
    parts += _bars(chart, top, plot_w, plot_h)
    parts += _x_labels(chart.buckets, plot_w)
    parts += _legend(chart.series, _HEIGHT)
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _y(value: float, top: int, plot_h: int) -> float:
    return _TOP + plot_h - value / top * plot_h


def tick_step(top: int) -> int:
    """The y axis's step: the smallest 1, 2 or 5 times 10^k giving at most 5 intervals to `top`."""
    step = 1
    while top > 5 * step:
        step = nice_ceiling(step + 1)
    return step


def _axis(top: int, plot_w: int, plot_h: int) -> list[Markup]:
    ticks = range(0, top + 1, tick_step(top))
    out = []
    for tick in ticks:
        y = f"{_y(tick, top, plot_h):.1f}"
        out.append(
            Markup("<line {}/>").format(
                _attrs(x1=_LEFT, x2=_LEFT + plot_w, y1=y, y2=y, stroke="#d0d0d0")
            )
        )
        out.append(
            Markup("<text {}>{}</text>").format(
                _attrs(x=_LEFT - 8, y=y, text_anchor="end", dominant_baseline="middle"), tick
            )
        )
    return out


def _bars(chart: BarChart, top: int, plot_w: int, plot_h: int) -> list[Markup]:
    count = len(chart.buckets)
    if not count:
        return []
    slot = plot_w / count
    width = max(slot * 0.7, 1.0)
    out = []
    for i, bucket in enumerate(chart.buckets):
        x = _LEFT + i * slot + (slot - width) / 2
        below = 0
        for n, series in enumerate(chart.series):
            value = series.values[i]
            if value <= 0:
                continue
            y_top, y_bottom = _y(below + value, top, plot_h), _y(below, top, plot_h)
            below += value
            out.append(
                Markup("<rect {}><title>{}</title></rect>").format(
                    _attrs(
                        x=f"{x:.1f}",
                        y=f"{y_top:.1f}",
                        width=f"{width:.1f}",
                        height=f"{y_bottom - y_top:.1f}",
                        fill=PALETTE[n % len(PALETTE)],
                        stroke="#ffffff",
                        stroke_width="0.5",
                    ),
                    f"{bucket}, {series.label}: {value}",
                )
            )
    return out


def _x_labels(buckets: Sequence[str], plot_w: int) -> list[Markup]:
    count = len(buckets)
    if not count:
        return []
    slot = plot_w / count
    widest = max(len(label) for label in buckets) * _CHAR_WIDTH + 12
    every = max(1, math.ceil(count / _MAX_X_LABELS), math.ceil(widest / slot))
    out = []
    for i in range(0, count, every):
        x = _LEFT + i * slot + slot / 2
        out.append(
            Markup("<text {}>{}</text>").format(
                _attrs(x=f"{x:.1f}", y=_HEIGHT - _BOTTOM + 20, text_anchor="middle"), buckets[i]
            )
        )
    return out


def _legend(series: Sequence[Series], y0: int) -> list[Markup]:
    out = []
    column = (_WIDTH - _LEFT) / 4
    for n, layer in enumerate(series):
        x = _LEFT + (n % 4) * column
        y = y0 - _BOTTOM + 36 + (n // 4) * _LEGEND_ROW
        out.append(
            Markup("<rect {}/>").format(
                _attrs(x=f"{x:.1f}", y=y, width=14, height=14, fill=PALETTE[n % len(PALETTE)])
            )
        )
        out.append(
            Markup("<text {}>{}</text>").format(
                _attrs(x=f"{x + 20:.1f}", y=y + 7, dominant_baseline="middle"), layer.label
            )
        )
    return out
