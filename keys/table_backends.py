"""The two backends of `keys.table.Table` (SQLite, PostgreSQL) and `open_table` for a DSN.

SQL is built by `Table` from checked, quoted identifiers; every value is a bound parameter.
"""

# ruff: noqa: S608 - identifiers are checked by keys.table and double-quoted; values are bound

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from keys.errors import ConfigError, KeyringError
from keys.table import (
    PROGRESS_TABLE,
    KeyValue,
    Row,
    Table,
    TableSpec,
    Update,
    bind_value,
    quote_ident,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

__all__ = ["check_dsn", "open_table"]

_T = TypeVar("_T")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _SQLiteTable(Table):
    def __init__(self, spec: TableSpec, path: Path) -> None:
        super().__init__(spec, dsn_kind="sqlite")
        if not path.exists():
            raise KeyringError(f"{path}: SQLite database not found; check --dsn")
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute(self._CREATE_PROGRESS)

    def count(self) -> int:
        return int(
            self._db.execute(f"SELECT COUNT(*) FROM {quote_ident(self.spec.table)}").fetchone()[0]
        )

    def key_counts(self) -> tuple[int, int, int]:
        rows, non_null, distinct = self._db.execute(self._key_counts_sql()).fetchone()
        return int(rows), int(non_null), int(distinct)

    def fetch(self, after: KeyValue | None, limit: int) -> list[Row]:
        args: tuple[Any, ...] = (limit,) if after is None else (after, limit)
        return self._rows(
            self._db.execute(self._select_sql(after=after is not None), args).fetchall()
        )

    def commit_batch(self, updates: Sequence[Update], job: str, last: KeyValue, done: int) -> int:
        changed = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for u in updates:
                changed += self._db.execute(
                    self._update_sql(u.column),
                    (bind_value(u.old, u.new), u.key, bind_value(u.old, u.old)),
                ).rowcount
            self._db.execute(self._progress_sql(), (job, json.dumps(last), done, _now()))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return changed

    def progress(self, job: str) -> tuple[KeyValue, int] | None:
        row = self._db.execute(
            f"SELECT last_key, rows_done FROM {PROGRESS_TABLE} WHERE job = ?", (job,)
        ).fetchone()
        return None if row is None else (json.loads(row[0]), int(row[1]))

    def clear_progress(self, job: str) -> None:
        self._db.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE job = ?", (job,))

    def close(self) -> None:
        self._db.close()


class _PostgresTable(Table):
    def __init__(self, spec: TableSpec, dsn: str) -> None:
        super().__init__(spec, dsn_kind="postgresql")
        import asyncpg  # noqa: PLC0415 - optional dependency, only for postgresql:// DSNs

        self._runner = asyncio.Runner()
        try:
            self._db = self._runner.run(asyncpg.connect(dsn, timeout=10))
        except (OSError, asyncpg.PostgresError) as exc:
            self._runner.close()
            raise KeyringError(
                f"cannot connect to PostgreSQL ({type(exc).__name__}); check --dsn, the server "
                "and credentials"
            ) from None
        self._run(self._db.execute(self._CREATE_PROGRESS))

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._runner.run(coro)

    def count(self) -> int:
        return int(
            self._run(self._db.fetchval(f"SELECT COUNT(*) FROM {quote_ident(self.spec.table)}"))
        )

    def key_counts(self) -> tuple[int, int, int]:
        row = self._run(self._db.fetchrow(self._key_counts_sql()))
        return int(row[0]), int(row[1]), int(row[2])

    def fetch(self, after: KeyValue | None, limit: int) -> list[Row]:
        args: tuple[Any, ...] = (limit,) if after is None else (after, limit)
        sql = self._select_sql(after=after is not None)
        return self._rows([tuple(r) for r in self._run(self._db.fetch(sql, *args))])

    def commit_batch(self, updates: Sequence[Update], job: str, last: KeyValue, done: int) -> int:
        async def work() -> int:
            changed = 0
            async with self._db.transaction():
                for u in updates:
                    status = await self._db.execute(
                        self._update_sql(u.column),
                        bind_value(u.old, u.new),
                        u.key,
                        bind_value(u.old, u.old),
                    )
                    changed += int(status.rsplit(" ", 1)[-1])
                await self._db.execute(self._progress_sql(), job, json.dumps(last), done, _now())
            return changed

        return int(self._run(work()))

    def progress(self, job: str) -> tuple[KeyValue, int] | None:
        row = self._run(
            self._db.fetchrow(
                f"SELECT last_key, rows_done FROM {PROGRESS_TABLE} WHERE job = $1", job
            )
        )
        return None if row is None else (json.loads(row[0]), int(row[1]))

    def clear_progress(self, job: str) -> None:
        self._run(self._db.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE job = $1", job))

    def close(self) -> None:
        try:
            self._run(self._db.close())
        finally:
            self._runner.close()


def check_dsn(dsn: str) -> str:
    """Return a postgresql:// `dsn` unless it carries a password.

    A password (`user:password@` or `?password=`) on a command line sits in `ps` output and
    shell history for the whole run: the config's rule for database URLs. Anything libpq takes
    otherwise (a Unix socket `?host=/run/postgresql`, several hosts) is the operator's choice
    on the command line. ConfigError otherwise; the message never repeats the DSN.
    """
    from proxy.postgres_url import refuse_password  # noqa: PLC0415 - keys need no proxy import

    try:
        refuse_password(dsn, setting="--dsn")
    except ValueError as exc:
        raise ConfigError(f"{exc}. Nothing was done") from None
    return dsn


def open_table(dsn: str, spec: TableSpec) -> Table:
    """Open `spec` in the database named by `dsn` (sqlite:///… or postgresql://…)."""
    if dsn.startswith("sqlite:///"):
        return _SQLiteTable(spec, Path(dsn.removeprefix("sqlite:///")))
    if dsn.startswith(("postgresql://", "postgres://")):
        return _PostgresTable(spec, check_dsn(dsn))
    raise ConfigError(
        "--dsn must start with sqlite:/// (sqlite:///relative.db or sqlite:////absolute.db) "
        "or postgresql://"
    )
