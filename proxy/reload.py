"""Hot reload of keys and config, usage-counter flushing, and automatic rotation.

A running proxy picks up a changed keystore (new version, retired key, new or shredded
practice), a changed KEK file, and a changed config file without a restart:

- on SIGHUP, and by polling the files' (device, inode, size, mtime) every
  `keys.watch_interval` seconds (no inotify dependency; an atomic rename changes the inode);
- the new keyring and pipeline are built off the event loop, then swapped in with plain
  reference assignments (`Runtime.install`). A request already running keeps the snapshot it
  started with; the next one sees the new one. Nothing is dropped.
- anything invalid (unparseable YAML, a keystore that fails its integrity check, a KEK that does
  not open it) is refused with one logged error and the proxy keeps serving with what it had.

Live: `keys`, `fields`, `write_routes`, `read_routes`, `identity`, `headers`. Everything else
(listener, admin, upstream, grant store, limits, logging, audit) needs new sockets or stores: a
change there is logged as "restart required" and the running values stay. A change of
`keys.keystore` or `keys.usage_file` (another file) is treated the same way, since the usage
counters belong to the files.

The same loop flushes the per-key encryption counters (keys.usage) and hands the totals to
`UsageWatch` (proxy/usage_watch.py): a `key_usage_high` alert near keys.usage_limit, and
automatic rotation when keys.auto_rotate_after is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Final

from keys.canary_register import canaries_path
from keys.errors import KekUnavailable, PhiProxyError
from keys.settings import FileKekSettings, check_kek
from keys.usage import open_counting_keyring
from proxy import metrics
from proxy.canaries import load_canaries
from proxy.identity import build_authenticator
from proxy.runtime import header_policy
from proxy.settings import load_settings
from proxy.transform import FieldPolicy, RouteTable
from proxy.usage_watch import UsageWatch

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from proxy.handler import Pipeline
    from proxy.identity import Authenticator
    from proxy.runtime import Runtime
    from proxy.settings import Settings

__all__ = ["LIVE_SECTIONS", "Reloader"]

_log = logging.getLogger("phi_proxy")

#: Config sections a reload applies to the running proxy; all others need a restart.
LIVE_SECTIONS: Final = frozenset(
    {"keys", "fields", "write_routes", "read_routes", "identity", "headers"}
)
#: How long a replaced authenticator stays open for requests that still use it.
_RETIRE_AFTER: Final = 60.0

FileSignature = tuple[int, int, int, int] | None


def _signature(path: Path) -> FileSignature:
    try:
        st = os.stat(path)  # noqa: PTH116 - one syscall, all four fields
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _where(exc: BaseException) -> str:
    """An unexpected error's type and where it was raised, without its message.

    The message could quote a file's contents (a key, a token); the type and the innermost
    frame are enough to report the bug, and say which file was being read.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}()"


def _watched(settings: Settings, config_path: Path | None) -> tuple[Path, ...]:
    paths = [settings.keys.keystore, canaries_path(settings.keys)]
    if isinstance(settings.keys.kek, FileKekSettings):
        paths.append(settings.keys.kek.path)
    identity = settings.identity
    paths.extend(  # a removed signing key must stop verifying
        source.jwks_file
        for source in (identity, *identity.other_providers)
        if source.jwks_file is not None
    )
    if config_path is not None:
        paths.append(config_path)
    return tuple(paths)


