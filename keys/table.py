"""A live SQL table seen as batches of rows, for `phi-keys rewrap` and `encrypt-existing`.

Two backends behind one small class (`keys.table_backends`, which also opens a table from a
DSN): SQLite (`sqlite:///relative.db`, `sqlite:////abs.db`) and PostgreSQL (`postgresql://…`,
through asyncpg with a private event loop: a CLI needs no async API). Rows are read in key
order (keyset pagination: `WHERE key > last ORDER BY key`),
and each batch's updates are written in ONE transaction together with the job's progress row in
`phi_keys_progress`. A process killed at any instant therefore leaves either the whole batch and
its progress, or neither: a re-run resumes after the last committed batch, and no row is lost
or processed twice. Keyset paging silently skips rows whose key is NULL or repeated, so
`check_key` refuses such a key column before the first batch. BLOB cells are read as Latin-1
text (`BlobText`) so token scans see tokens stored as bytes, and written back as bytes.

Updates are compare-and-set (`UPDATE … SET c = new WHERE key = k AND c = old`): a row the portal
changed while we held it in memory is left alone (and counted), never overwritten with stale data.

Table and column names come from the operator's command line; they are checked against a strict
pattern and quoted, and every value travels as a bound parameter.
"""

# ruff: noqa: S608 - identifiers are checked against _IDENT and double-quoted; values are bound

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from keys.errors import ConfigError, KeyringError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "PROGRESS_TABLE",
    "BlobText",
    "KeyValue",
    "Row",
    "Table",
    "TableSpec",
    "Update",
    "bind_value",
    "quote_ident",
]

PROGRESS_TABLE: Final = "phi_keys_progress"
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

