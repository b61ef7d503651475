"""SCIM bookkeeping: the users and groups the IdP pushed, in a small SQLite file of their own.

Access never depends on this file. Grants live in the grant store (shared by the fleet on
PostgreSQL), and a user's SCIM id is its `sub` in base64url, so a deprovisioning call for a user
this file does not know (a replica that never saw the create, a lost file) still offboards the
subject the id names. The file holds what SCIM must echo back (userName, externalId, active,
group members, other attributes) and the groups no mapping names, for check-config. A user
created without the subject attribute maps to no subject; its id (``n.`` + random hex) can never
decode to one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from keys.errors import PhiProxyError
from keys.file_modes import GROUP_OR_OTHERS_WRITE, loose_mode_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = [
    "Directory",
    "DirectoryError",
    "ScimGroupRow",
    "ScimUser",
    "sub_of_id",
    "unmapped_group_names",
    "unmapped_user_id",
    "user_id_for",
]

_T = TypeVar("_T")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY, sub TEXT UNIQUE, user_name TEXT NOT NULL UNIQUE, external_id TEXT,
        active INTEGER, created TEXT NOT NULL, modified TEXT NOT NULL, document TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS groups (
        id TEXT PRIMARY KEY, display_name TEXT NOT NULL UNIQUE, mapped INTEGER NOT NULL,
        created TEXT NOT NULL, modified TEXT NOT NULL, document TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS members (
        group_id TEXT NOT NULL, value TEXT NOT NULL, document TEXT NOT NULL,
        PRIMARY KEY (group_id, value))""",
)


class DirectoryError(PhiProxyError):
    """The SCIM directory file cannot be opened or is writable by others."""


def user_id_for(sub: str) -> str:
    """The SCIM id of the user whose tokens carry `sub` (reversible: see `sub_of_id`)."""
    return base64.urlsafe_b64encode(sub.encode()).decode().rstrip("=")


def unmapped_user_id() -> str:
    """A fresh id for a user that maps to no subject ('.' is not base64url: never decodes)."""
    return f"n.{secrets.token_hex(12)}"


