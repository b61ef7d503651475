"""Content-Type and Content-Disposition values, parsed by aiohttp (not by us), imported late.

The transform package is also loaded by commands that never see an HTTP body
(`phi-proxy check-config`, `phi-keys encrypt`); importing aiohttp costs each of them ~0.25 s.
These wrappers import it on first use instead (in the proxy it is loaded long before). An
import statement run on every call would cost ~2 µs; the cached module costs ~0.1 µs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

    from aiohttp.helpers import MimeType

__all__ = [
    "content_disposition_filename",
    "parse_content_disposition",
    "parse_content_type",
    "parse_mimetype",
]


@functools.cache
def _helpers() -> ModuleType:
    import aiohttp.helpers  # noqa: PLC0415 - see the module docstring

    return aiohttp.helpers


@functools.cache
def _multipart() -> ModuleType:
    import aiohttp.multipart  # noqa: PLC0415 - see the module docstring

    return aiohttp.multipart


def parse_mimetype(value: str) -> MimeType:
    """Type, subtype, suffix and parameters of a Content-Type (aiohttp's parser)."""
    parsed: MimeType = _helpers().parse_mimetype(value)
    return parsed


def parse_content_type(value: str) -> tuple[str, Mapping[str, str]]:
    """Media type and parameters of a Content-Type (aiohttp's, on the email package)."""
    parsed: tuple[str, Mapping[str, str]] = _helpers().parse_content_type(value)
    return parsed


def parse_content_disposition(value: str | None) -> tuple[str | None, dict[str, str]]:
    """Disposition type and parameters of a Content-Disposition (aiohttp's parser)."""
    parsed: tuple[str | None, dict[str, str]] = _multipart().parse_content_disposition(value)
    return parsed


def content_disposition_filename(params: Mapping[str, str], name: str) -> str | None:
    """Parameter `name` of a parsed Content-Disposition, RFC 2231/5987 forms included."""
    filename: str | None = _multipart().content_disposition_filename(params, name)
    return filename
