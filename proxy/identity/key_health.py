"""Can the proxy verify tokens? The JWKS checks behind `check-config`, `/readyz` and reloads.

A JWKS file that is missing, unreadable or not a JWKS used to pass `check-config` and `/readyz`,
and then every token got 401. Now `check-config` reads each JWKS file as the proxy will and
fails naming it; `/readyz` reports `jwks: false` with the reason while keys cannot be loaded;
a reload hands the previous keys to the new authenticator, so a file that vanishes does not
drop them at once (they still stop once too old: proxy.identity.jwks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.identity.jwks import MAX_JWKS_BYTES, failure_text, parse_jwks, usable
from proxy.identity.weak_keys import jwk_weakness

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.identity.authenticator import Authenticator
    from proxy.identity.settings import IdentitySettings

__all__ = ["inherit_keys", "jwks_file_problems", "key_problems"]

_FIX = (
    "every bearer token would get 401. Put the identity provider's public keys there (the JSON "
    'document with a "keys" list it publishes, e.g. at its jwks_uri) or point identity.jwks_file '
    "at that file, then run `phi-proxy check-config` again"
)


def jwks_file_problems(settings: IdentitySettings) -> list[str]:
    """Each configured JWKS file that the proxy could not verify tokens with, and why.

    `jwks_url`s are not fetched here: the proxy loads them at start and `/readyz` reports them.
    """
    problems = []
    for label, source in (
        ("identity.jwks_file", settings),
        *(
            (f"identity.other_providers[{i}].jwks_file", other)
            for i, other in enumerate(settings.other_providers)
        ),
    ):
        if source.jwks_file is not None:
            problem = _file_problem(source.jwks_file, settings)
            if problem is not None:
                problems.append(f"{label} {source.jwks_file}: {problem}; {_FIX}")
    return problems


def _file_problem(path: Path, settings: IdentitySettings) -> str | None:
    try:
        with path.open("rb") as handle:
            entries = parse_jwks(handle.read(MAX_JWKS_BYTES + 1))
    except (OSError, ValueError) as exc:
        return failure_text(exc)
    fitting = [e for e in entries if any(usable(e, alg) for alg in settings.algorithms)]
    if not any(jwk_weakness(e) is None for e in fitting):
        return (
            f"it holds {len(entries)} key(s), none of which can verify identity.algorithms "
            f"({', '.join(settings.algorithms)})"
            + (" except keys refused as weak" if fitting else "")
        )
    return None


async def key_problems(authenticator: Authenticator, *, now: float) -> list[str]:
    """Why some provider's tokens cannot be verified as they should (empty: all is well)."""
    problems = []
    for cache in authenticator.jwks_caches():
        problem = await cache.check(now)
        if problem is not None:
            problems.append(problem)
    return problems


def inherit_keys(new: Authenticator, old: Authenticator) -> None:
    """Give each of `new`'s key caches the last good keys `old` held from the same source."""
    previous = {cache.source: cache for cache in old.jwks_caches()}
    for cache in new.jwks_caches():
        if cache.source in previous:
            cache.inherit(previous[cache.source])