class _ConfigUnreadable(PhiProxyError):
    """The config file did not load; the keystore may still be reloaded on its own."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Built:
    settings: Settings
    keyring: Keyring
    pipeline: Pipeline
    changed: tuple[str, ...]
    restart_required: tuple[str, ...]


def _ignore() -> None:
    """SIGHUP handler while no reloader runs (the default action would end the process)."""


class Reloader:
    """Watches files, reloads on change or SIGHUP, flushes usage counts, auto-rotates."""

    def __init__(self, runtime: Runtime, config_path: Path | None) -> None:
        self._runtime = runtime
        self._config_path = config_path
        self._wake = asyncio.Event()
        self._forced = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retiring: dict[asyncio.Task[None], Authenticator] = {}
        self._signatures: dict[Path, FileSignature] = {}
        self._usage_watch = UsageWatch(runtime)
        self.reloads = 0  #: successful reloads so far (for tests and /readyz-style checks)
        self.failures = 0  #: refused reloads so far

    def __repr__(self) -> str:
        return f"<Reloader reloads={self.reloads} failures={self.failures}>"

    async def start(self, *, signals: bool = True) -> None:
        """Remember the files' current state and start the background loop (and SIGHUP)."""
        self._signatures = self._snapshot()
        self._runtime.usage.set_on_due(self._wake.set)
        if signals:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
        self._task = asyncio.create_task(self._loop(), name="phi-proxy-reloader")

    async def stop(self) -> None:
        """Stop the loop (the runtime flushes the last usage counts when it closes)."""
        with contextlib.suppress(RuntimeError, ValueError):  # ignore SIGHUP while shutting down
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _ignore)
        self._runtime.usage.set_on_due(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task, authenticator in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await authenticator.close()

    def request_reload(self) -> None:
        """Ask for a reload on the next loop turn (the SIGHUP handler)."""
        self._forced = True
        self._wake.set()

    async def _loop(self) -> None:
        interval = self._runtime.settings.keys.watch_interval or None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                _log.exception("reload loop error; will retry")
            interval = self._runtime.settings.keys.watch_interval or None

    async def tick(self) -> None:
        """One turn: check the KEK, flush counters, auto-rotate if due, reload if needed.

        A KEK in an HSM or KMS that stops working seals the runtime (everything masks); once
        it works again, the keys are reloaded, which unseals it.
        """
        runtime = self._runtime
        kek_works = True
        try:
            await asyncio.to_thread(check_kek, runtime.settings.keys.kek)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the KEK did not answer
            runtime.seal(str(exc) if isinstance(exc, KekUnavailable) else _where(exc))
            kek_works = False
        totals = None
        if runtime.usage.pending:
            totals = await asyncio.to_thread(runtime.usage.flush)
        if not kek_works:
            return  # no rotation, no reload: both need the KEK
        if runtime.kek_problem is not None:
            await self.reload(reason="kek available again")
            return
        rotated = await self._usage_watch.observe(totals) if totals else False
        current = self._snapshot()
        if self._forced or rotated or current != self._signatures:
            reason = "signal" if self._forced else ("auto-rotate" if rotated else "file changed")
            self._forced = False
            await self.reload(reason=reason)  # records the files' state itself, under its lock

    def _snapshot(self) -> dict[Path, FileSignature]:
        return {p: _signature(p) for p in _watched(self._runtime.settings, self._config_path)}

    async def reload(self, *, reason: str = "request") -> bool:
        """Rebuild and swap; on any problem log it, keep the old state, and return False."""
        async with self._lock:
            runtime = self._runtime
            # Signatures from BEFORE the build, recorded under the lock whatever the outcome: a
            # file changed while we build (an operator's shred landing mid-reload) still differs
            # at the next poll and is picked up; a refused file is not retried until it changes.
            before = self._snapshot()
            self._signatures = before
            try:
                built = await asyncio.to_thread(self._build, runtime.settings, runtime.pipeline())
            except _ConfigUnreadable as exc:
                self.failures += 1
                metrics.current().reload(applied=False)
                _log.error(
                    "reload refused; still serving with the previous keys and config",
                    extra={"fields": {"reason": reason, "error": str(exc)}},
                )
                keys_only = await self._keys_only(runtime, reason)
                if keys_only is None:
                    return False
                built = keys_only
            except PhiProxyError as exc:
                self.failures += 1
                metrics.current().reload(applied=False)
                _log.error(
                    "reload refused; still serving with the previous keys and config",
                    extra={"fields": {"reason": reason, "error": str(exc)}},
                )
                return False
            except Exception as exc:  # noqa: BLE001 - never let a bad file stop the proxy
                self.failures += 1
                metrics.current().reload(applied=False)
                _log.error(
                    "reload refused; still serving with the previous keys and config",
                    extra={"fields": {"reason": reason, "error": _where(exc)}},
                )
                return False
            old_auth = runtime.install(
                settings=built.settings, keyring=built.keyring, pipeline=built.pipeline
            )
            if old_auth is not None:
                self._retire_later(old_auth)
            after = self._snapshot()  # the new settings may watch other files
            self._signatures = {path: before.get(path, sig) for path, sig in after.items()}
            self.reloads += 1
            metrics.current().reload(applied=True)
            if built.restart_required:
                _log.warning(
                    "restart required: these config sections changed but are not reloaded live",
                    extra={"fields": {"sections": list(built.restart_required)}},
                )
            _log.info(
                "reload applied",
                extra={
                    "fields": {
                        "reason": reason,
                        "changed": list(built.changed),
                        "practices": len(built.keyring.practices()),
                        "keys": len(built.keyring.infos()),
                    }
                },
            )
            return True

    async def _keys_only(self, runtime: Runtime, reason: str) -> _Built | None:
        """With the config file unreadable, still apply the keystore and KEK as they are now.

        A shred or retire must not wait for someone to fix a half-edited YAML file: the old
        keyring (and its cache of opened tokens) would keep serving the shredded practice.
        """
        try:
            built = await asyncio.to_thread(
                self._build, runtime.settings, runtime.pipeline(), reread_config=False
            )
        except Exception as exc:  # noqa: BLE001 - the keystore's own problem is logged as usual
            _log.error(
                "reload refused; still serving with the previous keys and config",
                extra={"fields": {"reason": reason, "error": _where(exc)}},
            )
            return None
        _log.warning(
            "the config file was refused, but the keystore and KEK were reloaded with the "
            "previous config, so retired and shredded keys stop being served; fix the config",
            extra={"fields": {"reason": reason}},
        )
        return built

    def _build(self, old: Settings, pipeline: Pipeline, *, reread_config: bool = True) -> _Built:
        """Everything that may block or fail, off the event loop; touches no shared state."""
        new = old
        if self._config_path is not None and reread_config:
            try:
                new = load_settings(self._config_path)
            except PhiProxyError as exc:
                raise _ConfigUnreadable(str(exc)) from None
        changed = tuple(
            name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)
        )
        frozen = [name for name in changed if name not in LIVE_SECTIONS]
        moved = [  # the usage counter is bound to these two files for the process's life
            f"keys.{name}"
            for name in ("keystore", "usage_file")
            if "keys" in changed and getattr(new.keys, name) != getattr(old.keys, name)
        ]
        if moved:
            frozen.append("keys")
        merged = new.model_copy(update={name: getattr(old, name) for name in frozen})
        keyring = open_counting_keyring(merged.keys, self._runtime.usage)
        # Always a fresh authenticator: its JWKS is read again and its verified-token cache
        # starts empty, so a reload is how an operator makes a removed signing key stop at once.
        authenticator = build_authenticator(merged.identity)
        new_pipeline = dataclasses.replace(
            pipeline,
            authenticator=authenticator,
            policy=FieldPolicy.compile(merged.fields),
            routes=RouteTable.compile(merged.write_routes),
            read_routes=RouteTable.compile(merged.read_routes),
            headers=header_policy(merged),
            canaries=load_canaries(merged.keys, keyring),
        )
        restart = (*(n for n in frozen if n != "keys"), *moved)
        return _Built(merged, keyring, new_pipeline, changed, restart)

    def _retire_later(self, authenticator: Authenticator) -> None:
        async def close_later() -> None:
            await asyncio.sleep(_RETIRE_AFTER)
            await authenticator.close()

        task = asyncio.create_task(close_later())
        self._retiring[task] = authenticator
        task.add_done_callback(lambda done: self._retiring.pop(done, None))