KeyValue = int | str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Which table, which key column, which value columns (and where the practice is)."""

    table: str
    key: str
    columns: tuple[str, ...]
    practice_column: str | None = None

    def __post_init__(self) -> None:
        for part in self.table.split("."):
            _check_ident(part, "--table")
        _check_ident(self.key, "--key")
        if not self.columns:
            raise ConfigError("--columns names no column")
        for column in (*self.columns, self.practice_column or "x"):
            _check_ident(column, "--columns / --practice-column")


class BlobText(str):
    """A BLOB cell read as Latin-1 text, so token scans see tokens stored as bytes.

    Latin-1 maps every byte to one character and back, so a rewrap changes only the tokens'
    bytes; the update binds bytes again, so the compare-and-set matches the stored BLOB.
    """

    __slots__ = ()


def _cell(value: object) -> object:
    """BLOB cells (bytes, memoryview) become `BlobText`; everything else is left as read."""
    if isinstance(value, bytes | bytearray | memoryview):
        return BlobText(bytes(value).decode("latin-1"))
    return value


def bind_value(old: str, value: str) -> str | bytes:
    """`value` as the parameter type of the stored cell: bytes when `old` came from a BLOB."""
    return value.encode("latin-1") if isinstance(old, BlobText) else value


@dataclass(frozen=True, slots=True)
class Row:
    """One row: its key, the selected column values, and its practice (if asked for)."""

    key: KeyValue
    values: dict[str, object]
    practice: object = None

    def __repr__(self) -> str:  # values may be PHI
        return f"Row(key={self.key!r}, columns={sorted(self.values)}, values=[redacted])"


@dataclass(frozen=True, slots=True)
class Update:
    """Set `column` of row `key` to `new`, but only if it still holds `old`."""

    key: KeyValue
    column: str
    old: str
    new: str

    def __repr__(self) -> str:  # old is PHI in encrypt-existing
        return f"Update(key={self.key!r}, column={self.column!r}, values=[redacted])"


def _check_ident(name: str, flag: str) -> None:
    if _IDENT.fullmatch(name) is None:
        raise ConfigError(
            f"{flag}: {name!r} is not a plain SQL identifier (letters, digits, _; not starting "
            "with a digit); quote-free names only"
        )


def quote_ident(name: str) -> str:
    """`name` (already checked against _IDENT per part) double-quoted for SQL."""
    return ".".join(f'"{part}"' for part in name.split("."))


class Table:
    """One table in one database; `close()` when done. Build with `open_table`."""

    def __init__(self, spec: TableSpec, *, dsn_kind: str) -> None:
        self.spec = spec
        self.kind = dsn_kind
        self._p = "?" if dsn_kind == "sqlite" else "$"
        self._n = 0

    def __repr__(self) -> str:
        return f"<Table {self.kind}:{self.spec.table}>"

    # ---- SQL text, shared by both backends -----------------------------------------------

    def _ph(self, index: int) -> str:
        return "?" if self._p == "?" else f"${index}"

    def _select_sql(self, *, after: bool) -> str:
        s = self.spec
        cols = [s.key, *s.columns] + ([s.practice_column] if s.practice_column else [])
        where = f" WHERE {quote_ident(s.key)} > {self._ph(1)}" if after else ""
        limit = self._ph(2 if after else 1)
        return (
            f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM {quote_ident(s.table)}{where} "
            f"ORDER BY {quote_ident(s.key)} LIMIT {limit}"
        )

    def _update_sql(self, column: str) -> str:
        s = self.spec
        return (
            f"UPDATE {quote_ident(s.table)} SET {quote_ident(column)} = {self._ph(1)} "
            f"WHERE {quote_ident(s.key)} = {self._ph(2)} AND {quote_ident(column)} = {self._ph(3)}"
        )

    def _progress_sql(self) -> str:
        p = self._ph
        return (
            f"INSERT INTO {PROGRESS_TABLE} (job, last_key, rows_done, updated_at) "
            f"VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)}) ON CONFLICT (job) DO UPDATE SET "
            "last_key = excluded.last_key, rows_done = excluded.rows_done, "
            "updated_at = excluded.updated_at"
        )

    _CREATE_PROGRESS: Final = (
        f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (job TEXT PRIMARY KEY, "
        "last_key TEXT NOT NULL, rows_done BIGINT NOT NULL, updated_at TEXT NOT NULL)"
    )

    def _rows(self, raw: Sequence[Sequence[Any]]) -> list[Row]:
        out = []
        n = len(self.spec.columns)
        for record in raw:
            key = record[0]
            if not isinstance(key, int | str) or isinstance(key, bool):
                raise KeyringError(
                    f"--key {self.spec.key}: values must be integers or text, got "
                    f"{type(key).__name__}; choose an integer or text primary key column"
                )
            values = dict(zip(self.spec.columns, map(_cell, record[1 : 1 + n]), strict=True))
            practice = record[1 + n] if self.spec.practice_column else None
            out.append(Row(key, values, practice))
        return out

    def _key_counts_sql(self) -> str:
        k = quote_ident(self.spec.key)
        return (
            f"SELECT COUNT(*), COUNT({k}), COUNT(DISTINCT {k}) FROM {quote_ident(self.spec.table)}"
        )

    def check_key(self) -> None:
        """Refuse a --key column with NULLs or duplicates: keyset paging would skip those rows.

        `WHERE key > last` never matches NULL, and a batch ending inside a run of equal keys
        drops the rest of the run; the job would then report success with rows untouched.
        """
        rows, non_null, distinct = self.key_counts()
        flag = f"key column {self.spec.key} (--key; --row-key for retire)"
        if non_null < rows:
            raise ConfigError(
                f"{flag}: {rows - non_null} of {rows} rows of {self.spec.table} have NULL in "
                "this column, and batches ordered by it would silently skip them; nothing was "
                "done. Pass a column that is NOT NULL and unique (the primary key)"
            )
        if distinct < non_null:
            raise ConfigError(
                f"{flag}: {non_null - distinct} rows of {self.spec.table} repeat a value of "
                "this column, and batches ordered by it would silently skip some of them; "
                "nothing was done. Pass a column that is NOT NULL and unique (the primary key)"
            )

    # ---- backend operations (overridden) -------------------------------------------------

    def key_counts(self) -> tuple[int, int, int]:
        """(rows, rows with a key, distinct keys): what `check_key` compares."""
        raise NotImplementedError

    def count(self) -> int:
        """Rows in the table (for the progress bar)."""
        raise NotImplementedError

    def fetch(self, after: KeyValue | None, limit: int) -> list[Row]:
        """The next `limit` rows with key greater than `after` (all from the start if None)."""
        raise NotImplementedError

    def commit_batch(self, updates: Sequence[Update], job: str, last: KeyValue, done: int) -> int:
        """Apply `updates` and record progress in one transaction; returns rows changed."""
        raise NotImplementedError

    def progress(self, job: str) -> tuple[KeyValue, int] | None:
        """(last key, rows done) of an unfinished run of `job`, or None."""
        raise NotImplementedError

    def clear_progress(self, job: str) -> None:
        """Forget `job`'s progress (it finished, or the operator asked to restart)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError
