"""Hypothesis strategies shared by the keys tests (one module, as STYLE.md asks)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

field_classes = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
kids = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
practice_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True)
# Any Unicode scalar value except lone surrogates (which cannot be UTF-8 encoded).
plaintexts = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)

#: The clock of keystore fixtures: a fixed instant, so created_at values are predictable.
FIXED_NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
