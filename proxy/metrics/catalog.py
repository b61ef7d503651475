"""Every metric the proxy exports, and the cheap calls that count into them.

The request path calls `request()` once per request and `transformed()` once per transformed
body. Both look up label children in small dicts keyed by tuples (one `labels()` call per new
combination, then a dict hit), so a request costs a few increments, not a label parse.

Label values come from closed sets only; `practice` is bounded by the current keystore and
`field_class` by the configured classes: anything else (a token of a practice this keystore
does not hold, a class a crafted token claims) is counted as `other`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Concatenate, Final, ParamSpec

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.keyring import Keyring
    from proxy.accesslog import AccessRecord
    from proxy.transform import FieldPolicy, TransformStats

__all__ = ["ALERTS", "NO_ROUTE", "Metrics"]

#: The route label of a request that matched no configured write or read route.
NO_ROUTE: Final = "-"
#: The practice label when a body's values belong to several practices at once.
MIXED: Final = "mixed"
#: The practice label when none is known (e.g. a token that did not open).
UNKNOWN: Final = "unknown"
OTHER: Final = "other"
#: The alert lines a request can raise (`phi_proxy_alerts_total`; proxy.audit.alerts).
ALERTS: Final = (
    "lapsed_grant_use",
    "integrity_failure",
    "masked_burst",
    "break_glass_use",
    "break_glass_refused",
    "break_glass_without_claim",
    "canary_touched",
)
#: How a canary token was touched (proxy.canaries): read in clear, read masked, or sent.
CANARY_HOWS: Final = ("disclosed", "masked", "sent")

_log = logging.getLogger("phi_proxy")
_P = ParamSpec("_P")
#: At most one log line per this many seconds about metrics that could not be counted.
_FAILURE_LOG_SECONDS: Final = 60.0

_STATUS_CLASSES: Final = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_PROXY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_PORTAL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _contained(
    count: Callable[Concatenate[Metrics, _P], None],
) -> Callable[Concatenate[Metrics, _P], None]:
    """Counting never fails what it counts (a request, an audit event): errors are logged.

    E.g. a full /tmp under `--workers`, where a new label's value file cannot grow.
    """

    def counted(self: Metrics, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            count(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a metric is never worth a failed request
            self.failed(exc)

    counted.__name__, counted.__doc__ = count.__name__, count.__doc__
    return counted


class Metrics:
    """The metric objects of one process, registered in a private registry."""

    #: When the last "could not count" line was logged (monotonic), or None.
    _failure_logged: float | None = None

    def __init__(self) -> None:
        """Create every metric (in multiprocess mode: each worker's own value files)."""
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "phi_proxy_requests",
            "Client requests answered, by outcome code, status class and configured route.",
            ["outcome", "status_class", "route"],
            registry=reg,
        )
        self._proxy_seconds = Histogram(
            "phi_proxy_proxy_duration_seconds",
            "Time the proxy itself spent on a request (total minus the portal's time).",
            buckets=_PROXY_BUCKETS,
            registry=reg,
        )
        self._portal_seconds = Histogram(
            "phi_proxy_portal_duration_seconds",
            "Time until the portal's response headers arrived, for forwarded requests.",
            buckets=_PORTAL_BUCKETS,
            registry=reg,
        )
        self._values = Counter(
            "phi_proxy_phi_values",
            "PHI values decrypted, masked, kept as plaintext or encrypted, by class and practice.",
            ["action", "field_class", "practice"],
            registry=reg,
        )
        self._refused = Counter(
            "phi_proxy_writes_refused",
            "Request bodies refused before reaching the portal, by reason code.",
            ["reason"],
            registry=reg,
        )
        self._integrity = Counter(
            "phi_proxy_integrity_failures",
            "Tokens in the portal's answers that did not open, by reason code.",
            ["reason"],
            registry=reg,
        )
        self._alerts = Counter(
            "phi_proxy_alerts",
            "Requests that raised an alert line (counted before any throttling), by alert.",
            ["alert"],
            registry=reg,
        )
        self._audit_denied = Counter(
            "phi_proxy_audit_denied_responses",
            "Responses masked because the audit trail could not be written (on_failure: deny).",
            registry=reg,
        )
        self._audit_dropped = Counter(
            "phi_proxy_audit_events_dropped",
            "Audit events dropped because the in-memory queue was full while the sink was down.",
            registry=reg,
        )
        self._canary_touches = Counter(
            "phi_proxy_canary_touches",
            "Canary tokens (docs/canaries.md) a request read or sent, by practice, field class "
            "and how (disclosed, masked, sent). No real workflow reads one: any touch is a lead.",
            ["practice", "field_class", "how"],
            registry=reg,
        )
        self._reloads = Counter(
            "phi_proxy_reloads",
            "Reloads of keys and config, by result (applied, refused).",
            ["result"],
            registry=reg,
        )
        self._worker_restarts = Counter(
            "phi_proxy_worker_restarts",
            "Worker processes the supervisor replaced after they exited.",
            registry=reg,
        )
        self.up = Gauge(
            "phi_proxy_up",
            "1 when a dependency works in every live worker, else 0.",
            ["dependency"],
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.audit_queue = Gauge(
            "phi_proxy_audit_queue_events",
            "Audit events waiting in memory to be written.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.cache_entries = Gauge(
            "phi_proxy_cache_entries",
            "Entries held by a cache, summed over live workers.",
            ["cache"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.jwks_age = Gauge(
            "phi_proxy_jwks_age_seconds",
            "Age of the oldest JWKS held (+Inf: a provider's keys never loaded).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        # The latest flush wins (a worker that flushed before a rotation holds the old key's count).
        self.key_encryptions = Gauge(
            "phi_proxy_key_encryptions",
            "Encryptions counted for a practice's encrypting key (keys.usage_file totals).",
            ["practice"],
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self.key_usage_ratio = Gauge(
            "phi_proxy_key_usage_ratio",
            "A practice's encrypting key's encryptions divided by keys.usage_limit.",
            ["practice"],
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self._request_children: dict[tuple[str, int, str], Counter] = {}
        self._value_children: dict[tuple[str, str, str], Counter] = {}
        self._integrity_children: dict[str, Counter] = {}
        self._ring: Keyring | None = None
        self._practices: frozenset[str] = frozenset()
        self._policy: FieldPolicy | None = None
        self._classes: frozenset[str] = frozenset()
        # Series an alert rule watches exist from the start: increase() misses the first event
        # of a series that appears with it.
        for result in ("applied", "refused"):
            self._reloads.labels(result)
        for alert in ALERTS:
            self._alerts.labels(alert)

    def failed(self, exc: Exception) -> None:
        """Log (at most once a minute) that a value could not be counted; carry on."""
        now = time.monotonic()
        last = self._failure_logged
        if last is None or now - last >= _FAILURE_LOG_SECONDS:
            self._failure_logged = now
            _log.error(
                "metrics: a value could not be counted (%s: %s); requests are unaffected, the "
                "metrics undercount until this stops (logged at most once a minute)",
                type(exc).__name__,
                exc,
            )

    # ---- the request path -----------------------------------------------------------------------

    @_contained
    def request(self, record: AccessRecord, finished: float) -> None:
        """Count one answered request and its two latencies."""
        status = record.status
        key = (record.outcome, status // 100 if 0 <= status < 600 else 0, record.route)  # noqa: PLR2004
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(key[0], _STATUS_CLASSES[key[1]], key[2])
            self._request_children[key] = child
        child.inc()
        total = finished - record.started
        upstream_ms = record.upstream_ms
        if upstream_ms is None:
            self._proxy_seconds.observe(total)
        else:
            portal = upstream_ms / 1000
            self._portal_seconds.observe(portal)
            self._proxy_seconds.observe(max(0.0, total - portal))
        if record.outcome == "request_rejected":
            reason = record.fields.get("rejected")
            self._refused.labels(reason if isinstance(reason, str) else OTHER).inc()

    @_contained
    def transformed(self, stats: TransformStats, keyring: Keyring, policy: FieldPolicy) -> None:
        """Count the values one body transform decrypted, masked, kept or encrypted."""
        if keyring is not self._ring:
            self._ring, self._practices = keyring, keyring.practices()
        if policy is not self._policy:
            self._policy, self._classes = policy, frozenset(policy.settings.classes)
        shown = self._practice(stats.practices)
        if stats.decrypted:
            self._count("decrypted", stats.decrypted, shown)
        if stats.plaintext_kept:
            self._count("plaintext_kept", stats.plaintext_kept, shown)
        if stats.encrypted:
            self._count("encrypted", stats.encrypted, shown)
        if stats.masked:
            self._count("masked", stats.masked, self._practice(stats.withheld))
        if stats.integrity_failures:
            described = 0
            for event in stats.integrity_events:
                self._integrity_child(event.reason).inc()
                described += 1
            if stats.integrity_failures > described:  # beyond the events a body keeps
                self._integrity_child("unclassified").inc(stats.integrity_failures - described)

    def _practice(self, practices: set[str]) -> str:
        if len(practices) == 1:
            (practice,) = practices
            return practice if practice in self._practices else OTHER
        return MIXED if practices else UNKNOWN

    def _count(self, action: str, counts: dict[str, int], practice: str) -> None:
        classes = self._classes
        for field_class, count in counts.items():
            key = (action, field_class if field_class in classes else OTHER, practice)
            child = self._value_children.get(key)
            if child is None:
                child = self._value_children[key] = self._values.labels(*key)
            child.inc(count)

    def _integrity_child(self, reason: str) -> Counter:
        child = self._integrity_children.get(reason)
        if child is None:
            child = self._integrity_children[reason] = self._integrity.labels(reason)
        return child

    # ---- events outside the request's own accounting --------------------------------------------

    @_contained
    def alert(self, alert: str) -> None:
        """A request raised `alert` (whether or not its line was held back)."""
        self._alerts.labels(alert).inc()

    @_contained
    def canary_touched(self, practice: str, field_class: str, how: str) -> None:
        """A canary token was touched.

        Practice and class come from the canary register (written by the operator with
        `phi-keys canary`, never by a caller), so they are a closed set like the keystore's.
        """
        self._canary_touches.labels(
            practice, field_class, how if how in CANARY_HOWS else OTHER
        ).inc()

    @_contained
    def audit_denied(self) -> None:
        """A response was masked because the audit trail cannot be written."""
        self._audit_denied.inc()

    @_contained
    def audit_dropped(self, count: int) -> None:
        """`count` audit events were dropped from the full queue."""
        if count > 0:
            self._audit_dropped.inc(count)

    @_contained
    def reload(self, *, applied: bool) -> None:
        """A reload was applied, or refused (the old keys and config stay)."""
        self._reloads.labels("applied" if applied else "refused").inc()

    @_contained
    def worker_restarted(self) -> None:
        """The supervisor replaced a worker that exited."""
        self._worker_restarts.inc()

    @_contained
    def key_usage(self, practice: str, encryptions: int, limit: int) -> None:
        """The flushed encryption total of `practice`'s encrypting key."""
        self.key_encryptions.labels(practice).set(encryptions)
        self.key_usage_ratio.labels(practice).set(encryptions / limit if limit else 0.0)
