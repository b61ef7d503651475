"""Content-Type and Content-Disposition values, parsed by aiohttp (not by us), imported late.

The transform package is also loaded by commands that never see an HTTP body
(`phi-proxy check-config`, `phi-keys encrypt`); importing aiohttp costs each of them ~0.25 s.
These wrappers import it on first use instead; in the proxy it is loaded long before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp.helpers import MimeType

__all__ = [
    "content_disposition_filename",
    "parse_content_disposition",
    "parse_content_type",
    "parse_mimetype",
]


def parse_mimetype(value: str) -> MimeType:
    """Aiohttp's Content-Type parse: type, subtype, suffix and parameters."""
    from aiohttp.helpers import parse_mimetype as parse  # noqa: PLC0415 - see the docstring

    return parse(value)


def parse_content_type(value: str) -> tuple[str, Mapping[str, str]]:
    """Aiohttp's (email-package based) Content-Type parse: media type and parameters."""
    from aiohttp.helpers import parse_content_type as parse  # noqa: PLC0415

    return parse(value)


def parse_content_disposition(value: str | None) -> tuple[str | None, dict[str, str]]:
    """Aiohttp's Content-Disposition parse: disposition type and parameters."""
    from aiohttp.multipart import parse_content_disposition as parse  # noqa: PLC0415

    return parse(value)


def content_disposition_filename(params: Mapping[str, str], name: str) -> str | None:
    """Aiohttp's reading of parameter `name` (RFC 2231/5987 forms included)."""
    from aiohttp.multipart import content_disposition_filename as read  # noqa: PLC0415

    return read(params, name)
