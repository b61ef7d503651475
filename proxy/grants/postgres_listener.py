"""The revocation push: one dedicated connection that LISTENs for grant changes.

The grant cache of a PostgreSQL store is only as trustworthy as this connection. So the listener
reports two things to its store: each change (forget that subject's cached grants) and its own
state. While it is not listening — before the first LISTEN, after the connection drops, while it
reconnects — the store must not use its cache at all; when LISTEN succeeds again the store starts
from an empty cache. A notification missed during an outage therefore cannot extend anyone's
access: nothing cached before the outage is ever used again.

A connection that dies loudly (server restart, `pg_terminate_backend`, a closed socket) is noticed
at once through asyncpg's termination callback. Every `check_interval` seconds the listener also
notifies itself (`pg_notify` with a random ping) and waits, bounded by `timeout`, for that ping to
come back: this catches a network path that silently drops packets, and a connection that answers
queries but no longer receives notifications (LISTEN lost, or a transaction-pooling proxy between
the proxy and PostgreSQL) — a plain `SELECT 1` would call both healthy.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import TYPE_CHECKING, Any

from proxy.grants.postgres_bounded import within
from proxy.grants.postgres_schema import CHANNEL

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from asyncpg import Connection

__all__ = ["ChangeListener"]

_PAYLOAD = re.compile(r"^([a-z0-9_]+):([0-9a-f]{64})$")
#: Self-pings on the shared channel; every listener ignores the others' (never "forget all").
_PING_PREFIX = "ping!"
_FIRST_RETRY = 0.05
_MAX_RETRY = 2.0


class ListenerLost(ConnectionError):
    """The notification connection closed or stopped answering."""


class ChangeListener:
    """Keeps one LISTEN connection alive and tells its store about changes and about itself."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        *,
        schema: str,
        on_change: Callable[[str | None], None],
        on_state: Callable[[bool], None],
        on_error: Callable[[BaseException], None],
        check_interval: float,
        timeout: float,
    ) -> None:
        """`on_change(digest)` gets a subject digest, or None for "forget everything"."""
        self._connect = connect
        self._schema = schema
        self._on_change = on_change
        self._on_state = on_state
        self._on_error = on_error
        self._check_interval = check_interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._stopping = False
        self._ping: str | None = None
        self._pong = asyncio.Event()
        self.listening = False
        #: Backend process id of the current LISTEN connection (for operators and tests).
        self.backend_pid: int | None = None

    def start(self) -> None:
        """Start listening in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="phi-grants-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stopping = True
        if self._conn is not None:
            self._conn.terminate()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, never swallows our own cancellation

    def _set_listening(self, *, value: bool) -> None:
        self.listening = value
        self._on_state(value)  # the store empties its cache on every change of state

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:  # noqa: ANN401
        if payload.startswith(_PING_PREFIX):
            if payload == self._ping:
                self._pong.set()
            return  # another replica's ping
        match = _PAYLOAD.match(payload)
        if match is None:
            self._on_change(None)  # unknown shape: forget everything rather than guess
        elif match.group(1) == self._schema:
            self._on_change(match.group(2))

    async def _run(self) -> None:
        delay = _FIRST_RETRY
        while not self._stopping:
            lost = asyncio.Event()
            try:
                opened: Connection = await within(self._timeout, self._connect())
                self._conn = opened
                opened.add_termination_listener(lambda _c, lost=lost: lost.set())
                await within(self._timeout, opened.add_listener(CHANNEL, self._notified))
                self.backend_pid = opened.get_server_pid()
                self._set_listening(value=True)
                delay = _FIRST_RETRY
                await self._watch(opened, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: stop trusting the cache
                self._on_error(exc)
            finally:
                self.backend_pid = None
                if self.listening:
                    self._set_listening(value=False)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY)

    async def _watch(self, conn: Connection, lost: asyncio.Event) -> None:
        """Return (by raising ListenerLost) as soon as the connection is known to be unusable."""
        while not self._stopping:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
            waiter = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({waiter}, timeout=self._check_interval)
            finally:
                waiter.cancel()
            if lost.is_set() or conn.is_closed():
                raise ListenerLost("the grant-change notification connection was closed")
            await self._ping_self(conn)

    async def _ping_self(self, conn: Connection) -> None:
        """Notify ourselves and wait for it: proof that notifications still reach this session."""
        self._ping = f"{_PING_PREFIX}{secrets.token_hex(16)}"
        self._pong.clear()
        try:
            await within(
                self._timeout, conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._ping)
            )
        except TimeoutError:
            raise ListenerLost(
                f"the grant-change notification connection did not answer within "
                f"{self._timeout:g} s"
            ) from None
        waiter = asyncio.ensure_future(self._pong.wait())
        try:
            await asyncio.wait({waiter}, timeout=self._timeout)
        finally:
            waiter.cancel()
        if not self._pong.is_set():
            raise ListenerLost(
                f"the grant-change notification connection answers, but its own test "
                f"notification did not come back within {self._timeout:g} s (LISTEN lost, or a "
                "transaction-pooling proxy in between)"
            )
