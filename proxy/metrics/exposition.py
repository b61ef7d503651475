"""`/metrics` on the admin listener, and the gauges read from the running proxy's state.

Counters are counted where things happen. States (is the grant store up, how deep is the audit
queue, how big are the caches, how old is the JWKS) are read from the runtime: by each worker
every `REFRESH_SECONDS`, and by the worker that answers a scrape just before it answers, so a
single process always reports the present and a worker the scrape missed is at most that old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.identity.authenticator import IssuerRouter, JwtAuthenticator
from proxy.metrics.processes import current, shared_folder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from proxy.identity import Authenticator
    from proxy.runtime import Runtime

__all__ = ["REFRESH_SECONDS", "add_metrics", "refresh", "render"]

_log = logging.getLogger("phi_proxy")

#: How often every worker re-reads its state gauges.
REFRESH_SECONDS: Final = 5.0
#: The classic text format (what `generate_latest` writes; every Prometheus 2.x reads it).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def render() -> bytes:
    """The exposition text: this process's values, or every worker's added up."""
    folder = shared_folder()
    if folder is None:
        return generate_latest(current().registry)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _providers(authenticator: Authenticator) -> tuple[JwtAuthenticator, ...]:
    if isinstance(authenticator, IssuerRouter):
        return authenticator.providers
    return (authenticator,) if isinstance(authenticator, JwtAuthenticator) else ()


async def refresh(runtime: Runtime) -> None:
    """Read the state gauges from `runtime` (the readiness checks, queue, caches, JWKS)."""
    metrics = current()
    for check, ok in (await runtime.readiness()).items():
        metrics.up.labels(check).set(1 if ok else 0)
    try:
        pipeline = runtime.pipeline()
    except RuntimeError:  # not open yet, or already closed: the readiness checks say so
        return
    listener = getattr(pipeline.grants, "listener", None)  # PostgreSQL only
    if listener is not None:
        metrics.up.labels("grant_listener").set(1 if listener.listening else 0)
    subjects = getattr(pipeline.grants, "cached_subjects", None)
    if isinstance(subjects, int):
        metrics.cache_entries.labels("grants").set(subjects)
    trail = pipeline.audit.trail if pipeline.audit is not None else None
    metrics.audit_queue.set(0 if trail is None else trail.queued)
    providers = _providers(pipeline.authenticator)
    metrics.cache_entries.labels("verified_tokens").set(sum(p.cached_tokens for p in providers))
    metrics.cache_entries.labels("jwks_keys").set(sum(p.jwks_keys for p in providers))
    metrics.cache_entries.labels("opened_tokens").set(runtime.keyring().cached_tokens)
    now = time.time()
    ages = [math.inf if p.jwks_loaded_at is None else now - p.jwks_loaded_at for p in providers]
    if ages:
        metrics.jwks_age.set(max(ages))


async def _refresh_forever(runtime: Runtime) -> None:
    while True:
        try:
            await refresh(runtime)
        except Exception:  # noqa: BLE001 - metrics must never stop a worker
            _log.exception("metrics: reading the proxy's state failed; will retry")
        await asyncio.sleep(REFRESH_SECONDS)


def add_metrics(app: web.Application, runtime: Runtime) -> None:
    """Serve GET /metrics on the admin `app`, and keep this worker's state gauges fresh."""

    async def metrics(_request: web.Request) -> web.Response:
        await refresh(runtime)
        body = await asyncio.to_thread(render)  # reads the workers' files
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def refreshing(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_refresh_forever(runtime), name="phi-proxy-metrics")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(refreshing)
