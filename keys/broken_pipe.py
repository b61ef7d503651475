"""Every command-line tool ends quietly when whoever reads its output stops early.

`phi-grants list | head -1` closes the pipe after one line; the next write to stdout then raises
BrokenPipeError, which used to end in a traceback. `quiet_on_broken_pipe` wraps each tool's
`main` and follows the recipe in the Python docs (the `signal` module, "Note on SIGPIPE"): flush
stdout while the error can still be caught, then point stdout at /dev/null so Python's own
flush at exit does not fail again. The exit status is 141 (128 + SIGPIPE), what a shell reports
for `grep` or `cat` in the same place, so `set -o pipefail` scripts see the same thing.

Only a broken *stdout* is handled: the same error from anything else (a socket) is re-raised.

Commands that change keys or grants must not stop half-way because the reader left: `phi-keys
rotate --all | head -1` would rotate one practice, die on the second line and never write the
audit event. They run inside `finish_despite_closed_output`: output to a closed stdout is
dropped, the change and its audit event complete, and the command's own status is returned.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import select
import signal
import sys
from typing import TYPE_CHECKING, BinaryIO, Final, ParamSpec, TextIO, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["EXIT_BROKEN_PIPE", "finish_despite_closed_output", "quiet_on_broken_pipe"]

#: The status a shell reports for a process ended by SIGPIPE.
EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE

_P = ParamSpec("_P")


def quiet_on_broken_pipe(main: Callable[_P, int]) -> Callable[_P, int]:
    """Wrap a `main` returning an exit status: a closed stdout gives EXIT_BROKEN_PIPE, silently."""

    @functools.wraps(main)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()  # inside the try: output still buffered can hit the closed pipe
        except BrokenPipeError:
            if not _stdout_reader_gone():
                raise
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        return status

    return run


def _stdout_reader_gone() -> bool:
    """True if stdout is a pipe or socket whose reading end is closed (POLLERR / POLLHUP)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # error and hang-up events are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class _DropWhenClosed(io.TextIOBase):
    """stdout that forwards to the real one until its reader goes away, then drops output."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self.dropped = False

    def writable(self) -> bool:
        return True

    # Binary output (`phi-keys rewrap` to stdout) goes to the real buffer: if its reader leaves,
    # the stream is incomplete, so the error propagates and the command fails unaudited.
    @property
    def buffer(self) -> BinaryIO:
        return self._target.buffer

    @property
    def encoding(self) -> str:  # type: ignore[override] # TextIOBase declares it as a property
        return self._target.encoding

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return self._target.isatty()

    def write(self, text: str) -> int:
        if not self.dropped:
            try:
                self._target.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.dropped:
            try:
                self._target.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        # Point the descriptor at /dev/null so what is still buffered (and Python's flush at
        # exit) goes nowhere instead of failing again.
        self.dropped = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._target.fileno())
        finally:
            os.close(devnull)


@contextlib.contextmanager
def finish_despite_closed_output() -> Iterator[None]:
    """Run a state-changing command to the end even if whoever reads its output has left."""
    real = sys.stdout
    forgiving = _DropWhenClosed(real)
    sys.stdout = cast("TextIO", forgiving)
    try:
        yield
        forgiving.flush()
    finally:
        sys.stdout = real
