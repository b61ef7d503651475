"""One JSON access-log line per request: who, what, how long, how many fields touched.

Only the path is logged, never the query string (a search by SSN carries PHI there), and never
a header value, token or body.

The line is rendered here and written straight to the log handler when logging is configured
as `serve` configures it (`proxy.logs.direct_stream`): the same bytes `JsonFormatter` would
write, without the logging module's per-record machinery (~40% of the line's cost). Any other
configuration (a test capturing logs, an extra handler) goes through `logging` as before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from proxy import metrics
from proxy.audit.events import path_template
from proxy.logs import ACCESS_LOGGER, direct_stream, event_head, render_line, write_direct

__all__ = ["AccessRecord", "log_access"]

_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(slots=True)
class AccessRecord:
    """Facts about one request, filled in as it moves through the pipeline."""

    request_id: str
    method: str
    path: str
    peer: str | None
    started: float
    subject: str | None = None
    status: int = 0
    upstream_ms: float | None = None
    outcome: str = "forwarded"
    fields: dict[str, Any] = field(default_factory=dict)
    #: The configured write or read route's template it matched (a metrics label), else "-".
    route: str = "-"


def log_access(record: AccessRecord, *, finished: float) -> None:
    """Emit the access line for a finished request, and count it in the metrics."""
    metrics.current().request(record, finished)
    fields = {
        "request_id": record.request_id,
        "method": record.method,
        # Id-like segments become {id}: a path can carry an SSN or a record id.
        "path": path_template(record.path),
        "peer": record.peer,
        "subject": record.subject,
        "status": record.status,
        "outcome": record.outcome,
        "duration_ms": round((finished - record.started) * 1000, 3),
        "upstream_ms": record.upstream_ms,
        **record.fields,
    }
    handler = direct_stream(_log)
    if handler is not None:
        event = event_head(ACCESS_LOGGER, time.time(), "request")
        event.update(fields)
        if write_direct(handler, render_line(event)):
            return
    _log.info("request", extra={"fields": fields})
