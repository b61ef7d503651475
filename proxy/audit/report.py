r"""The breach-notification list: who saw which records' which field classes, when, how often.

Only disclosures count: a record appears when a value of it was decrypted (or legacy plaintext
was kept) for a caller. Records whose fields were only masked never appear. A record with none
of `fields.record.id_keys` cannot be named: its disclosures appear as record `(unknown)`. Lines
of every format version read alike (`disclosed_groups`), so a report spanning an upgrade is
one list.

Record ids come from portal responses, so a caller may have chosen them: every cell of the
table and the CSV shows control, format and other non-printable characters as visible escapes
(`\x1b`, `\r`, `\u202e`), so an id cannot move the cursor, erase or rewrite the rows an
investigator reads. The JSON escapes them the same way, staying valid JSON.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from proxy.audit.chain import READABLE_VERSIONS
from proxy.audit.events import iso_time
from proxy.audit.records import disclosed_groups

intern = sys.intern

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
    from datetime import datetime

__all__ = [
    "UNKNOWN_RECORD",
    "Disclosures",
    "ReportFilter",
    "ReportRow",
    "align_columns",
    "build_report",
    "csv_cell",
    "merged_report",
    "printable",
    "printable_json",
    "render_report",
]

#: The record column of a disclosure from a record that has none of `fields.record.id_keys`.
UNKNOWN_RECORD = "(unknown)"

_COLUMNS = ("subject", "practice", "record", "field_class", "count", "first_seen", "last_seen")


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Every criterion given must match (None: any)."""

    subject: str | None = None
    practice: str | None = None
    record: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def described(self) -> dict[str, str]:
        """The criteria given, as text (times in UTC ISO form): what an audited read records."""
        shown = {"subject": self.subject, "practice": self.practice, "record": self.record}
        times = {"since": self.since, "until": self.until}
        return {
            **{k: v for k, v in shown.items() if v is not None},
            **{k: iso_time(v) for k, v in times.items() if v is not None},
        }


class ReportRow(NamedTuple):
    """One (subject, record, field class), with how often and when it was disclosed.

    A named tuple, not a frozen dataclass: a one-day report of a busy practice has ~200,000
    rows, and building a frozen dataclass (seven `object.__setattr__` calls) cost ~0.4 s there.
    """

    subject: str
    practice: str
    record: str
    field_class: str
    count: int  # type: ignore[assignment] # the column, in place of tuple.count (unused here)
    first_seen: str
    last_seen: str

    def as_tuple(self) -> tuple[str, str, str, str, int, str, str]:
        """The row in column order."""
        return tuple.__new__(tuple, self)


def _counted_classes(event: Mapping[str, Any]) -> set[str]:
    """The field classes the event counts as disclosed (`decrypted` or `plaintext_kept`)."""
    classes: set[str] = set()
    for name in ("decrypted", "plaintext_kept"):
        counts = event.get(name)
        if isinstance(counts, dict):
            classes.update(str(c) for c, n in counts.items() if isinstance(n, int) and n > 0)
    return classes


def _disclosures(
    event: Mapping[str, Any],
) -> Iterator[tuple[str, list[str], list[str], Collection[str]]]:
    """`disclosed_groups`, plus one `(unknown)` record for classes disclosed from no named one.

    Each item: practice (as shown), records, classes, the practices `--practice` may match.
    A record without any of `fields.record.id_keys` is disclosed (counted in `decrypted` or
    `plaintext_kept`) but not named in `records`; the report must still list that disclosure.
    Its practice is one of the event's `practices` (all of them, joined with " or ", when it
    names several). A class disclosed from a named record *and* an unnamed one in the same
    event shows only the named record: the event does not tell them apart.
    """
    if event.get("v") not in READABLE_VERSIONS:
        return  # a format this code cannot read: verify refuses it
    named: set[str] = set()
    for practice, records, classes in disclosed_groups(event):
        if records:
            named.update(classes)
            yield practice, records, classes, (practice,)
    unnamed = sorted(_counted_classes(event) - named)
    if not unnamed:
        return
    practices = event.get("practices")
    candidates = sorted({str(p) for p in practices}) if isinstance(practices, list) else []
    yield " or ".join(candidates) or UNKNOWN_RECORD, [UNKNOWN_RECORD], unnamed, candidates


