"""Requests aiohttp's parser refuses: answered by the proxy, never by aiohttp's default page.

aiohttp answers a request it cannot parse (a 100 KB header, a bad request line, conflicting
framing) itself, before any middleware runs: a plain-text 400 whose body quotes the start of the
offending line (so a too-long `Authorization` header comes back with the caller's token in it),
a traceback in the log, and no access line. aiohttp has no setting for that answer (aio-libs
issue 3287), so `GuardedAppRunner` serves the application with a request handler whose
`handle_error` asks the proxy for the answer instead. Only that method changes; parsing, limits
and everything else stay aiohttp's.

`unparsed_reason` turns aiohttp's exception into a fixed code; the exception's own text, which
quotes the client's bytes, is never used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiohttp import http_exceptions, web

__all__ = [
    "MAX_FIELD_SIZE",
    "MAX_LINE_SIZE",
    "UNPARSED_TEXT",
    "ErrorAnswer",
    "GuardedAppRunner",
    "unparsed_reason",
]

#: Bytes aiohttp reads of one header field (about twice its default) and of the request line
#: (its default); the app is built with these, and a longer line is `line_too_long`.
MAX_FIELD_SIZE: Final = 16384
MAX_LINE_SIZE: Final = 8190

ErrorAnswer = Callable[[web.BaseRequest, int, BaseException | None], web.StreamResponse]
"""(request, status, exception) → the response; for parse errors `request` carries no headers."""

#: What each reason tells the client (and the operator): fixed text, nothing from the request.
UNPARSED_TEXT: Final = {
    "line_too_long": (
        f"a header or the request line is longer than this proxy reads ({MAX_FIELD_SIZE} "
        f"bytes per header, {MAX_LINE_SIZE} for the request line); shorten it (bearer tokens "
        "are limited to identity.max_token_bytes anyway)"
    ),
    "bad_method": "the request line does not start with a method this proxy knows (TLS sent to "
    "a plain-HTTP port looks like this too); check the method, and the URL's scheme and port",
    "bad_request_line": "the request line is not `METHOD /path HTTP/1.1`",
    "bad_header": "a header line is not `Name: value` or holds characters HTTP does not allow",
    "bad_target": "the request target is not a valid path",
    "bad_framing": "the body's framing (Content-Length, Transfer-Encoding or chunk sizes) "
    "cannot be trusted",
    "bad_message": "the request is not valid HTTP/1.1 (e.g. two Content-Length or "
    "Transfer-Encoding headers, both at once, a malformed chunk, or too many headers)",
}

_REASONS: Final[tuple[tuple[type[http_exceptions.HttpProcessingError], str], ...]] = (
    (http_exceptions.LineTooLong, "line_too_long"),
    (http_exceptions.BadHttpMethod, "bad_method"),  # before its base class, BadStatusLine
    (http_exceptions.BadStatusLine, "bad_request_line"),
    (http_exceptions.InvalidHeader, "bad_header"),
    (http_exceptions.InvalidURLError, "bad_target"),
    (http_exceptions.PayloadEncodingError, "bad_framing"),
)


def unparsed_reason(exc: http_exceptions.HttpProcessingError) -> str:
    """A fixed code (a key of UNPARSED_TEXT) for why aiohttp could not parse the request."""
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "bad_message"


class _GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler, except that error answers come from the proxy."""

    __slots__ = ("_answer",)

    def __init__(self, manager: web.Server, *, answer: ErrorAnswer, **kwargs: Any) -> None:  # noqa: ANN401
        self._answer = answer  # set first: the base class starts reading the connection
        super().__init__(manager, **kwargs)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # noqa: ARG002 - aiohttp's text quotes the client's bytes
    ) -> web.StreamResponse:
        """The proxy's answer for `status`; the connection closes after it, as in aiohttp."""
        if request.writer.output_size > 0:  # as aiohttp: a second head would corrupt the first
            raise ConnectionError("a response is already under way; the connection is broken")
        response = self._answer(request, status, exc)
        response.force_close()
        return response


class _GuardedServer(web.Server):
    """aiohttp's server (one per runner), creating `_GuardedHandler`s for its connections."""

    def __init__(self, answer: ErrorAnswer, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.answer = answer

    def __call__(self) -> web.RequestHandler:
        # The same arguments aiohttp's own Server.__call__ passes to its handler.
        return _GuardedHandler(self, answer=self.answer, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer parse errors with `answer`, not aiohttp's text."""

    __slots__ = ("_answer",)

    def __init__(self, app: web.Application, *, answer: ErrorAnswer, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(app, **kwargs)
        self._answer = answer

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the app; aiohttp's own Server class
        # The same server with our handler class; aiohttp offers no other seam (issue 3287).
        return _GuardedServer(
            self._answer,
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,  # noqa: SLF001
            **server._kwargs,  # noqa: SLF001
        )
