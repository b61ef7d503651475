"""The request pipeline: identity → request transform → forward → response transform → log.

Every branch that cannot prove a body safe answers with an error instead of the body: an
unreadable, oversized, oddly encoded or unparseable response becomes a 502 with no content from
the portal in it, and so does one whose Content-Type or Content-Encoding the client could read
differently from the proxy. A response is streamed untouched only when its media type cannot
carry PHI as text (images, audio, video, fonts) and the body starts with a known media
signature, or when there is no body (HEAD, 204, 304); media without a signature is read and
transformed like any other body. The portal's headers reach the client with every token masked
and a standard reason phrase.

A final 1xx status from the portal is answered with a 502: passed on, it would let a front end
and the proxy disagree about what the connection is. (Request targets that are not a
single-slash path are refused by the app middleware, before routing.)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from proxy import metrics
from proxy.accesslog import AccessRecord
from proxy.audit.requests import AUDIT_STATE_KEY, AuditState, status_of
from proxy.canaries import NO_CANARIES, canary_touched, sent_touches, watching_read
from proxy.errors import ProxyError, UpstreamUnavailable
from proxy.forward.decode import BodyTooLarge, decode_body, refuse_undecoded_request_body
from proxy.forward.headers import ForwardingContext, HeaderPolicy
from proxy.forward.media import has_media_signature
from proxy.forward.response_headers import (
    content_codings,
    drop_cdn_cache_headers,
    refuse_conflicting_headers,
    scrub_header_tokens,
    standard_reason,
)
from proxy.forward.streaming import STREAMED_KEY, has_no_body, peek_media, stream_untouched
from proxy.transform import (
    RevealContext,
    SealContext,
    TransformStats,
    encrypt_request,
    transform_response,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy

    from keys.keyring import Keyring
    from proxy.audit.requests import RequestAuditor
    from proxy.break_glass_gate import BreakGlassGate
    from proxy.canaries import CanaryScanner
    from proxy.forward.upstream import Upstream
    from proxy.grants import GrantStore
    from proxy.identity import Authenticator, Caller
    from proxy.transform import FieldPolicy, RouteTable
    from proxy.transform.routes import WriteRouteTable
    from proxy.transform.settings import ReadRouteSettings

__all__ = ["RECORD_KEY", "STREAMED_KEY", "Pipeline", "error_response", "new_request_id"]

_REFUSED_METHODS = frozenset({"TRACE", "TRACK", "CONNECT"})
_CHUNK = 1 << 16

RECORD_KEY = web.RequestKey("phi_proxy_access_record", AccessRecord)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Everything one request needs, built once at startup (and swapped whole on reload)."""

    authenticator: Authenticator
    grants: GrantStore
    keyring: Callable[[], Keyring]
    policy: FieldPolicy
    routes: WriteRouteTable
    headers: HeaderPolicy
    upstream: Upstream
    max_response_body: int
    preserve_host: bool
    #: Required so that no pipeline is built without deciding about the audit trail.
    audit: RequestAuditor | None
    #: Routes whose answers belong to the practice in their path (legacy plaintext, FHIR).
    read_routes: RouteTable[ReadRouteSettings] | None = None
    #: Canary tokens to watch for (docs/canaries.md); touches are recorded in the audit state.
    canaries: CanaryScanner = NO_CANARIES
    #: Emergency access (`break_glass:`); None when it is off (the header is still stripped).
    break_glass: BreakGlassGate | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one client request through the portal, and audit the PHI it touched."""
        route = self.routes.match_route(request.method, request.path)
        self._label_route(request, None if route is None else route.route.path)
        if self.audit is None:
            return await self._handle(request)
        state = AuditState()
        state.write_route = None if route is None else route.route.path
        request[AUDIT_STATE_KEY] = state
        try:
            response = await self._handle(request)
        except BaseException as exc:
            self.audit.finish(request[RECORD_KEY], state, *status_of(exc))
            raise
        record = request[RECORD_KEY]
        self.audit.finish(record, state, response.status, record.outcome)
        return response

    def _label_route(self, request: web.Request, write_route: str | None) -> None:
        """The metrics' route label: the write route's template, else the read route's."""
        if write_route is None and self.read_routes is not None:
            read = self.read_routes.match_route(request.method, request.path)
            write_route = None if read is None else read.route.path
        if write_route is not None:
            request[RECORD_KEY].route = write_route

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = request[RECORD_KEY]
        if request.method.upper() in _REFUSED_METHODS:
            raise web.HTTPMethodNotAllowed(request.method, [])
        caller = await self.authenticator.authenticate(request.headers, now=time.time())
        record.subject = None if caller.subject is None else str(caller.subject)
        if self.break_glass is not None:
            self.break_glass.ask(request, caller, record)
        body = await self._request_body(request, caller)
        self._note_sent_canaries(request, body)
        headers = self.headers.upstream_request_headers(
            request.headers,
            ForwardingContext(
                peer=request.remote,
                scheme=request.scheme,
                host=request.host,
                request_id=record.request_id,
            ),
        )
        if self.preserve_host and request.host:
            headers["Host"] = request.host
        started = time.perf_counter()
        async with self.upstream.request(
            request.method, request.raw_path, headers=headers, body=body
        ) as upstream:
            record.upstream_ms = round((time.perf_counter() - started) * 1000, 3)
            record.status = upstream.status
            self._refuse_informational(upstream)
            refuse_conflicting_headers(upstream.headers)
            out_headers = self._client_headers(upstream.headers, record)
            if has_no_body(request.method, upstream):
                return await stream_untouched(
                    request, upstream, out_headers, head=None, request_id=record.request_id
                )
            head = await peek_media(upstream)  # b"" unless labelled as uncompressed media
            if has_media_signature(head):
                return await stream_untouched(
                    request, upstream, out_headers, head=head, request_id=record.request_id
                )
            raw = await self._read_capped(upstream, head)
        return await self._transformed(
            upstream=upstream,
            raw=raw,
            headers=out_headers,
            caller=caller,
            record=record,
            audit_state=request.get(AUDIT_STATE_KEY),
            request=request,
        )

    def _read_route_practice(self, request: web.Request) -> str | None:
        """The practice a read route's path names (None: not a read route)."""
        if self.read_routes is None:
            return None
        match = self.read_routes.match_route(request.method, request.path)
        return None if match is None else match.path_practice()

    async def _request_body(self, request: web.Request, caller: Caller) -> bytes | None:
        """Read the client body (aiohttp enforces the size cap: 413) and encrypt PHI in it.

        A write route that may ask for a grant (`require_grant` other than `never`) looks up
        the caller's grants first (a store that cannot answer means no access: 403, fail
        closed).
        """
        if not request.body_exists:
            return None
        refuse_undecoded_request_body(request.headers)
        body = await request.read()
        route = self.routes.match_route(request.method, request.path)
        stats = TransformStats()
        if (state := request.get(AUDIT_STATE_KEY)) is not None:
            state.request_stats = stats
        access = None
        if route is not None and route.route.require_grant != "never":
            access = await self.grants.access_for(caller, datetime.now(UTC))
        sealed = encrypt_request(
            body,
            request.headers.get("Content-Type"),
            route,
            SealContext(self.policy, self.keyring(), stats, access),
        )
        if stats.encrypted:
            request[RECORD_KEY].fields["encrypted"] = dict(stats.encrypted)
            metrics.current().transformed(stats, self.keyring(), self.policy)
        return sealed

    def _client_headers(
        self, upstream_headers: CIMultiDictProxy[str], record: AccessRecord
    ) -> CIMultiDict[str]:
        """The portal's headers for the client: hop-by-hop removed, tokens masked (never shown)."""
        scrubbed = scrub_header_tokens(
            HeaderPolicy.client_response_headers(upstream_headers), self.policy.redacted_text
        )
        if scrubbed.masked:
            record.fields["header_tokens_masked"] = scrubbed.masked
        if scrubbed.dropped:
            record.fields["headers_dropped"] = scrubbed.dropped
        return scrubbed.headers

    @staticmethod
    def _refuse_informational(upstream: aiohttp.ClientResponse) -> None:
        """A final 1xx (101 included) is refused: nothing of it may reach the client.

        Passed on, a 101 tells a front end the connection is now a tunnel while the proxy keeps
        speaking HTTP on it. The portal connection is closed, not pooled: its state is unknown.
        """
        if upstream.status < 200:  # noqa: PLR2004 - the 1xx class
            upstream.close()
            raise UpstreamUnavailable(
                f"the portal answered with the informational status {upstream.status} as its "
                "final response, which the proxy does not pass on; check the portal (a "
                "WebSocket or protocol upgrade through this proxy is not supported)",
                code="upstream_informational_status",
            )

    async def _read_capped(self, upstream: aiohttp.ClientResponse, head: bytes = b"") -> bytes:
        """Read a body that must be transformed, refusing anything over the limit.

        `head` is what was already read of it (a media peek without a signature): it comes
        first and counts towards the limit.
        """
        if upstream.status == 206:  # noqa: PLR2004 - 206 Partial Content
            raise UpstreamUnavailable(
                "the portal sent a partial (206) body that must be transformed whole",
                code="upstream_partial_content",
            )
        limit = self.max_response_body
        declared = upstream.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge("the portal's response is larger than limits.max_response_body")
        chunks = [head]
        size = len(head)
        if size > limit:
            raise BodyTooLarge("the portal's response is larger than limits.max_response_body")
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge("the portal's response is larger than limits.max_response_body")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _transformed(
        self,
        *,
        upstream: aiohttp.ClientResponse,
        raw: bytes,
        headers: CIMultiDict[str],
        caller: Caller,
        record: AccessRecord,
        audit_state: AuditState | None = None,
        request: web.Request,
    ) -> web.Response:
        headers.popall("Content-Encoding", None)  # the body we send is the decoded one
        body = decode_body(raw, content_codings(upstream.headers), limit=self.max_response_body)
        content_type = upstream.headers.get("Content-Type")
        if self.policy.may_need_transform(body, content_type):
            route_practice = self._read_route_practice(request)
            context = await self._reveal_context(caller, audit_state, route_practice)
            # Canary touches are judged by the access the final transform used (`lambda`).
            with watching_read(self.canaries, body, lambda: context, audit_state):
                revealed = transform_response(body, content_type, context)
                if self.break_glass is not None and await self.break_glass.open_for(
                    request,
                    caller,
                    context.stats,
                    route_practice=route_practice,
                    audit_denied=audit_state is not None and audit_state.denied,
                    record=record,
                ):  # an emergency grant now applies: decide again with the caller's new access
                    context = await self._reveal_context(caller, audit_state, route_practice)
                    revealed = transform_response(body, content_type, context)
            body = revealed
            self._account(context.stats, record)
            metrics.current().transformed(context.stats, context.keyring, self.policy)
            headers["Cache-Control"] = "no-store"
            drop_cdn_cache_headers(headers)
            vary = headers.get("Vary")
            headers["Vary"] = f"{vary}, Authorization" if vary else "Authorization"
        return web.Response(
            status=upstream.status,
            reason=standard_reason(upstream.status),
            body=body,
            headers=headers,
        )

    def _note_sent_canaries(self, request: web.Request, body: bytes | None) -> None:
        """Canary tokens on their way to the portal (a planted value written, or searched for)."""
        state = request.get(AUDIT_STATE_KEY)
        if not self.canaries or state is None:
            return
        hits = self.canaries.find(request.raw_path.encode("utf-8", "replace"))
        if body:
            hits |= self.canaries.find(body)
        if hits:
            canary_touched(state, sent_touches(sorted(hits)))

    async def _reveal_context(
        self, caller: Caller, audit_state: AuditState | None, route_practice: str | None
    ) -> RevealContext:
        """The caller's access now (gated on the audit trail's health), ready to transform."""
        access = await self.grants.access_for(caller, datetime.now(UTC))
        if self.audit is not None and audit_state is not None:
            access = self.audit.gate(access, audit_state)
        context = RevealContext(self.policy, self.keyring(), access, route_practice)
        if audit_state is not None:
            audit_state.response_stats = context.stats
        return context

    @staticmethod
    def _account(stats: TransformStats, record: AccessRecord) -> None:
        """Counts for the access line (the request's alerts are raised by the auditor)."""
        record.fields.update(
            decrypted=dict(stats.decrypted),
            masked=dict(stats.masked),
            plaintext_kept=dict(stats.plaintext_kept),
            # As the audit event lists them: shown, or withheld from this caller.
            practices=sorted(stats.practices | stats.withheld),
            integrity_failures=stats.integrity_failures,
        )


class _RandomIds:
    """16-hex-digit ids from the OS random source, read 512 at a time (one syscall, not 512)."""

    __slots__ = ("_buffer", "_next")

    _BATCH = 512

    def __init__(self) -> None:
        self._buffer = b""
        self._next = 0

    def reset(self) -> None:
        """Forget the unread bytes (a forked child must not hand out its parent's ids)."""
        self._buffer = b""
        self._next = 0

    def new(self) -> str:
        """The next id; never repeats a byte of the random stream."""
        if self._next >= len(self._buffer):
            self._buffer = os.urandom(8 * self._BATCH)
            self._next = 0
        start = self._next
        self._next = start + 8
        return self._buffer[start : start + 8].hex()


_ids = _RandomIds()
os.register_at_fork(after_in_child=_ids.reset)


def new_request_id() -> str:
    """A short random id that ties the access log, audit event and error body together."""
    return _ids.new()


def error_response(error: ProxyError, request_id: str) -> web.Response:
    """The small JSON body every proxy-made error carries."""
    return web.json_response(
        {"error": error.code, "message": error.message, "request_id": request_id},
        status=error.status,
        headers={"Cache-Control": "no-store"},
    )
