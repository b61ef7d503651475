"""Running the proxy: one process, or N worker processes sharing the listening sockets.

The process that `phi-proxy serve` starts binds the client (and admin) port once, without
SO_REUSEPORT, and hands the bound sockets to its workers (multiprocessing passes socket objects
to spawned children as duplicated file descriptors). No other process can then join the port:
with SO_REUSEPORT any process of the same user could bind it too and receive a share of the
client connections (bearer tokens and plaintext PHI included).

SIGHUP reloads keys and config without dropping requests (see proxy.reload); in multi-worker
mode the supervisor forwards it to every worker. SIGTERM or SIGINT stops accepting connections,
lets in-flight requests finish (up to the grace period), closes stores, and exits 0.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web

from keys.errors import ConfigError, PhiProxyError
from keys.native import core_description
from proxy import metrics
from proxy.admin import build_admin_app
from proxy.app import build_app, build_runner
from proxy.console.sealing import new_key as new_console_key
from proxy.logs import configure_logging
from proxy.reload import Reloader
from proxy.runtime import Runtime
from proxy.server_settings import check_upstream_tls_files, listener_ssl_context
from proxy.settings import config_warnings, load_settings
from proxy.supervisor import Supervisor

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from proxy.settings import Settings

__all__ = ["ListenError", "Listeners", "bind_listeners", "serve", "serve_forever"]

#: Net new container objects between young-generation collections (CPython's default: 700).
_YOUNG_COLLECTION_THRESHOLD = 10_000

_log = logging.getLogger("phi_proxy")
GRACE_SECONDS = 30.0
_BACKLOG = 128


class ListenError(PhiProxyError):
    """The client or admin port cannot be bound (in use, not permitted, no such address)."""


@dataclass(frozen=True)
class Listeners:
    """The bound, listening sockets of the client, admin, SCIM and admin API ports."""

    client: tuple[socket.socket, ...]
    admin: tuple[socket.socket, ...]
    scim: tuple[socket.socket, ...] = ()
    admin_api: tuple[socket.socket, ...] = ()

    def close(self) -> None:
        """Close every socket (this process's copy; workers hold their own)."""
        for sock in (*self.client, *self.admin, *self.scim, *self.admin_api):
            sock.close()


def _listener_ssl(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.listen.tls
    return None if tls is None else listener_ssl_context(tls)


def _bind(host: str, port: int, setting: str) -> tuple[socket.socket, ...]:
    """Bind and listen on every address `host` resolves to, as asyncio would, minus REUSEPORT."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {host}:{port} ({setting}): the address does not resolve "
            f"({exc.strerror}); set {setting.replace('port', 'host')} to an address of this "
            "machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    bound: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # e.g. no IPv6 on this host: skip that family, as asyncio does
                continue
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))  # an ephemeral port: the first one's
            sock.listen(_BACKLOG)
            sock.setblocking(False)  # noqa: FBT003 - the socket API
            if port == 0:  # every address of an ephemeral listener shares the first port
                port = sock.getsockname()[1]
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise ListenError(_bind_failure(host, port, setting, exc)) from None
    if not bound:
        raise ListenError(
            f"cannot listen on {host}:{port} ({setting}): this machine cannot open a socket for "
            "any address it resolves to (e.g. only IPv6, which is disabled); use an IPv4 "
            "address such as 127.0.0.1"
        )
    return tuple(bound)


def _bind_failure(host: str, port: int, setting: str, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port} ({setting})"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use by another process, which may be receiving "
            f"the connections meant for phi-proxy; find it with `ss -ltnp 'sport = :{port}'`, "
            f"stop it, or set {setting} to a free port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"{where}: permission denied (ports below 1024 need privileges); use a port of "
            "1024 or above and map it in the container or load balancer"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no interface of this machine has that address; correct the host"
    return f"{where}: {exc.strerror or exc}"


def bind_listeners(settings: Settings) -> Listeners:
    """Bind the client port, the admin port (unless 0) and, if enabled, SCIM and the admin API."""
    client = _bind(settings.listen.host, settings.listen.port, "listen.port")
    admin: tuple[socket.socket, ...] = ()
    scim: tuple[socket.socket, ...] = ()
    try:
        if settings.admin.port:
            admin = _bind(settings.admin.host, settings.admin.port, "admin.port")
        if settings.scim.enabled:
            scim = _bind(settings.scim.host, settings.scim.port, "scim.port")
        api = settings.admin_api
        admin_api = _bind(api.host, api.port, "admin_api.port") if api.enabled else ()
    except ListenError:
        for sock in (*client, *admin, *scim):
            sock.close()
        raise
    return Listeners(client=client, admin=admin, scim=scim, admin_api=admin_api)


def _scim_app(settings: Settings, config_path: Path | None) -> web.Application:
    """The SCIM listener's app (ScimSecretError, or a ConfigError without scim2-models)."""
    try:
        from proxy.scim.app import build_scim_app  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ConfigError(
            "scim.enabled is true but the SCIM models (scim2-models) are not installed; install "
            "phi-proxy with the scim extra (pip install 'phi-proxy[scim]') or set scim.enabled: "
            "false"
        ) from None
    return build_scim_app(settings, config_path=config_path)


async def _start_scim(
    settings: Settings, config_path: Path | None, sockets: tuple[socket.socket, ...]
) -> web.AppRunner:
    """Serve SCIM on its own sockets; the runner, for shutdown."""
    scim = web.AppRunner(_scim_app(settings, config_path), handle_signals=False, access_log=None)
    await scim.setup()
    tls = settings.scim.tls
    scim_ssl = None if tls is None else listener_ssl_context(tls)
    for sock in sockets:
        await web.SockSite(scim, sock, ssl_context=scim_ssl, backlog=_BACKLOG).start()
    return scim


def _admin_api_ssl(settings: Settings) -> ssl.SSLContext | None:
    """The admin API's TLS context (TlsFileError naming a bad file), None for plain HTTP."""
    from proxy.admin_api.tls import admin_api_ssl_context  # noqa: PLC0415 - only when enabled

    tls = settings.admin_api.tls
    return None if tls is None else admin_api_ssl_context(tls)


async def _start_admin_api(
    runtime: Runtime,
    config_path: Path | None,
    sockets: tuple[socket.socket, ...],
    console_key: bytes | None,
) -> web.AppRunner:
    """Serve the admin API on its own sockets; the runner, for shutdown.

    Admin tokens are verified with the runtime's identity settings, so a reload reaches them.
    """
    settings = runtime.settings
    from proxy.admin_api.app import build_admin_api_app  # noqa: PLC0415 - only when enabled

    if config_path is None:  # pragma: no cover - serve always passes the config file
        raise ConfigError("the admin API needs the config file (audit trail, access review)")
    runner = web.AppRunner(
        build_admin_api_app(
            settings,
            config_path=config_path,
            current_identity=lambda: runtime.settings.identity,
            console_key=console_key,
        ),
        handle_signals=False,
        access_log=None,
    )
    await runner.setup()
    context = _admin_api_ssl(settings)
    for sock in sockets:
        await web.SockSite(runner, sock, ssl_context=context, backlog=_BACKLOG).start()
    return runner


async def serve_forever(
    settings: Settings,
    *,
    listeners: Listeners | None = None,
    config_path: Path | None = None,
    console_key: bytes | None = None,
    supervisor: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully.

    `listeners`: sockets already bound (by the supervisor); without them they are bound here.
    `console_key`: seals the console's cookies; the same in every worker (see serve()).
    `supervisor`: in a worker, a descriptor that turns readable when the supervisor is gone;
    the worker then stops too, the same graceful way.
    SIGHUP, or a change to the config (`config_path`), keystore or KEK file, reloads keys and
    config in place (proxy.reload).
    """
    ssl_context = _listener_ssl(settings)
    if listeners is None:
        listeners = bind_listeners(settings)
    runtime = Runtime(settings)
    reloader: Reloader | None = None
    # Until the reloader runs, a SIGHUP must not end the process (its default action).
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: None)
    runner = build_runner(
        build_app(runtime), handle_signals=False, access_log=None, shutdown_timeout=GRACE_SECONDS
    )
    await runner.setup()
    runners = [runner]
    try:
        for sock in listeners.client:
            await web.SockSite(runner, sock, ssl_context=ssl_context, backlog=_BACKLOG).start()
        if listeners.admin:
            admin = web.AppRunner(build_admin_app(runtime), handle_signals=False, access_log=None)
            await admin.setup()
            runners.insert(0, admin)
            for sock in listeners.admin:
                await web.SockSite(admin, sock, backlog=_BACKLOG).start()
        if listeners.scim:
            runners.insert(0, await _start_scim(settings, config_path, listeners.scim))
        if listeners.admin_api:
            runners.insert(
                0, await _start_admin_api(runtime, config_path, listeners.admin_api, console_key)
            )
        _log.info(
            "listening",
            extra={
                "fields": {
                    "listen": f"{settings.listen.host}:{settings.listen.port}",
                    "admin": f"{settings.admin.host}:{settings.admin.port}",
                    "scim": f"{settings.scim.host}:{settings.scim.port}"
                    if settings.scim.enabled
                    else "off",
                    "admin_api": f"{settings.admin_api.host}:{settings.admin_api.port}"
                    if settings.admin_api.enabled
                    else "off",
                    "upstream": str(settings.upstream.url),
                    "transform": core_description(),
                    "pid": os.getpid(),
                }
            },
        )
        reloader = Reloader(runtime, config_path)
        await reloader.start()
        # Everything allocated so far lives as long as the process (settings, keyring, compiled
        # policy, Unicode tables): move it out of the collector's way (~5% CPU in profiles).
        gc.collect()
        gc.freeze()
        # A request leaves few cycles, but 32 in flight keep thousands of young containers
        # alive, and at the default threshold (700) the young collections walked them again
        # and again: ~45 µs of CPU per 100-record page. 10,000 keeps the collector for what
        # only it can free (measured: GC time 0.87 s -> 0.04 s per 5 s of load; bench/ANALYSIS.md).
        gc.set_threshold(_YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
        await _stop_requested(supervisor)
        _log.info("shutting down: finishing in-flight requests")
    finally:
        if reloader is not None:
            await reloader.stop()
        for item in runners:
            await item.cleanup()
        listeners.close()


async def _stop_requested(supervisor: int | None) -> None:
    """Return on SIGTERM or SIGINT, or (in a worker) once the supervisor is gone."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if supervisor is not None:
        loop.add_reader(supervisor, _supervisor_gone, loop, supervisor, stop)
    await stop.wait()


def _supervisor_gone(loop: asyncio.AbstractEventLoop, descriptor: int, stop: asyncio.Event) -> None:
    """Stop a worker whose supervisor died (SIGKILL, the OOM killer).

    An orphaned worker would go on answering on the port with the config it started with,
    out of reach of SIGHUP and SIGTERM, and keep a restarted proxy from binding the port.
    """
    loop.remove_reader(descriptor)
    _log.error(
        "the supervisor process is gone (killed?); this worker stops too, so that no "
        "orphaned worker keeps serving: restart phi-proxy"
    )
    stop.set()


def _worker(
    config_path: Path, listeners: Listeners, metrics_folder: Path, console_key: bytes | None
) -> None:
    """One worker process: serve on the supervisor's sockets; one `error:` line if it cannot."""
    metrics.install(metrics_folder)  # before anything counts: every worker adds to one scrape
    # Readable (end of file) once the supervisor has exited, however it ended.
    parent = multiprocessing.parent_process()
    supervisor = parent.sentinel if parent is not None else None
    try:
        settings = load_settings(config_path)
        configure_logging(settings.logging.level)
        asyncio.run(
            serve_forever(
                settings,
                listeners=listeners,
                config_path=config_path,
                console_key=console_key,
                supervisor=supervisor,
            )
        )
    except (PhiProxyError, OSError) as exc:
        print(f"error: phi-proxy worker {os.getpid()}: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)


def _warn_about(settings: Settings) -> None:
    for warning in config_warnings(settings):
        _log.warning("config: %s", warning)


def serve(config_path: Path, *, workers: int) -> int:
    """Run one process (workers == 1) or supervise `workers` processes on the same sockets."""
    settings = load_settings(config_path)
    configure_logging(settings.logging.level)
    _warn_about(settings)
    _listener_ssl(settings)  # a missing or loose TLS file stops here, before binding
    if settings.scim.enabled:  # so do a missing, short or loose SCIM secret and its TLS files
        _scim_app(settings, config_path)
        if settings.scim.tls is not None:
            listener_ssl_context(settings.scim.tls)
    if settings.admin_api.enabled:  # a missing or loose admin API TLS file stops here too
        _admin_api_ssl(settings)
    if settings.admin_api.console.enabled:  # and so does the console's client secret file
        from proxy.console.app import read_client_secret  # noqa: PLC0415 - only when enabled

        read_client_secret(settings.admin_api.console)
    check_upstream_tls_files(settings.upstream)
    listeners = bind_listeners(settings)
    # One key for the console's session cookies, made here, before any worker: each worker
    # gets it through the spawn pipe (never a file or the environment), so a cookie sealed by
    # one worker opens in all of them, a replacement worker included. A restart makes a new one.
    console_key = new_console_key() if settings.admin_api.console.enabled else None
    if workers <= 1:
        metrics.install(None)
        asyncio.run(
            serve_forever(
                settings, listeners=listeners, config_path=config_path, console_key=console_key
            )
        )
        return 0
    folder = metrics.create_shared_folder()
    try:
        metrics.install(folder)  # the supervisor counts worker restarts there
        target = partial(_worker, config_path, listeners, folder, console_key)
        return Supervisor(target, workers).run()
    finally:
        listeners.close()  # the supervisor's copies; it never accepts a connection itself
        metrics.remove_shared_folder(folder)
