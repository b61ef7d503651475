"""The admin listener: liveness and readiness, on an address clients never reach.

`/healthz` answers while the process runs. `/readyz` answers 200 only when the keystore is
loaded, the grant store answers and the identity provider's keys are current; load balancers
use it to keep traffic away from a replica that would mask everything or refuse every token.
When something is wrong, `problems` says what, naming the file or address to fix. `/metrics` is
the Prometheus exposition (proxy.metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from proxy.metrics.exposition import add_metrics

if TYPE_CHECKING:
    from proxy.runtime import Runtime

__all__ = ["build_admin_app"]


def build_admin_app(runtime: Runtime) -> web.Application:
    """An application with /healthz, /readyz and /metrics backed by `runtime`."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await runtime.readiness()
        ready = all(checks.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
        if problems := runtime.problems():  # what to fix, e.g. the JWKS file that is missing
            body["problems"] = problems
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics(app, runtime)
    return app
