"""The one pooled client towards the portal, and the one place aiohttp client errors are mapped.

The session never stores cookies (a shared jar would leak one client's portal session to the
next), never decompresses by itself (we decode with a size cap), and never follows redirects
(the client must see the portal's redirect, not its target's body).

The portal URL is built from the configured scheme and authority plus the client's path and
query, byte for byte: client text never reaches the authority, and a target that does not
start with exactly one `/` (absolute-form, `*`, `//host/...`) is refused before anything is
sent, because the proxy would route and audit one path while the portal acted on another.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from proxy.errors import ProxyError, UpstreamTimeout, UpstreamUnavailable
from proxy.server_settings import upstream_ssl_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from multidict import CIMultiDict

    from proxy.server_settings import UpstreamSettings

__all__ = ["BadRequestTarget", "Upstream", "refuse_odd_target", "upstream_ssl_context"]


class BadRequestTarget(ProxyError):
    """The request target is not an origin-form path (`/...`); nothing was forwarded."""

    status = 400
    code = "bad_request_target"


def refuse_odd_target(raw_target: str) -> None:
    """Raise BadRequestTarget unless `raw_target` starts with exactly one `/`.

    aiohttp accepts absolute-form (`http://x/p`, any letters as scheme), `*` and `//x/p`, and
    then routes on a path of its own making (authority dropped, dot segments resolved) while
    the raw text is what would be forwarded: the proxy would check one route and the portal
    serve another, or the text would land in the portal URL's host name.
    """
    if raw_target.startswith("/") and not raw_target.startswith("//"):
        return
    raise BadRequestTarget(
        "the request target must be a path starting with a single '/' (origin-form, e.g. "
        "GET /api/x); absolute URLs, '*' and paths starting with '//' are refused and nothing "
        "was forwarded: send the path only, or remove the duplicated leading slash"
    )


class Upstream:
    """Sends requests to the portal through one pooled session."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._base = URL(str(settings.url).rstrip("/"))
        self._base_path = self._base.raw_path.rstrip("/")
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the pooled session (called from the app's cleanup context)."""
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections,
            ssl=upstream_ssl_context(self._settings) or True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=self._settings.timeout, sock_connect=self._settings.connect_timeout
            ),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
        )

    async def close(self) -> None:
        """Close the pool; in-flight requests have finished by the time this runs."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, raw_path_qs: str) -> URL:
        """The portal URL for a client's raw path and query, byte for byte.

        Scheme and authority come from the configuration only; the client's path is appended
        to the base path and its query kept as sent (a fragment, which clients do not send,
        is dropped as before).
        """
        refuse_odd_target(raw_path_qs)  # the app middleware refused it already; never build one
        target = URL(raw_path_qs, encoded=True)  # one leading '/': relative, no authority
        return URL.build(
            scheme=self._base.scheme,
            authority=self._base.raw_authority,
            path=self._base_path + target.raw_path,
            query_string=target.raw_query_string,
            encoded=True,
        )

    @asynccontextmanager
    async def request(
        self,
        method: str,
        raw_path_qs: str,
        *,
        headers: CIMultiDict[str],
        body: bytes | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; every client-side failure becomes an Upstream* error."""
        if self._session is None:
            raise UpstreamUnavailable("the proxy is not connected to the portal yet")
        try:
            async with self._session.request(
                method,
                self.url_for(raw_path_qs),
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as response:
                yield response
        except TimeoutError:
            raise UpstreamTimeout("the portal did not answer in time") from None
        except aiohttp.ClientConnectorError:
            raise UpstreamUnavailable("cannot connect to the portal") from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError):
            raise UpstreamUnavailable("the portal closed or broke the connection") from None
