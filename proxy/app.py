"""Wiring: settings in, a frozen aiohttp application out.

Resources that need opening and closing (the portal client pool, the grant store, the JWKS
fetcher) live in one cleanup context each, so a failed start closes what was opened and a
graceful shutdown closes everything after in-flight requests have finished.

Every request gets an access line and a small JSON error body from the proxy, also one that
aiohttp could not parse and so never reaches the middleware: `build_runner` serves the app with
`_answer_unparsed` for those (proxy.forward.parse_errors).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.accesslog import AccessRecord, log_access
from proxy.errors import ProxyError, RequestTooLarge, UpstreamUnavailable
from proxy.forward.framing import BadFraming, refuse_bad_framing
from proxy.forward.parse_errors import (
    MAX_FIELD_SIZE,
    MAX_LINE_SIZE,
    UNPARSED_TEXT,
    GuardedAppRunner,
    unparsed_reason,
)
from proxy.forward.upstream import refuse_odd_target
from proxy.handler import RECORD_KEY, STREAMED_KEY, Pipeline, error_response, new_request_id
from proxy.identity.errors import AuthenticationError
from proxy.transform.errors import RequestRejected, UnsafeBody

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from proxy.runtime import Runtime

__all__ = ["PIPELINE_KEY", "RUNTIME_KEY", "build_app", "build_runner"]

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
        refuse_bad_framing(request.version, request.headers)  # before the body is touched
        # Before routing: aiohttp routes `*`, `//host/p` and absolute-form on a path of its own.
        refuse_odd_target(request.raw_path)
        response = await handler(request)
    except Exception as exc:
        streamed = request.get(STREAMED_KEY)
        if streamed is not None and streamed.prepared:
            return _cut_off(request, streamed, record, exc)
        if isinstance(exc, web.HTTPException) and not isinstance(
            exc, web.HTTPRequestEntityTooLarge
        ):
            record.outcome = "refused"
            exc.headers["X-Request-Id"] = record.request_id
            record.status = exc.status
            log_access(record, finished=time.perf_counter())
            raise
        response = _error_answer(exc, record)
        if isinstance(exc, BadFraming):
            response.force_close()  # the rest of this connection cannot be split into requests
    response.headers["X-Request-Id"] = record.request_id
    record.status = response.status
    log_access(record, finished=time.perf_counter())
    return response


def _error_answer(exc: Exception, record: AccessRecord) -> web.Response:
    """The safe JSON answer for `exc`; records the outcome on the access line."""
    if isinstance(exc, AuthenticationError):
        record.outcome = f"unauthenticated:{exc.reason}"
        # Which check failed (exc.reason) goes to the access log only: a forger learns nothing.
        return web.json_response(
            {
                "error": "unauthenticated",
                "message": _UNAUTHENTICATED,
                "request_id": record.request_id,
            },
            status=401,
            headers={"WWW-Authenticate": exc.www_authenticate, "Cache-Control": "no-store"},
        )
    if isinstance(exc, ProxyError):
        record.outcome = exc.code
        record.fields["detail"] = exc.message  # a fixed proxy text (which of the code's causes)
        return error_response(exc, record.request_id)
    if isinstance(exc, UnsafeBody):
        record.outcome = f"unsafe_body:{exc.reason}"
        return error_response(
            UpstreamUnavailable(
                "the portal's response could not be checked for PHI safely, so it was withheld",
                code="unsafe_upstream_body",
            ),
            record.request_id,
        )
    if isinstance(exc, RequestRejected):
        record.outcome = "request_rejected"
        record.fields["rejected"] = exc.reason  # why, for the operator (the body says it too)
        rejected = ProxyError(exc.message, code="request_rejected")
        rejected.status = exc.status
        return error_response(rejected, record.request_id)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):  # aiohttp's own 413 is plain text
        too_large = RequestTooLarge(
            "the request body is larger than limits.max_request_body; nothing was forwarded"
        )
        record.outcome = too_large.code
        return error_response(too_large, record.request_id)
    # The last line of defence: answer 500, log the type only.
    record.outcome = "internal_error"
    _log.error(
        "unexpected error", exc_info=exc, extra={"fields": {"request_id": record.request_id}}
    )
    return error_response(
        ProxyError("the proxy failed to handle this request", code="internal_error"),
        record.request_id,
    )


def _cut_off(
    request: web.Request, streamed: web.StreamResponse, record: AccessRecord, exc: Exception
) -> web.StreamResponse:
    """Fail a response whose head is already out: close the connection, send nothing more.

    A second status line would land inside the first one's declared body, and a client or
    front end reusing the connection would read the next response as this one's bytes. The
    client sees a truncated body (no final chunk either) and a closed connection. The access
    line records the error as usual (status and outcome as for any error, which is what the
    audit event says too) plus `cut_off_after`: the status the client had already been sent.
    """
    if isinstance(exc, web.HTTPException):
        record.outcome, status = "refused", exc.status
    else:
        status = _error_answer(exc, record).status
    record.status = status
    record.fields["cut_off_after"] = streamed.status
    streamed.force_close()  # aiohttp serves no further request on this connection
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes: no EOF marker
    log_access(record, finished=time.perf_counter())
    return streamed


def _answer_unparsed(
    request: web.BaseRequest, status: int, exc: BaseException | None
) -> web.StreamResponse:
    """The answer to a request aiohttp could not parse (or that failed outside the middleware).

    A fixed JSON body, with a reason code in the access line: never aiohttp's text, which
    quotes the client's bytes (a too-long Authorization header: the caller's token).
    """
    record = AccessRecord(
        request_id=new_request_id(),
        method="-",  # aiohttp read no request line it trusts; path and headers are unknown
        path="-",
        peer=request.remote,
        started=time.perf_counter(),
    )
    if isinstance(exc, HttpProcessingError):
        reason = unparsed_reason(exc)
        record.outcome = f"bad_http_request:{reason}"
        error = ProxyError(
            f"the request could not be read: {UNPARSED_TEXT[reason]}; nothing was forwarded "
            "and the connection is closed",
            code="bad_http_request",
        )
        error.status = status
    else:  # an error the middleware did not catch: its text stays out of the answer
        record.outcome = "internal_error"
        _log.error(
            "unexpected error outside the request pipeline",
            exc_info=exc,
            extra={"fields": {"request_id": record.request_id}},
        )
        error = ProxyError("the proxy failed to handle this request", code="internal_error")
        error.status = status
    response = error_response(error, record.request_id)
    response.headers["X-Request-Id"] = record.request_id
    record.status = response.status
    log_access(record, finished=time.perf_counter())
    return response


def build_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:  # noqa: ANN401
    """The runner for `build_app`'s application (kwargs as for `web.AppRunner`).

    Requests aiohttp cannot parse get the proxy's JSON answer and an access line.
    """
    return GuardedAppRunner(app, answer=_answer_unparsed, **kwargs)


def build_app(runtime: Runtime) -> web.Application:
    """The client-facing application: one catch-all route through the pipeline."""
    app = web.Application(
        middlewares=[_errors_and_access_log],
        client_max_size=runtime.settings.limits.max_request_body,
        handler_args={"max_field_size": MAX_FIELD_SIZE, "max_line_size": MAX_LINE_SIZE},
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
