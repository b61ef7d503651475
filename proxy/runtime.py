"""The live state of one proxy process: settings, opened stores, the current pipeline.

Built from settings, opened once in the app's cleanup context, closed after in-flight requests
finish. The pipeline is an immutable value; reloading keys or config builds a new one and swaps
the reference, so a request always sees one consistent snapshot.

A KEK kept in an HSM or KMS can stop working while the proxy runs (token pulled, key disabled,
role revoked). Then `seal` swaps in an empty keyring: every token masks, every write that needs
encryption is refused, /readyz says not ready, until a reload with a working KEK (proxy.reload
checks it every tick) installs real keys again. The DEKs in memory would still work; refusing
to use them is what makes revoking the KEK an off switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from keys.sealed_keyring import sealed_keyring
from keys.usage import open_counting_keyring, usage_counter
from proxy.audit.factory import open_trail
from proxy.audit.requests import RequestAuditor
from proxy.break_glass_gate import BreakGlassGate
from proxy.canaries import load_canaries
from proxy.forward.headers import HeaderPolicy
from proxy.forward.upstream import Upstream
from proxy.grants import open_grant_store
from proxy.handler import Pipeline
from proxy.identity import build_authenticator
from proxy.identity.key_health import inherit_keys, key_problems
from proxy.logs import ALERT_LOGGER
from proxy.transform import FieldPolicy, RouteTable

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from proxy.audit.trail import AuditTrail
    from proxy.grants import GrantStore
    from proxy.identity import Authenticator
    from proxy.settings import Settings

__all__ = ["Runtime", "header_policy"]

_log = logging.getLogger("phi_proxy")
_alerts = logging.getLogger(ALERT_LOGGER)


class Runtime:
    """Owns the resources of one process and hands out the current pipeline."""

    #: Why the KEK cannot be used (sealed: no keys loaded), or None while it works.
    kek_problem: str | None = None
    #: Why the last readiness check found the identity provider's keys unusable (or stale).
    jwks_problems: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keyring: Keyring | None = None
        self._grants: GrantStore | None = None
        self._authenticator: Authenticator | None = None
        self._upstream = Upstream(settings.upstream)
        self._pipeline: Pipeline | None = None
        #: Encryptions per key version, flushed to keys.usage_file (see keys.usage).
        self.usage = usage_counter(settings.keys)
        self._audit: AuditTrail | None = None

    async def open(self) -> None:
        """Open the keystore, grant store, identity provider and portal pool; build the pipeline.

        Any failure here stops the start: a proxy that cannot decide who may see what must
        not accept traffic.
        """
        settings = self.settings
        self._keyring = open_counting_keyring(settings.keys, self.usage)
        # An unwritable usage file does not stop the start (encryption must go on); checking
        # it now logs that error once at start, not minutes later under traffic.
        await asyncio.to_thread(self.usage.check)
        self._grants = open_grant_store(settings.grants)
        # Its keys load at the first token or /readyz probe (which reports a JWKS it cannot
        # read, naming it): the proxy starts even while an IdP is down for a moment.
        self._authenticator = build_authenticator(settings.identity)
        self._audit = open_trail(settings.audit)
        if self._audit is not None:
            await self._audit.start()  # raises if the trail cannot be written: do not start
        await self._upstream.open()
        self._pipeline = Pipeline(
            authenticator=self._authenticator,
            grants=self._grants,
            keyring=self.keyring,
            policy=FieldPolicy.compile(settings.fields),
            routes=RouteTable.compile(settings.write_routes),
            read_routes=RouteTable.compile(settings.read_routes),
            headers=header_policy(settings),
            upstream=self._upstream,
            max_response_body=settings.limits.max_response_body,
            preserve_host=settings.upstream.preserve_host,
            audit=RequestAuditor(self._audit, settings.audit.alerts),
            canaries=load_canaries(settings.keys, self._keyring),
            break_glass=(
                BreakGlassGate(settings.break_glass, self._grants)
                if settings.break_glass.enabled
                else None
            ),
        )
        _log.info(
            "runtime opened",
            extra={
                "fields": {
                    "practices": len(self.keyring().practices()),
                    "canary_tokens": len(self._pipeline.canaries),
                }
            },
        )

    async def close(self) -> None:
        """Close everything that `open` opened, in reverse order."""
        await self._upstream.close()
        if self._audit is not None:
            await self._audit.close()
        if self._authenticator is not None:
            await self._authenticator.close()
        if self._grants is not None:
            await self._grants.close()
        await asyncio.to_thread(self.usage.flush)  # the last batch of encryption counts
        if self.usage.pending:  # how far the counts now fall short, for the operator
            _log.warning(
                "key usage counts lost at exit: these encryptions were never saved",
                extra={
                    "fields": {
                        "file": str(self.usage.path),
                        "encryptions": self.usage.pending,
                        "error": self.usage.problem,
                    }
                },
            )

    def install(
        self, *, settings: Settings, keyring: Keyring, pipeline: Pipeline
    ) -> Authenticator | None:
        """Swap in a reloaded snapshot (proxy.reload); returns the replaced authenticator.

        Plain reference assignments on the event loop: a request that already holds the old
        pipeline or keyring finishes with it; the next one sees the new one. The caller closes
        the returned authenticator once in-flight requests are done with it.
        """
        old_auth = self._authenticator
        if old_auth is not None and old_auth is not pipeline.authenticator:
            inherit_keys(pipeline.authenticator, old_auth)
        self.settings = settings
        self._keyring = keyring
        self._pipeline = pipeline
        self._authenticator = pipeline.authenticator
        if self.kek_problem is not None:  # the keys were just unwrapped: the KEK works again
            self.kek_problem = None
            _alerts.warning(
                "kek_available",
                extra={"fields": {"keys": len(keyring.infos()), "decrypting": "again"}},
            )
        return None if old_auth is pipeline.authenticator else old_auth

    def seal(self, problem: str) -> None:
        """Drop every key because the KEK cannot be used: fail closed until a reload works.

        Requests already running finish with the keyring they hold; every later one masks
        every token and is refused encryption. Logged (as an alert) once per outage.
        """
        if self.kek_problem is None:
            _alerts.error(
                "kek_unavailable",
                extra={
                    "fields": {
                        "error": problem,
                        "meanwhile": "every PHI value is masked and writes that need "
                        "encryption are refused; /readyz reports not ready",
                        "fix": "make the KEK usable again (see error); the proxy checks it "
                        "every keys.watch_interval seconds and reloads its keys by itself",
                    }
                },
            )
        self.kek_problem = problem
        self._keyring = sealed_keyring()

    def keyring(self) -> Keyring:
        """The current keyring snapshot."""
        if self._keyring is None:
            raise RuntimeError("the runtime is not open")
        return self._keyring

    def pipeline(self) -> Pipeline:
        """The current request pipeline."""
        if self._pipeline is None:
            raise RuntimeError("the runtime is not open")
        return self._pipeline

    async def _check_jwks(self) -> bool:
        """True when every identity provider's keys were loaded and are current."""
        if self._authenticator is None:
            return False
        problems = tuple(await key_problems(self._authenticator, now=time.time()))
        if problems and not self.jwks_problems:  # once per outage; the cache logs each retry
            for problem in problems:
                _log.error(
                    "identity provider keys cannot be loaded: %s; /readyz reports jwks: false "
                    "until they can",
                    problem,
                )
        self.jwks_problems = problems
        return not problems

    def problems(self) -> list[str]:
        """What /readyz names besides its checks: the reasons an operator must act on."""
        named = [*self.jwks_problems]
        if self.kek_problem is not None:
            named.append(f"kek: {self.kek_problem}")
        return named

    async def readiness(self) -> dict[str, bool]:
        """Each dependency's state, for /readyz."""
        grants_ok = self._grants is not None and await self._grants.ping()
        return {
            "jwks": await self._check_jwks(),
            "keystore": self._keyring is not None and bool(self._keyring.practices()),
            "kek": self.kek_problem is None,
            "grant_store": grants_ok,
            "upstream_pool": self._pipeline is not None,
            "audit_sink": self._audit is None or self._audit.healthy,
        }


def header_policy(settings: Settings) -> HeaderPolicy:
    """The compiled header rules of `settings` (at start, and on every reload)."""
    return HeaderPolicy.build(
        extra_stripped=settings.headers.strip_request_headers,
        trusted_networks=settings.headers.trusted_networks(),
        forward_authorization=settings.upstream.forward_authorization,
    )