def _spelled_only_as_text(practice: str | None) -> bool:
    """True when no JSON value but the string `practice` has `str(value) == practice`.

    `--practice` matches `str()` of a group's practice and of each `practices` entry; for
    null, booleans, numbers, lists and objects that is "None", "True", a number, "[…" or "{…".
    Any other text can only come from the string itself, which a canonical line spells in one
    way, so the compiled core may skip lines that do not contain that spelling.
    """
    if not practice or practice in {"None", "True", "False"} or practice[0] in "[{":
        return False
    try:
        float(practice)
    except ValueError:
        return True
    return False


class Disclosures:
    """The report's running totals: fed events one at a time, merged across trail segments.

    Picklable (plain dicts), so a worker process checking one segment of the trail can
    aggregate that segment's events and hand back only the totals.
    """

    __slots__ = ("_seen", "_since", "_until", "where")

    def __init__(self, where: ReportFilter) -> None:
        """Count the request events matching `where`."""
        self.where = where
        self._since = iso_time(where.since) if where.since is not None else None
        self._until = iso_time(where.until) if where.until is not None else None
        self._seen: dict[tuple[str, str, str, str], list[Any]] = {}

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.where, self._since, self._until, self._seen)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.where, self._since, self._until, self._seen = state

    def native_filter(self) -> tuple[str | None, str | None, str | None, str | None]:
        """(subject, since, until, practice): what the compiled core filters lines by.

        It hands `add` only the lines that may pass `add`'s checks (core/src/audit.rs,
        `SinkFilter`), and every line when in doubt; `add` still makes every check itself.
        The practice only when a line can match it just by spelling it as a string (below).
        """
        where = self.where
        practice = where.practice if _spelled_only_as_text(where.practice) else None
        return (where.subject or None, self._since, self._until, practice)

    def add(self, event: dict[str, Any]) -> None:
        """Count `event` if it is a request event matching the filter."""
        if event.get("type") != "request":
            return
        where = self.where
        ts, subject = str(event.get("ts", "")), event.get("subject")
        if not isinstance(subject, str) or (where.subject and subject != where.subject):
            return
        if (self._since is not None and ts < self._since) or (
            self._until is not None and ts >= self._until
        ):
            return
        self._count(event, subject, ts)

    def _count(self, event: dict[str, Any], subject: str, ts: str) -> None:
        """Add the disclosures of `event` (at `ts`, to `subject`) that match the filter."""
        where = self.where
        seen, subject = self._seen, intern(subject)  # shared, the totals pickle smaller
        for practice, records, classes, of in _disclosures(event):
            if where.practice and where.practice not in of:
                continue
            practice, classes = intern(practice), list(map(intern, classes))  # noqa: PLW2901
            for record in records:
                if where.record and record != where.record:
                    continue
                for field_class in classes:
                    key = (subject, practice, record, field_class)
                    entry = seen.get(key)
                    if entry is None:
                        seen[key] = [1, ts, ts]
                        continue
                    entry[0] += 1
                    if ts < entry[1]:
                        entry[1] = ts
                    elif ts > entry[2]:
                        entry[2] = ts

    def row_count(self) -> int:
        """The number of rows so far."""
        return len(self._seen)

    def merge(self, other: Disclosures) -> None:
        """Add `other`'s totals (another stretch of the same trail) to these."""
        seen = self._seen
        for key, (count, first, last) in other._seen.items():
            entry = seen.get(key)
            if entry is None:
                seen[key] = [count, first, last]
            else:
                entry[0] += count
                entry[1], entry[2] = min(entry[1], first), max(entry[2], last)

    def rows(self) -> list[ReportRow]:
        """The rows, sorted by subject, practice, record, field class."""
        seen, new = self._seen, tuple.__new__  # `_make` checks the length again per row
        return [new(ReportRow, (*key, *seen[key])) for key in sorted(seen)]


