"""The one decision of the proxy: for this caller, does a value show or get masked?

* A token is decided by the practice its key belongs to, from the keyring — never by anything
  in the response — and by the class bound into the token: decrypt iff
  `access.allows(keyring.practice_of(kid), class)`.
* Legacy plaintext in a selected field is kept iff the caller may see that class for the
  record's practice (the nearest enclosing object's practice key, else the route's practice);
  no practice known → masked.
* A token that cannot be opened is masked and counted as an integrity failure (key id and a
  reason code, never the value). Tokens shown to a caller without access are not opened at all
  unless their mask needs the value (last-N), so tampering is detected whenever a token is
  opened, and nothing is ever shown when it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from keys.errors import InvalidToken
from keys.token_format import TOKEN_PREFIX, is_field_class, is_kid
from proxy.transform.stats import TransformStats

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from proxy.transform.masks import Mask
    from proxy.transform.policy import FieldPolicy

__all__ = [
    "UNKNOWN_PRACTICE",
    "AccessPolicy",
    "Decision",
    "RecordPractice",
    "RevealContext",
    "UnknownPractice",
    "decide_plaintext",
    "decide_token",
]

_TOKEN_PARTS: Final = 5


class AccessPolicy(Protocol):
    """Anything that answers the grant question (e.g. `proxy.grants.Access`)."""

    def allows(self, practice: str, field_class: str) -> bool:
        """True if the caller may read `field_class` values of `practice` right now."""
        ...


class UnknownPractice:
    """Marker for a record whose practice is present but unusable (ambiguous, not a string)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown practice>"


#: The record names a practice we cannot use: mask its plaintext, do not fall back to the route.
UNKNOWN_PRACTICE: Final = UnknownPractice()
RecordPractice = str | UnknownPractice | None


@dataclass(frozen=True, slots=True)
class RevealContext:
    """Everything one response transform needs; build one per request."""

    policy: FieldPolicy
    keyring: Keyring
    access: AccessPolicy
    route_practice: str | None = None
    stats: TransformStats = field(default_factory=TransformStats)


@dataclass(frozen=True, slots=True)
class Decision:
    """Show `plaintext` (when `mask` is None), or `mask`, rendered from `mask_value` if needed."""

    plaintext: str
    mask: Mask | None
    mask_value: str | None = None

    def for_json(self) -> str | None:
        """The JSON value to write."""
        if self.mask is None:
            return self.plaintext
        return self.mask.for_json(self.mask_value)

    def for_text(self) -> str:
        """The text to write inside a string, a key or a text body."""
        if self.mask is None:
            return self.plaintext
        return self.mask.for_text(self.mask_value)


def _integrity(
    ctx: RevealContext, token: str, kid: str | None, field_class: str | None
) -> Decision:
    ctx.stats.integrity(kid, ctx.keyring.diagnose(token))
    if field_class is None:
        return Decision("", ctx.policy.default_mask)
    ctx.stats.masked[field_class] += 1
    return Decision("", ctx.policy.mask_for(field_class))


def decide_token(  # noqa: PLR0911 - one exit per outcome reads best here
    ctx: RevealContext, token: str, record_id: str | None
) -> Decision:
    """Decrypt-or-mask one token (a whole string that starts with the token prefix)."""
    parts = token.split(".", 4)
    if len(parts) != _TOKEN_PARTS or not is_kid(parts[2]) or not is_field_class(parts[3]):
        return _integrity(ctx, token, None, None)
    kid, field_class = parts[2], parts[3]
    practice = ctx.keyring.practice_of(kid)
    if practice is None:
        return _integrity(ctx, token, kid, field_class)
    mask = ctx.policy.mask_for(field_class)
    allowed = ctx.access.allows(practice, field_class)
    if not allowed and not mask.needs_value:
        ctx.stats.masked[field_class] += 1
        return Decision("", mask)
    try:
        opened = ctx.keyring.open(token)
    except InvalidToken:
        return _integrity(ctx, token, kid, field_class)
    if opened.practice != practice or opened.field_class != field_class:  # pragma: no cover
        ctx.stats.integrity(kid, "header-mismatch")
        ctx.stats.masked[field_class] += 1
        return Decision("", mask)
    if TOKEN_PREFIX in opened.plaintext:
        # A token wrapped inside another practice's ciphertext must not be unwrapped by the
        # wrong grant (or leak unprocessed): mask it.
        ctx.stats.integrity(kid, "nested-token")
        ctx.stats.masked[field_class] += 1
        return Decision("", mask)
    if allowed:
        ctx.stats.decrypted[field_class] += 1
        ctx.stats.disclosed(practice, record_id)
        return Decision(opened.plaintext, None)
    ctx.stats.masked[field_class] += 1
    return Decision("", mask, opened.plaintext)


def decide_plaintext(
    ctx: RevealContext,
    field_class: str,
    value_text: str,
    record_practice: RecordPractice,
    record_id: str | None,
) -> Decision:
    """Keep-or-mask one legacy plaintext value of a selected field.

    `value_text` is the value as text (only used to render a last-N mask).
    """
    practice = ctx.route_practice if record_practice is None else record_practice
    if isinstance(practice, str) and ctx.access.allows(practice, field_class):
        ctx.stats.plaintext_kept[field_class] += 1
        ctx.stats.disclosed(practice, record_id)
        return Decision(value_text, None)
    ctx.stats.masked[field_class] += 1
    return Decision("", ctx.policy.mask_for(field_class), value_text)
