"""The server-drawn SVG bar chart: well-formed, named for assistive technology, labels escaped."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from proxy.console.chart import (
    PALETTE,
    BarChart,
    Series,
    nice_ceiling,
    stacked_bar_svg,
    tick_step,
)

SVG = "{http://www.w3.org/2000/svg}"


def _parse(chart: BarChart, **kw) -> ET.Element:
    kw.setdefault("title", "Disclosures per day")
    kw.setdefault("desc", "Two days.")
    kw.setdefault("ident", "t")
    return ET.fromstring(str(stacked_bar_svg(chart, **kw)))  # noqa: S314 - our own output


CHART = BarChart(
    ("2026-03-01", "2026-03-02", "2026-03-03"),
    (Series("practice-a", (4, 0, 2)), Series("practice-b", (1, 3, 0))),
)


class TestSvg:
    def test_it_is_an_image_named_by_its_title_and_description(self):
        svg = _parse(CHART, title="Disclosures per day", desc="Seven in all.")
        assert svg.get("role") == "img"
        assert svg.get("aria-labelledby") == "t-title t-desc"
        assert svg.find(f"{SVG}title").get("id") == "t-title"
        assert svg.find(f"{SVG}title").text == "Disclosures per day"
        assert svg.find(f"{SVG}desc").text == "Seven in all."
        assert svg.get("style") is None  # the CSP allows no inline style

    def test_one_segment_per_non_zero_value_with_heights_in_proportion(self):
        svg = _parse(CHART)
        bars = [r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
        labels = [r.find(f"{SVG}title").text for r in bars]
        assert labels == [
            "2026-03-01, practice-a: 4",
            "2026-03-01, practice-b: 1",
            "2026-03-02, practice-b: 3",
            "2026-03-03, practice-a: 2",
        ]
        heights = [float(r.get("height")) for r in bars]
        unit = heights[0] / 4
        for height, value in zip(heights, (4, 1, 3, 2), strict=True):
            assert abs(height - value * unit) < 0.2
        assert bars[0].get("fill") == PALETTE[0]
        assert bars[1].get("fill") == PALETTE[1]

    def test_labels_are_escaped_not_markup(self):
        evil = '<script>alert(1)</script>"&'
        chart = BarChart(("d<1>",), (Series(evil, (1,)),))
        raw = str(stacked_bar_svg(chart, title="a<b", desc="c&d", ident='x"y'))
        assert "<script>" not in raw
        svg = ET.fromstring(raw)  # noqa: S314 - our own output
        texts = [t.text for t in svg.iter(f"{SVG}text")]
        assert evil in texts
        assert "d<1>" in texts
        assert svg.find(f"{SVG}title").text == "a<b"

    def test_an_empty_chart_is_still_a_valid_image(self):
        svg = _parse(BarChart((), ()))
        assert svg.get("role") == "img"
        assert list(svg.iter(f"{SVG}rect")) == []


@given(st.integers(0, 10**9))
def test_the_axis_top_is_a_round_number_at_or_above_the_largest_bar(value):
    top = nice_ceiling(value)
    assert top >= max(value, 1)
    mantissa = top
    while mantissa % 10 == 0:
        mantissa //= 10
    assert mantissa in {1, 2, 5}
    assert value == 0 or top < 2.5 * value or top == 1


@given(st.integers(0, 10**9))
def test_the_axis_ticks_are_round_and_at_most_six(value):
    """0 to the top in steps of 1, 2 or 5 times 10^k, the top itself a tick."""
    top = nice_ceiling(value)
    step = tick_step(top)
    assert top % step == 0
    assert 1 <= top // step <= 5
    mantissa = step
    while mantissa % 10 == 0:
        mantissa //= 10
    assert mantissa in {1, 2, 5}
