"""Structured JSON logging with a last-line scrubber.

The first defence is that no code path logs a PHI value, a token, a key or a credential. This
module is the second: every record is rendered as one JSON object and anything shaped like a
ciphertext token, a JWT or a bearer credential is replaced before it reaches a handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, ClassVar

import orjson

__all__ = [
    "ACCESS_LOGGER",
    "ALERT_LOGGER",
    "JsonFormatter",
    "configure_logging",
    "direct_stream",
    "event_head",
    "render_line",
    "scrub",
    "write_direct",
]

ACCESS_LOGGER = "phi_proxy.access"
ALERT_LOGGER = "phi_proxy.alert"

_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"phi\d+\.[A-Za-z0-9_.-]+"), "[token]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?i)(bearer|basic)(?:\s|\\t)+[A-Za-z0-9._~+/=-]+"), r"\1 [credential]"),
)
# Cheap pre-check: a line with none of these substrings cannot match any scrubber. The
# case-insensitive alternation costs ~13 µs on a 400-character access line, so ASCII lines (all
# of them, in practice) take `_may_need_scrub` instead: same answer or a superset, ~1 µs.
_SCRUB_HINTS = re.compile(r"(?i)phi\d|eyJ|bearer|basic")
_TOKEN_HINT = re.compile(r"phi\d")


def _may_need_scrub(text: str) -> bool:
    """False only if no scrubber can match `text` (property-tested against the patterns)."""
    if not text.isascii():  # Unicode case folding (e.g. U+017F matches "s"): use the regex
        return _SCRUB_HINTS.search(text) is not None
    if "eyJ" in text or _TOKEN_HINT.search(text) is not None:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered


def scrub(text: str) -> str:
    """Replace anything token-, JWT- or credential-shaped in `text`."""
    if not _may_need_scrub(text):
        return text
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class _SecondStamp:
    """`YYYY-MM-DDTHH:MM:SS` of the current second, formatted once per second, not per line."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def stamp(self, created: float) -> str:
        """The line's `ts`: UTC to the millisecond, with a Z."""
        second = int(created)
        if second != self.second:
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        return f"{self.text}.{int((created - second) * 1000):03d}Z"


_stamp = _SecondStamp().stamp


def render_line(event: dict[str, Any]) -> str:
    """One log line: `event` as JSON, then scrubbed.

    Every scrubber matches only characters JSON never escapes ([A-Za-z0-9._~+/=-] and spaces),
    so replacing inside the rendered text keeps the JSON valid.
    """
    try:
        rendered = orjson.dumps(event, default=str).decode()
    except TypeError:  # e.g. an integer beyond 64 bits: the slow path renders anything
        rendered = json.dumps(event, default=str, ensure_ascii=False)
    return scrub(rendered)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `fields`."""

    _RESERVED: ClassVar[frozenset[str]] = frozenset({"fields"})

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as scrubbed JSON. Exception text is reduced to its type."""
        event: dict[str, Any] = {
            "ts": _stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            event.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's message might quote input; its type and location are enough.
            event["exc_type"] = record.exc_info[0].__name__
            tb = record.exc_info[2]
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                event["exc_at"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        return render_line(event)


#: The handler `configure_logging` installed, while it is still the root's only one.
_configured: logging.StreamHandler[Any] | None = None


def direct_stream(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler that would write `logger`'s INFO lines, when lines may skip `logging`.

    The access line is written once per request; the logging module's record, filters and
    handler chain cost more than rendering it. That chain can be skipped only when it would do
    nothing else: logging configured by `configure_logging` (one JSON handler on the root,
    nothing added since, e.g. by a test's log capture), and `logger` enabled for INFO with no
    handlers or filters of its own. Otherwise None: go through `logging` as usual.
    """
    handler = _configured
    root = logging.root
    if (
        handler is None
        or len(root.handlers) != 1
        or root.handlers[0] is not handler
        or logger.handlers
        or logger.filters
        or root.filters
        or handler.filters
        or not logger.isEnabledFor(logging.INFO)
        or not handler.level <= logging.INFO
    ):
        return None
    return handler


def write_direct(handler: logging.StreamHandler[Any], line: str) -> bool:
    """Write one rendered line as the handler would; False if the stream refused it."""
    handler.acquire()
    try:
        stream = handler.stream
        stream.write(line + handler.terminator)
        stream.flush()
    except (OSError, ValueError):  # closed or broken stream: let `logging` report it
        return False
    finally:
        handler.release()
    return True


def event_head(logger: str, created: float, message: str) -> dict[str, Any]:
    """The first four members of every line, as `JsonFormatter` writes them for INFO."""
    return {"ts": _stamp(created), "level": "info", "logger": logger, "msg": message}


def configure_logging(level: str = "info") -> None:
    """Send every phi-proxy log record to stderr as scrubbed JSON lines."""
    global _configured  # noqa: PLW0603 - the one handler this module installs
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _configured = handler
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The JSON lines never show caller file/line, thread or process names: skip collecting them
    # (the logging HOWTO's "Optimization" section; ~5 µs per access line).
    logging._srcfile = None  # noqa: SLF001 - the documented switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
