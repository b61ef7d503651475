"""A TCP forwarder in front of PostgreSQL, so a test can take "the database" away and back.

The machine's PostgreSQL keeps running for everyone else; only connections through the forwarder
break. `stop()` closes the port and every forwarded connection (database down: connections are
refused). `blackhole()` keeps accepting but forwards nothing (a silent network fault: calls hang
until their timeout).
"""

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

from grants_pg import DSN
from serve_process import free_port


class Forwarder:
    """Forwards 127.0.0.1:`port` to the test PostgreSQL server (the host and port of DSN)."""

    def __init__(self) -> None:
        target = urlsplit(DSN)
        self.target = (target.hostname or "127.0.0.1", target.port or 5432)
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self.silent = False

    def dsn(self) -> str:
        """DSN with the forwarder in place of the server (same user, password and database)."""
        parts = urlsplit(DSN)
        credentials = parts.netloc.rpartition("@")[0]
        where = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{credentials}@{where}" if credentials else where))

    async def start(self) -> None:
        """Accept and forward connections (again)."""
        self.silent = False
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def blackhole(self) -> None:
        """Keep every connection open but stop moving bytes in either direction."""
        self.silent = True

    async def _handle(self, reader, writer) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            self._tasks.difference_update(pumps)

    async def _pump(self, reader, writer) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.silent:
                    continue
                writer.write(data)
                await writer.drain()
