"""What the running proxy does with its key-usage counts after each flush.

Two things, both per practice's encrypting (primary) key: alert once when it reaches
`WARN_FRACTION` of `keys.usage_limit` (`phi-keys list` warns too, but only when someone runs it;
the alert line reaches the SIEM), and rotate it when `keys.auto_rotate_after` is set and reached
(guarded by `only_if_active`, so replicas racing to rotate the same key rotate it once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from keys.errors import PhiProxyError
from keys.settings import keystore_file
from keys.usage import WARN_FRACTION
from proxy import metrics
from proxy.logs import ALERT_LOGGER

if TYPE_CHECKING:
    from proxy.runtime import Runtime

__all__ = ["UsageWatch"]

_log = logging.getLogger("phi_proxy")
_alerts = logging.getLogger(ALERT_LOGGER)


class UsageWatch:
    """Alerts and automatic rotation driven by the flushed encryption counts."""

    def __init__(self, runtime: Runtime) -> None:
        """Watch `runtime`'s keyring and settings (both may be swapped by reloads)."""
        self._runtime = runtime
        self._alerted: set[str] = set()  # kids already alerted on (once per process)

    async def observe(self, totals: dict[str, int]) -> bool:
        """Alert where due, auto-rotate where due; True if a key was rotated (reload then)."""
        self._alert_usage(totals)
        return await self._auto_rotate(totals)

    def _encrypting_keys(self) -> list[tuple[str, str]]:
        """(practice, kid of its primary key) for every practice that has one."""
        ring = self._runtime.keyring()
        keys = []
        for practice in sorted(ring.practices()):
            try:
                keys.append((practice, ring.primary(practice).kid))
            except PhiProxyError:
                continue
        return keys

    def _alert_usage(self, totals: dict[str, int]) -> None:
        """Alert once per key: a practice's encrypting key reached WARN_FRACTION of usage_limit.

        `phi-keys list` warns too, but only when someone runs it; this line reaches the SIEM.
        """
        limit = self._runtime.settings.keys.usage_limit
        for practice, kid in self._encrypting_keys():
            used = totals.get(kid, 0)
            metrics.current().key_usage(practice, used, limit)
            if used < WARN_FRACTION * limit or kid in self._alerted:
                continue
            self._alerted.add(kid)
            _alerts.warning(
                "key_usage_high",
                extra={
                    "fields": {
                        "practice": practice,
                        "kid": kid,
                        "encryptions": used,
                        "usage_limit": limit,
                        "action": f"phi-keys rotate --practice {practice}",
                    }
                },
            )

    async def _auto_rotate(self, totals: dict[str, int]) -> bool:
        limit = self._runtime.settings.keys.auto_rotate_after
        if limit is None:
            return False
        due = [(p, kid) for p, kid in self._encrypting_keys() if totals.get(kid, 0) >= limit]
        if not due:
            return False
        store = keystore_file(self._runtime.settings.keys)
        for practice, kid in due:
            try:
                info = await asyncio.to_thread(store.rotate, practice, only_if_active=kid)
            except PhiProxyError as exc:
                _log.error(
                    "automatic rotation failed; the key keeps encrypting",
                    extra={"fields": {"practice": practice, "kid": kid, "error": str(exc)}},
                )
                continue
            _log.warning(
                "key rotated automatically: keys.auto_rotate_after reached",
                extra={"fields": {"practice": practice, "old_kid": kid, "new_kid": info.kid}},
            )
        return True
