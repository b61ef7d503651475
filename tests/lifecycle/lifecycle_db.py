"""A tiny synchronous view of a test table in SQLite or PostgreSQL (the same rows in both)."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg


class TestTable:
    """id INTEGER key, practice_id, and three PHI columns; plus the progress table."""

    __test__ = False  # not a test class

    def __init__(self, kind: str, target, table: str) -> None:
        self.kind = kind
        self.target = target
        self.table = table

    def _sql(self, sql: str) -> str:
        if self.kind == "sqlite":
            return sql
        n = 0
        out = []
        for ch in sql:
            if ch == "?":
                n += 1
                out.append(f"${n}")
            else:
                out.append(ch)
        return "".join(out)

    def execute(self, sql: str, *rows: tuple) -> list[tuple]:
        sql = self._sql(sql.replace("{T}", f'"{self.table}"'))
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                if len(rows) > 1:
                    conn.executemany(sql, rows)
                    return []
                return conn.execute(sql, rows[0] if rows else ()).fetchall()

        async def run() -> list[tuple]:
            conn = await asyncpg.connect(self.target)
            try:
                if len(rows) > 1:
                    await conn.executemany(sql, rows)
                    return []
                return [tuple(r) for r in await conn.fetch(sql, *(rows[0] if rows else ()))]
            finally:
                await conn.close()

        return asyncio.run(run())

    def create(self, rows: list[tuple]) -> None:
        self.execute(
            "CREATE TABLE {T} (id INTEGER PRIMARY KEY, practice_id TEXT, ssn TEXT, "
            "member_id TEXT, history TEXT)"
        )
        self.execute("INSERT INTO {T} VALUES (?, ?, ?, ?, ?)", *rows)

    def rows(self) -> dict[int, tuple]:
        return {
            r[0]: tuple(r[1:])
            for r in self.execute("SELECT id, practice_id, ssn, member_id, history FROM {T}")
        }

    def progress(self) -> list[tuple]:
        return self.execute(
            "SELECT job, last_key, rows_done FROM phi_keys_progress WHERE job LIKE ?",
            (f"%:{self.table}:%",),
        )
