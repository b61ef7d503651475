from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.grants import format_duration, parse_duration


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30d", timedelta(days=30)),
            ("12h", timedelta(hours=12)),
            ("45m", timedelta(minutes=45)),
            ("90s", timedelta(seconds=90)),
            ("2w", timedelta(weeks=2)),
            ("1d12h", timedelta(days=1, hours=12)),
            (" 7D ", timedelta(days=7)),
            ("3600", timedelta(hours=1)),
        ],
    )
    def test_examples(self, text, expected):
        """Units w/d/h/m/s, combinations and bare seconds are understood."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", "d", "0", "0d", "-1d", "1.5d", "1y", "3mo", "30 d"])
    def test_rejects(self, text):
        """Zero, negative, fractional, unknown units and junk are refused."""
        with pytest.raises(ValueError, match=r"duration|zero"):
            parse_duration(text)

    def test_rejects_absurd_lengths(self):
        """Durations over 100 years are refused rather than overflowing."""
        with pytest.raises(ValueError, match="100 years"):
            parse_duration("999999999w")

    @given(st.integers(min_value=1, max_value=10**9))
    def test_format_round_trip(self, seconds):
        """format_duration writes what parse_duration reads back exactly."""
        delta = timedelta(seconds=seconds)
        assert parse_duration(format_duration(delta)) == delta

    @given(st.text(max_size=12))
    def test_never_crashes_otherwise(self, text):
        """Any text either parses to a positive duration or raises ValueError."""
        try:
            result = parse_duration(text)
        except ValueError:
            return
        assert result > timedelta(0)
