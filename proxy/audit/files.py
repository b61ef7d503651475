"""The trail's files on disk: the configured file and its rotated siblings, and their events.

Shared by `phi-audit verify|report` and the grant review's last-use reader, so every reader
finds the same files in the same order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["iter_events", "trail_files"]


def _first_seq(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            seq = orjson.loads(handle.readline())["seq"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return -1
    return seq if isinstance(seq, int) else -1


def trail_files(path: Path) -> list[Path]:
    """The configured file and its rotated siblings (`audit.jsonl.1`, `audit.jsonl-2026…`).

    Ordered by the sequence number of their first event, so any naming scheme works.
    Compressed siblings cannot be read here: decompress them first.
    """
    skip = (".head", ".gz", ".bz2", ".xz", ".zst")
    siblings = [
        p for p in path.parent.glob(f"{path.name}?*") if p.is_file() and not p.name.endswith(skip)
    ]
    files = [*siblings, path] if path.exists() else siblings
    return sorted(files, key=_first_seq)


def iter_events(files: list[Path]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """Every parseable event of `files`, in order, with its file and line number."""
    for path in files:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    event = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    yield path, number, event