def sub_of_id(user_id: str) -> str | None:
    """The `sub` a SCIM user id names, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(user_id + "=" * (-len(user_id) % 4))
        sub = raw.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return sub if sub and user_id_for(sub) == user_id and sub.isprintable() else None


@dataclass(frozen=True, slots=True)
class ScimUser:
    """One stored SCIM user; `sub` None when it carried no subject attribute (maps to nobody).

    `active` None when the IdP never sent it: treated as active, and not echoed back.
    """

    id: str
    sub: str | None
    user_name: str
    external_id: str | None
    active: bool | None
    created: str
    modified: str
    document: str  # the other attributes the IdP sent, as JSON, echoed back on reads


@dataclass(frozen=True, slots=True)
class ScimGroupRow:
    """One stored SCIM group; `mapped` when scim.groups names it."""

    id: str
    display_name: str
    mapped: bool
    created: str
    modified: str
    document: str  # the other attributes the IdP sent, as JSON (members live in `members`)


class Directory:
    """Reads and writes the directory file on worker threads, one short connection per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        problem = loose_mode_problem(path, "SCIM directory", forbid=GROUP_OR_OTHERS_WRITE)
        if problem is not None:
            raise DirectoryError(problem)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            with self._connection() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise DirectoryError(
                f"{path} (scim.directory): cannot open the SCIM directory ({exc}); check that "
                "the folder exists and is writable by the proxy's user"
            ) from None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            with self._connection() as conn:
                return fn(conn)

        return await asyncio.to_thread(call)

    async def user(self, user_id: str) -> ScimUser | None:
        """The user with this id, or None."""
        rows = await self._run(
            lambda c: c.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchall()
        )
        return _user(rows[0]) if rows else None

    async def user_with_sub(self, sub: str) -> ScimUser | None:
        """The user whose subject attribute is `sub`, or None."""
        rows = await self._run(
            lambda c: c.execute("SELECT * FROM users WHERE sub = ?", (sub,)).fetchall()
        )
        return _user(rows[0]) if rows else None

    async def users(self, user_name: str | None = None) -> list[ScimUser]:
        """Every user, or the one named `user_name` (exact, case-insensitive per RFC 7643)."""
        if user_name is None:
            query, args = "SELECT * FROM users ORDER BY created, id", []
        else:
            query, args = "SELECT * FROM users WHERE lower(user_name) = lower(?)", [user_name]
        rows = await self._run(lambda c: c.execute(query, args).fetchall())
        return [_user(row) for row in rows]

    async def put_user(self, user: ScimUser) -> None:
        """Insert or replace `user` (sqlite3.IntegrityError when its userName is taken)."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "sub = excluded.sub, user_name = excluded.user_name, "
                "external_id = excluded.external_id, active = excluded.active, "
                "modified = excluded.modified, document = excluded.document",
                (
                    user.id,
                    user.sub,
                    user.user_name,
                    user.external_id,
                    None if user.active is None else int(user.active),
                    user.created,
                    user.modified,
                    user.document,
                ),
            )
        )

    async def delete_user(self, user_id: str) -> bool:
        """Remove the user and its memberships; False when there was no such user."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM members WHERE value = ?", (user_id,))
            return conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

        return await self._run(run)

    async def group(self, group_id: str) -> ScimGroupRow | None:
        """The group with this id, or None."""
        rows = await self._run(
            lambda c: c.execute("SELECT * FROM groups WHERE id = ?", (group_id,)).fetchall()
        )
        return _group(rows[0]) if rows else None

    async def groups(self, display_name: str | None = None) -> list[ScimGroupRow]:
        """Every group, or the one with this display name."""
        if display_name is None:
            query, args = "SELECT * FROM groups ORDER BY created, id", []
        else:
            query, args = "SELECT * FROM groups WHERE display_name = ?", [display_name]
        rows = await self._run(lambda c: c.execute(query, args).fetchall())
        return [_group(row) for row in rows]

    async def put_group(self, group: ScimGroupRow) -> None:
        """Insert or update `group` (sqlite3.IntegrityError when its name is taken)."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "display_name = excluded.display_name, mapped = excluded.mapped, "
                "modified = excluded.modified, document = excluded.document",
                (
                    group.id,
                    group.display_name,
                    int(group.mapped),
                    group.created,
                    group.modified,
                    group.document,
                ),
            )
        )

    async def delete_group(self, group_id: str) -> bool:
        """Remove the group and its memberships; False when there was no such group."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
            return conn.execute("DELETE FROM groups WHERE id = ?", (group_id,)).rowcount > 0

        return await self._run(run)

    async def members(self, group_id: str) -> dict[str, dict[str, Any]]:
        """The group's members as sent (value -> the member object), in value order."""
        rows = await self._run(
            lambda c: c.execute(
                "SELECT value, document FROM members WHERE group_id = ? ORDER BY value",
                (group_id,),
            ).fetchall()
        )
        return {value: json.loads(document) for value, document in rows}

    async def groups_of(self, user_id: str) -> list[str]:
        """The ids of the groups that have `user_id` as a member."""
        rows = await self._run(
            lambda c: c.execute(
                "SELECT group_id FROM members WHERE value = ?", (user_id,)
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def set_members(self, group_id: str, members: dict[str, dict[str, Any]]) -> None:
        """Make the group's members exactly `members` (value -> member object)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
            conn.executemany(
                "INSERT INTO members VALUES (?, ?, ?)",
                [(group_id, value, json.dumps(doc)) for value, doc in sorted(members.items())],
            )

        await self._run(run)


def unmapped_group_names(path: Path) -> list[str]:
    """Display names of groups the IdP sent that scim.groups did not map (for check-config).

    Read-only: a directory that does not exist yet (no IdP has connected) has none.
    """
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = conn.execute(
            "SELECT display_name FROM groups WHERE mapped = 0 ORDER BY display_name"
        ).fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


def _user(row: tuple[str, str | None, str, str | None, int | None, str, str, str]) -> ScimUser:
    active = None if row[4] is None else bool(row[4])
    return ScimUser(row[0], row[1], row[2], row[3], active, row[5], row[6], row[7])


def _group(row: tuple[str, str, int, str, str, str]) -> ScimGroupRow:
    return ScimGroupRow(row[0], row[1], bool(row[2]), row[3], row[4], row[5])