def build_report(events: Iterable[dict[str, Any]], where: ReportFilter) -> list[ReportRow]:
    """Aggregate the request events matching `where`, sorted by subject, practice, record."""
    totals = Disclosures(where)
    for event in events:
        totals.add(event)
    return totals.rows()


def merged_report(parts: Sequence[Disclosures], where: ReportFilter) -> list[ReportRow]:
    """The rows of several segments' totals (of one filter) together.

    Merged into the largest (a one-day report has most rows in one or two segments: copying
    them into the first segment's empty totals cost ~0.3 s); sums, minima and maxima do not
    depend on the order. `parts` are changed.
    """
    if not parts:
        return Disclosures(where).rows()
    totals = max(parts, key=Disclosures.row_count)
    for part in parts:
        if part is not totals:
            totals.merge(part)
    return totals.rows()


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if code <= 0xFF:  # noqa: PLR2004 - the \xNN range
        return f"\\x{code:02x}"
    if code <= 0xFFFF:  # noqa: PLR2004 - the \uNNNN range
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    r"""`text` with every non-printable character (ESC, CR, LF, bidi controls…) as an escape.

    What a terminal shows is then exactly the text: no escape sequence can run. A backslash is
    left as it is, so an id that itself contains `\x1b` as four characters reads alike.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _json_escape(ch: str) -> str:
    if ch == "\n" or ch.isprintable():
        return ch
    data = ch.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(data[i : i + 2]):04x}" for i in range(0, len(data), 2))


def printable_json(text: str) -> str:
    r"""Serialised JSON with every non-printable character inside strings as a `\uXXXX` escape.

    orjson already escapes U+0000-U+001F, but writes DEL, C1 controls (U+009B is a one-byte
    CSI) and bidi overrides raw. Outside strings valid JSON holds only printable characters and
    the newlines of its indentation, so this keeps the document valid and its values equal.
    """
    if text.isprintable():
        return text
    return "".join(map(_json_escape, text))


def _csv_cell(value: object) -> object:
    """Visible escapes, and spreadsheet formulas neutralised: a record id is not trusted input."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    if value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


#: The CSV cell rule, for the other reports (`phi-audit report --canaries`).
csv_cell = _csv_cell


def align_columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart: the plain tables officers read and grep.

    Also `phi-grants review`'s table, so both reports look alike. `rows` holds at least one row
    (the header), all of the same length. Each cell is shown `printable`, so a value cannot
    move the cursor or rewrite other rows.
    """
    if not "".join(map("".join, rows)).isprintable():  # else every cell shows as it is
        rows = [tuple(map(printable, row)) for row in rows]
    widths = [max(map(len, map(itemgetter(c), rows))) for c in range(len(rows[0]))]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    return [line(*row).rstrip() for row in rows]


def render_report(rows: list[ReportRow], fmt: str) -> str:
    """`table` for people, `json` and `csv` for tools."""
    if fmt == "json":
        return printable_json(
            orjson.dumps(
                [dict(zip(_COLUMNS, r.as_tuple(), strict=True)) for r in rows],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_COLUMNS)
        writer.writerows(tuple(map(_csv_cell, r.as_tuple())) for r in rows)
        return out.getvalue().rstrip("\n")
    table = [tuple(c.upper() for c in _COLUMNS), *(tuple(map(str, r)) for r in rows)]
    lines = align_columns(table)
    subjects = {r.subject for r in rows}
    records = {(r.practice, r.record) for r in rows if r.record != UNKNOWN_RECORD}
    summary = (
        f"{len(records)} record(s) disclosed to {len(subjects)} subject(s) "
        f"in {sum(r.count for r in rows)} disclosure(s)"
    )
    unknown = sum(r.count for r in rows if r.record == UNKNOWN_RECORD)
    if unknown:
        summary += (
            f", {unknown} of them from records without an id (record {UNKNOWN_RECORD}: "
            "fields.record.id_keys names none of their keys; find them by the subject, "
            "practice and time)"
        )
    lines.append(summary)
    return "\n".join(lines)
