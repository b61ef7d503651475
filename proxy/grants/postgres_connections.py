"""The PostgreSQL grant store's connections: a pool opened on first use, and the change listener.

Connecting is lazy: constructing does no I/O (so `open_grant_store` stays synchronous and a
replica can start while the database is down, serving masked responses and reporting not-ready);
the first call connects, migrates and starts the listener, and a failed attempt is retried by the
next call. Every call — connecting and migrating included — is bounded by `timeout`, and a late
call is abandoned to finish in the background (postgres_bounded.py): the caller does not wait.

Connections are labelled in pg_stat_activity: `<application_name>-grants:<pid>` for the pool,
`<application_name>-grants-listener:<pid>` for the LISTEN connection.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from proxy.grants.postgres_bounded import abandon, within
from proxy.grants.postgres_listener import ChangeListener
from proxy.grants.postgres_schema import migrate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from asyncpg import Connection, Pool

__all__ = ["PostgresConnections"]

_T = TypeVar("_T")


class PostgresConnections:
    """One store's pool (schema migrated before first use) and its LISTEN connection."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        where: str,
        timeout: float,
        pool_size: int,
        application_name: str,
        listen_check_interval: float,
        on_change: Callable[[str | None], None],
        on_state: Callable[[bool], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """No I/O; the `on_*` callbacks are the listener's (see ChangeListener)."""
        self._dsn = dsn
        self._schema = schema
        self._where = where
        self.timeout = timeout
        self._pool_size = pool_size
        self._server_settings = {
            "application_name": f"{application_name}-grants:{os.getpid()}",
            "search_path": schema,
        }
        self._pool: Pool | None = None
        self._opening: asyncio.Lock | None = None
        self.listener = ChangeListener(
            self._connect_listener,
            schema=schema,
            on_change=on_change,
            on_state=on_state,
            on_error=on_error,
            check_interval=listen_check_interval,
            timeout=timeout,
        )

    async def _connect_listener(self) -> Connection:
        settings = dict(self._server_settings)
        settings["application_name"] = settings["application_name"].replace(
            "-grants:", "-grants-listener:"
        )
        conn: Connection = await asyncpg.connect(
            self._dsn, timeout=self.timeout, server_settings=settings
        )
        return conn

    async def _ready_pool(self) -> Pool:
        """The pool, creating it (and migrating the schema, starting the listener) if needed."""
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool = asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                    max_inactive_connection_lifetime=60.0,
                    server_settings=self._server_settings,
                )
                try:
                    await pool
                    async with pool.acquire() as conn:
                        await migrate(conn, schema=self._schema, where=self._where)
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
                self.listener.start()
        return self._pool

    async def bounded(self, fn: Callable[[Connection], Awaitable[_T]]) -> _T:
        """Run `fn` on a pooled connection; give up after `timeout` without waiting for it."""

        async def call() -> _T:
            pool = await self._ready_pool()
            async with pool.acquire() as conn:
                return await fn(conn)

        return await within(self.timeout, call())

    async def close(self) -> None:
        """Stop the listener and close the pool; never waits much longer than `timeout`."""
        await self.listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            closing = asyncio.ensure_future(pool.close())
            done, _ = await asyncio.wait({closing}, timeout=self.timeout)
            if not done:  # a connection is stuck (e.g. a silent network): cut them all
                pool.terminate()
                abandon(closing)
