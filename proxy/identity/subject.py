"""Who is calling: a verified `Subject`, or nobody (`Caller.anonymous`).

A subject is the pair (issuer, `sub`) and nothing else. Email addresses and usernames get reused
when an account is deleted and re-created; `sub` does not (OIDC Core §5.7), so a re-created
account never inherits the grants of the person who held the name before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Caller", "Subject"]

_SEPARATOR = "|"
_MAX_PART = 1024


@dataclass(frozen=True, slots=True)
class Subject:
    """A verified identity: the token issuer and its `sub` claim.

    Written as ``issuer|sub``. Issuers are URLs and never contain ``|``, so the first ``|``
    separates the two parts; `sub` itself may contain ``|``.
    """

    issuer: str
    sub: str

    def __post_init__(self) -> None:
        if not self.issuer or not self.sub:
            raise ValueError("a subject needs a non-empty issuer and a non-empty sub")
        if _SEPARATOR in self.issuer:
            raise ValueError("an issuer must not contain '|'")
        if len(self.issuer) > _MAX_PART or len(self.sub) > _MAX_PART:
            raise ValueError(f"issuer and sub are limited to {_MAX_PART} characters each")
        if not (self.issuer.isprintable() and self.sub.isprintable()):
            raise ValueError("issuer and sub must be printable text")

    def __str__(self) -> str:
        return f"{self.issuer}{_SEPARATOR}{self.sub}"

    @classmethod
    def parse(cls, text: str) -> Subject:
        """Parse ``issuer|sub``; raise ValueError when either part is missing or empty."""
        issuer, sep, sub = text.partition(_SEPARATOR)
        if not sep:
            raise ValueError(
                "a subject is written ISSUER|SUB, e.g. 'https://login.example.org|00u1abc'"
            )
        return cls(issuer, sub)


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity behind one request; `subject` is None for an anonymous caller.

    `token_id` is the token's `jti` claim when present (an identifier, not the token), kept so an
    audit record can point at the credential that was used. `claims` is the verified token's
    payload (read-only), for decisions a claim drives (break-glass); it never takes part in
    equality, hashing or repr.
    """

    subject: Subject | None
    token_id: str | None = None
    claims: Mapping[str, object] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    anonymous: ClassVar[Caller]

    @property
    def is_anonymous(self) -> bool:
        """True when no verified subject is attached to the request."""
        return self.subject is None

    def __repr__(self) -> str:
        if self.subject is None:
            return "Caller(anonymous)"
        return f"Caller(subject={str(self.subject)!r}, token_id={self.token_id!r})"


Caller.anonymous = Caller(None)
