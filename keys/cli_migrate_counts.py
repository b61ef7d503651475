"""What `rewrap` and `encrypt-existing` count: tokens per key version, and encryptions made.

The census tells an operator which keys the stored data still uses (retire none of those); the
encryption counts feed the keys.usage_limit warning, so every run saves them.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from keys.usage import UsageCounter, open_counting_keyring, unsaved_warning, usage_counter

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from keys.rewrap import TokenCensus
    from keys.settings import KeySettings

__all__ = ["EXIT_LEFT_BEHIND", "census_lines", "open_counted_keyring", "save_counts"]

#: The run finished but left tokens or values behind: a script must not take it as complete.
EXIT_LEFT_BEHIND = 1


def census_lines(census: TokenCensus, keyring: Keyring, *, after: bool = True) -> list[str]:
    """Readable per-key-version counts (practice, version, state, kid) plus unopenable tokens."""
    infos = {i.kid: i for i in keyring.infos()}
    counts = census.after if after else census.before
    lines = []
    for kid, n in sorted(counts.items(), key=lambda kv: (str(infos.get(kv[0])), kv[0])):
        info = infos.get(kid)
        where = f"{info.practice} v{info.version} {info.state.value}" if info else "unknown key"
        lines.append(f"  {kid}  {where:<40} {n}")
    if census.unopenable:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(census.unopenable.items()))
        lines.append(f"  left unchanged (cannot be opened): {reasons}")
    return lines


def open_counted_keyring(settings: KeySettings) -> tuple[Keyring, UsageCounter]:
    """The keyring, and the counter of the encryptions it makes during this run."""
    counter = usage_counter(settings)
    return open_counting_keyring(settings, counter), counter


def save_counts(counter: UsageCounter) -> None:
    """Flush the run's encryption counts; if they cannot be saved, say so on stderr."""
    counter.flush()
    warning = unsaved_warning(counter)
    if warning is not None:
        print(f"phi-keys: {warning}", file=sys.stderr)
