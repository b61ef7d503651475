"""A grant store's failure log: at most one line per kind of failure per interval.

While a store cannot be read, every request is answered "no access" and every one of them fails
the same way; logging each would write thousands of identical lines a second and bury everything
else. So each kind of failure ("read", "listener", …) is logged once, then again only after
`interval` seconds. Both stores log through their own logger, so operators' per-module log
settings keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["ThrottledFailureLog"]

_READ_FAILED = (
    "grant store %s cannot be read (%s: %s); answering 'no access' to every caller "
    "until it recovers (logged at most every %.0f s)"
)


class ThrottledFailureLog:
    """Decides when a store failure is worth a log line, and writes the read failure's line."""

    def __init__(self, log: logging.Logger, where: object, interval: float) -> None:
        self.interval = interval
        self._log = log
        self._where = where
        self._last: dict[str, float] = {}

    def due(self, kind: str, moment: float) -> bool:
        """True (and remember `moment`) unless `kind` was logged less than `interval` ago."""
        last = self._last.get(kind)
        if last is not None and moment - last < self.interval:
            return False
        self._last[kind] = moment
        return True

    def read_failed(self, exc: BaseException, moment: float) -> None:
        """Log that grants cannot be read (so every caller gets no access), if it is due."""
        if self.due("read", moment):
            self._log.error(_READ_FAILED, self._where, exc.__class__.__name__, exc, self.interval)
