"""The SCIM bearer secret: read once, kept only as a SHA-256 digest, compared in constant time.

Whoever holds this secret can create grants for every mapped group and offboard anyone, so a file
that others can read is refused, a short secret is refused, and the plaintext is dropped as soon
as its digest exists.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Final

from keys.errors import PhiProxyError
from keys.file_modes import loose_mode_problem

if TYPE_CHECKING:
    from proxy.scim.settings import ScimSettings

__all__ = ["MIN_SECRET_LENGTH", "ScimSecret", "ScimSecretError", "load_secret"]

MIN_SECRET_LENGTH: Final = 32
_BEARER: Final = "bearer "


class ScimSecretError(PhiProxyError):
    """The SCIM bearer secret is missing, unreadable, too short, or in a loose file."""


class ScimSecret:
    """The digest of the bearer secret; `matches` checks an Authorization header against it."""

    __slots__ = ("_digest",)

    def __init__(self, secret: str) -> None:
        self._digest = hashlib.sha256(secret.encode()).digest()

    def __repr__(self) -> str:
        return "ScimSecret([secure])"

    def matches(self, authorization: str | None) -> bool:
        """True only for ``Bearer <the secret>``; constant time in the secret's content."""
        if authorization is None or authorization[: len(_BEARER)].lower() != _BEARER:
            return False
        offered = hashlib.sha256(authorization[len(_BEARER) :].strip().encode()).digest()
        return hmac.compare_digest(offered, self._digest)


def load_secret(settings: ScimSettings) -> ScimSecret:
    """Read the secret from scim.secret_file or scim.secret_env (ScimSecretError otherwise)."""
    if settings.secret_env is not None:
        where = f"the environment variable {settings.secret_env} (scim.secret_env)"
        text = os.environ.get(settings.secret_env)
        if text is None:
            raise ScimSecretError(
                f"{where} is not set; the SCIM listener cannot authenticate the IdP. Set it to "
                "the bearer secret configured in the IdP, or use scim.secret_file"
            )
    elif settings.secret_file is not None:
        path = settings.secret_file
        where = f"{path} (scim.secret_file)"
        problem = loose_mode_problem(path, "SCIM bearer secret")
        if problem is not None:
            raise ScimSecretError(
                f"{problem}; the SCIM listener is not started: anyone who can read the secret "
                "can grant themselves access through a mapped group"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScimSecretError(
                f"cannot read {where}: {exc.strerror}; create it with "
                f"`head -c 32 /dev/urandom | base64 > {path}; chmod 600 {path}`"
            ) from None
    else:  # pragma: no cover - ScimSettings requires one when enabled
        raise ScimSecretError("scim is enabled but neither scim.secret_file nor secret_env is set")
    secret = text.strip()
    if len(secret) < MIN_SECRET_LENGTH or not secret.isprintable():
        raise ScimSecretError(
            f"the SCIM bearer secret in {where} is shorter than {MIN_SECRET_LENGTH} printable "
            "characters; generate one with `head -c 32 /dev/urandom | base64`, and paste the "
            "same value into the IdP's SCIM connection"
        )
    return ScimSecret(secret)
