"""Wiring: settings in, a frozen aiohttp application out.

Resources that need opening and closing (the portal client pool, the grant store, the JWKS
fetcher) live in one cleanup context each, so a failed start closes what was opened and a
graceful shutdown closes everything after in-flight requests have finished.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.accesslog import AccessRecord, log_access
from proxy.errors import ProxyError, RequestTooLarge, UpstreamUnavailable
from proxy.handler import RECORD_KEY, Pipeline, error_response, new_request_id
from proxy.identity.errors import AuthenticationError
from proxy.transform.errors import RequestRejected, UnsafeBody

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from proxy.runtime import Runtime

__all__ = ["PIPELINE_KEY", "RUNTIME_KEY", "build_app"]

_log = logging.getLogger("phi_proxy")

PIPELINE_KEY = web.AppKey("phi_proxy_pipeline", Pipeline)

_UNAUTHENTICATED = (
    "authentication failed: send a current bearer token from the configured identity provider "
    "(the access log has the reason under this request_id)"
)
RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("phi_proxy_runtime")


@web.middleware
async def _errors_and_access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give each request an id, map every error to a safe answer, and write the access line."""
    record = AccessRecord(
        request_id=new_request_id(),
        method=request.method,
        path=request.path,
        peer=request.remote,
        started=time.perf_counter(),
    )
    request[RECORD_KEY] = record
    try:
        response = await handler(request)
    except AuthenticationError as exc:
        record.outcome = f"unauthenticated:{exc.reason}"
        # Which check failed (exc.reason) goes to the access log only: a forger learns nothing.
        response = web.json_response(
            {
                "error": "unauthenticated",
                "message": _UNAUTHENTICATED,
                "request_id": record.request_id,
            },
            status=401,
            headers={"WWW-Authenticate": exc.www_authenticate, "Cache-Control": "no-store"},
        )
    except ProxyError as exc:
        record.outcome = exc.code
        record.fields["detail"] = exc.message  # a fixed proxy text (which of the code's causes)
        response = error_response(exc, record.request_id)
    except UnsafeBody as exc:
        record.outcome = f"unsafe_body:{exc.reason}"
        response = error_response(
            UpstreamUnavailable(
                "the portal's response could not be checked for PHI safely, so it was withheld",
                code="unsafe_upstream_body",
            ),
            record.request_id,
        )
    except RequestRejected as exc:
        record.outcome = "request_rejected"
        record.fields["rejected"] = exc.reason  # why, for the operator (the body says it too)
        rejected = ProxyError(exc.message, code="request_rejected")
        rejected.status = exc.status
        response = error_response(rejected, record.request_id)
    except web.HTTPRequestEntityTooLarge:  # aiohttp's own 413 is plain text
        too_large = RequestTooLarge(
            "the request body is larger than limits.max_request_body; nothing was forwarded"
        )
        record.outcome = too_large.code
        response = error_response(too_large, record.request_id)
    except web.HTTPException as exc:
        record.outcome = "refused"
        exc.headers["X-Request-Id"] = record.request_id
        record.status = exc.status
        log_access(record, finished=time.perf_counter())
        raise
    except Exception:  # noqa: BLE001 - the last line of defence: answer 500, log the type only
        record.outcome = "internal_error"
        _log.exception("unexpected error", extra={"fields": {"request_id": record.request_id}})
        response = error_response(
            ProxyError("the proxy failed to handle this request", code="internal_error"),
            record.request_id,
        )
    response.headers["X-Request-Id"] = record.request_id
    record.status = response.status
    log_access(record, finished=time.perf_counter())
    return response


def build_app(runtime: Runtime) -> web.Application:
    """The client-facing application: one catch-all route through the pipeline."""
    app = web.Application(
        middlewares=[_errors_and_access_log],
        client_max_size=runtime.settings.limits.max_request_body,
        handler_args={"max_field_size": 16384},
    )
    app[RUNTIME_KEY] = runtime
    app.cleanup_ctx.append(_runtime_lifecycle)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[RUNTIME_KEY].pipeline().handle(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _runtime_lifecycle(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME_KEY]
    await runtime.open()
    try:
        yield
    finally:
        await runtime.close()
