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

`reveal_token` is the hot-path form of `decide_token(...).for_json()/.for_text()`: the same
decision, but the per-header part (kid → practice, grant, mask) is computed once per request
and kept in the context, and no Decision object is built. Anything unusual (a header that does
not parse, an unknown kid, a token that fails to open) takes the `decide_token` path, so
integrity accounting has one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from keys.errors import InvalidToken
from keys.token_format import TOKEN_PREFIX, TOKEN_VERSION, is_field_class, is_kid
from proxy.transform.stats import TransformStats

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from proxy.transform.masks import Mask
    from proxy.transform.policy import FieldPolicy
    from proxy.transform.splice import Removed

__all__ = [
    "UNKNOWN_PRACTICE",
    "AccessPolicy",
    "Decision",
    "RecordPractice",
    "RevealContext",
    "UnknownPractice",
    "allow_plaintext",
    "decide_plaintext",
    "decide_token",
    "header_facts",
    "reveal_text",
    "reveal_token",
]

_TOKEN_PARTS: Final = 5
_HEADER_PARTS: Final = 4


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
    #: Per-request memo: token header → (practice, field_class, allowed, mask). Valid for one
    #: request only (the access decision, keyring and policy are fixed for its lifetime).
    headers: dict[str, tuple[str, str, bool, Mask]] = field(
        default_factory=dict, repr=False, compare=False
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """Show `plaintext` (when `mask` is None), or `mask`, rendered from `mask_value` if needed."""

    plaintext: str
    mask: Mask | None
    mask_value: str | None = None

    def for_json(self) -> str | Removed | None:
        """The JSON value to write (`REMOVED`: leave the member out)."""
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
        ctx.stats.withheld.add(practice)
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
        ctx.stats.disclosed(practice, record_id, field_class)
        return Decision(opened.plaintext, None)
    ctx.stats.masked[field_class] += 1
    ctx.stats.withheld.add(practice)
    return Decision("", mask, opened.plaintext)


def allow_plaintext(
    ctx: RevealContext, field_class: str, record_practice: RecordPractice, record_id: str | None
) -> bool:
    """True (counted and audited as kept plaintext) if plaintext of `field_class` may be shown.

    The rule for legacy plaintext: the record's practice, else the route's; an unknown practice
    (none, ambiguous, not a string) never allows. The walk asks it for the keys of a non-empty
    selected object too (`{"HIV positive": null}`): keys shown are plaintext shown, audited even
    when every value below them is null, empty, or a token the caller may not open.
    """
    practice = ctx.route_practice if record_practice is None else record_practice
    if isinstance(practice, str) and ctx.access.allows(practice, field_class):
        ctx.stats.plaintext_kept[field_class] += 1
        ctx.stats.disclosed(practice, record_id, field_class)
        return True
    return False


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
    if allow_plaintext(ctx, field_class, record_practice, record_id):
        return Decision(value_text, None)
    ctx.stats.masked[field_class] += 1
    return Decision("", ctx.policy.mask_for(field_class), value_text)


def header_facts(ctx: RevealContext, head: str) -> tuple[str, str, bool, Mask] | None:
    """(practice, class, allowed, mask) for a token header; None if it needs the slow path."""
    parts = head.split(".")
    if len(parts) != _HEADER_PARTS or parts[0] != TOKEN_VERSION:
        return None
    kid, field_class = parts[2], parts[3]
    if not is_kid(kid) or not is_field_class(field_class):
        return None
    practice = ctx.keyring.practice_of(kid)
    if practice is None:
        return None
    facts = (
        practice,
        field_class,
        ctx.access.allows(practice, field_class),
        ctx.policy.mask_for(field_class),
    )
    ctx.headers[head] = facts
    return facts


def reveal_token(
    ctx: RevealContext, token: str, record_id: str | None, *, as_json: bool
) -> str | Removed | None:
    """`decide_token(ctx, token, record_id)` rendered for JSON (`as_json`) or text, fast.

    Keep the accounting (counters, `disclosed`, `withheld`) identical to `decide_token`'s;
    tests/transform/test_reveal_fast.py proves the two agree on outputs and stats.

    The grant decision comes first (from the per-request header memo); only then, and only if
    the value is to be shown or its mask needs it, is the token opened (the keyring may answer
    from its cache of opened tokens).
    """
    cut = token.rfind(".")
    facts = ctx.headers.get(token[:cut]) if cut > 0 else None
    if facts is None:
        facts = header_facts(ctx, token[:cut]) if cut > 0 else None
        if facts is None:
            decision = decide_token(ctx, token, record_id)
            return decision.for_json() if as_json else decision.for_text()
    practice, field_class, allowed, mask = facts
    stats = ctx.stats
    if not allowed and not mask.needs_value:
        stats.masked[field_class] += 1
        stats.withheld.add(practice)
        return mask.for_json(None) if as_json else mask.for_text(None)
    try:
        opened = ctx.keyring.open_fast(token)
    except InvalidToken:
        decision = decide_token(ctx, token, record_id)  # accounts the integrity failure
        return decision.for_json() if as_json else decision.for_text()
    plaintext = opened[2]
    if opened[0] != practice or opened[1] != field_class or TOKEN_PREFIX in plaintext:
        decision = decide_token(ctx, token, record_id)  # header-mismatch / nested-token
        return decision.for_json() if as_json else decision.for_text()
    if allowed:
        stats.decrypted[field_class] += 1
        stats.disclosed(practice, record_id, field_class)
        return plaintext
    stats.masked[field_class] += 1
    stats.withheld.add(practice)
    return mask.for_json(plaintext) if as_json else mask.for_text(plaintext)


def reveal_text(ctx: RevealContext, token: str, record_id: str | None) -> str:
    """`reveal_token` for text (inside a string, a key or a text body): always a string."""
    out = reveal_token(ctx, token, record_id, as_json=False)
    return out if isinstance(out, str) else ctx.policy.redacted_text  # for_text: always str
