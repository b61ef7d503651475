"""`phi-grants add` checks that the practice has a key: a grant for a mistyped id is no grant.

Found in issue 15: `phi-grants add --practice practice-A` (for `practice-a`) succeeded silently,
and the person saw masks. The practice's keys are read from the keystore the config names (ids
and states only; no key is unwrapped for use). `--no-key-yet` adds the grant anyway, for a
practice whose key is created later (`phi-keys add-practice`). A config without a `keys:`
section (an admin host that only manages a PostgreSQL grant store) cannot be checked: the
command says so and goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.config_file import load_section, read_config_mapping
from keys.errors import PhiProxyError
from keys.keystore import shredded_practices
from keys.settings import KeySettings, keystore_file
from proxy.grants.errors import GrantError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["check_practice_key"]

_SHOWN = 10


def check_practice_key(config_path: Path, practice: str, *, no_key_yet: bool) -> str | None:
    """None when `practice` has a live key; a note to print when it need not; else GrantError."""
    if "keys" not in read_config_mapping(config_path):
        return (
            f"note: {config_path} has no keys: section, so whether practice {practice!r} has a "
            "key was not checked; check it with `phi-keys list` on a host with the keystore"
        )
    override = (
        f"If its key is created later (`phi-keys add-practice {practice}`), pass --no-key-yet"
    )
    try:
        settings = load_section(config_path, "keys", KeySettings)
        infos = keystore_file(settings).infos()
    except PhiProxyError as exc:
        if no_key_yet:
            return f"note: practice {practice!r} was not checked against the keystore ({exc})"
        raise GrantError(
            f"cannot check that practice {practice!r} has a key: {exc}. Nothing was added. Run "
            f"phi-grants where the keystore and KEK can be read. {override}"
        ) from None
    live = {i.practice for i in infos} - shredded_practices(infos)
    if practice in live:
        return None
    if no_key_yet:
        return (
            f"note: practice {practice!r} has no key in {settings.keystore} yet; the grant "
            f"shows its PHI once `phi-keys add-practice {practice}` has run"
        )
    if practice in shredded_practices(infos):
        raise GrantError(
            f"practice {practice!r} was shredded (every key destroyed): its PHI can never be "
            "shown again, so a grant would do nothing. Nothing was added"
        )
    known = sorted(live)
    listed = ", ".join(known[:_SHOWN]) + (
        f" and {len(known) - _SHOWN} more" if known[_SHOWN:] else ""
    )
    raise GrantError(
        f"practice {practice!r} has no key in {settings.keystore}, so no PHI of it can exist: "
        f"is the id mistyped? Practices with keys: {listed or 'none'} (`phi-keys list`). "
        f"Nothing was added. {override}"
    )
