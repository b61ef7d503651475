"""The compiled JSON core, behind exactly the decisions of the pure-Python walk.

`phi_proxy_core.transform_json` does in one native pass what `walk.Walk` + `splice` do in
Python: scan, select (key and path selectors), decide each token and plaintext value for the
caller, open tokens, write the decided values into the original bytes. Python hands it, once
per policy, the compiled tables (`NativeJson.compile`), and per request three things it cannot
know: the route's practice, `facts(header)` (which practice a token header's key belongs to, and
whether this caller may see that class there) and `allows(practice, class)` for legacy
plaintext. It returns the new bytes and the facts for the access line and the audit trail,
grouped as `TransformStats` keeps them (counts per class, practices, classes per record, in
first-seen order), which are added to the request's stats here.

Anything rare or doubtful — JSON any reader could see differently, a token that does not open,
a key holding a token, depth beyond the limit — makes the core give up, and the pure-Python
core decides that body instead, with its exact errors and accounting. Giving up is always
safe; the property tests prove that whenever the compiled core answers, it answers the same
bytes and facts as the pure core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.transform.errors import UnsafeBody
from proxy.transform.masks import FixedMask, KeepLast, NullMask, RemoveMask
from proxy.transform.reveal import header_facts

if TYPE_CHECKING:
    from types import ModuleType

    from proxy.transform.masks import Mask
    from proxy.transform.policy import FieldPolicy
    from proxy.transform.reveal import RevealContext

__all__ = ["NativeJson"]


def _mask_spec(mask: Mask) -> tuple[object, ...]:
    if isinstance(mask, FixedMask):
        return ("fixed", mask.text)
    if isinstance(mask, NullMask):
        return ("null", mask.redacted_text)
    if isinstance(mask, RemoveMask):
        return ("remove", mask.redacted_text)
    assert isinstance(mask, KeepLast)  # noqa: S101 - exhaustive union, for mypy
    return ("keep_last", mask.keep, mask.before, mask.after, mask.min_length, mask.fallback)


class NativeJson:
    """One policy compiled into the native core; `transform` per response body."""

    __slots__ = ("_core", "_module")

    def __init__(self, module: ModuleType, policy: FieldPolicy) -> None:
        """Use `NativeJson.compile`."""
        self._module = module
        tables = policy.tables()
        self._core: Any = module.Policy(
            key_classes=dict(tables.key_classes),
            practice_names=sorted(tables.practice_names),
            id_names=list(tables.id_names),
            paths=[
                (
                    [
                        (
                            step.descendant,
                            None if step.names is None else sorted(step.names),
                            step.index,
                            None
                            if step.conditions is None
                            else [(list(c.members), c.op, c.literal) for c in step.conditions],
                        )
                        for step in path.steps
                    ],
                    field_class,
                )
                for path, field_class in tables.paths
            ],
            masks={name: _mask_spec(policy.mask_for(name)) for name in tables.classes},
            default_mask=_mask_spec(policy.default_mask),
            max_depth=policy.max_depth,
            fold_separators=tables.fold_separators,
            normalize=tables.normalize,
            root_filters=[
                None
                if path.root is None
                else [(list(c.members), c.op, c.literal) for c in path.root]
                for path, _ in tables.paths
            ],
        )

    @classmethod
    def compile(cls, module: ModuleType | None, policy: FieldPolicy) -> NativeJson | None:
        """The policy in the compiled core, or None when the pure-Python core runs."""
        return None if module is None else cls(module, policy)

    def transform(self, body: bytes, ctx: RevealContext) -> bytes | None:
        """Decide `body` for the caller in `ctx`; None if the pure-Python core must do it."""
        keys = ctx.keyring.native_keys
        if keys is None:
            return None

        def facts(header: str) -> tuple[str, bool] | None:
            found = header_facts(ctx, header)
            return None if found is None else (found[0], found[2])

        try:
            result = self._module.transform_json(
                body, self._core, keys, ctx.route_practice, facts, ctx.access.allows, grouped=True
            )
        except BaseException as exc:
            # A Rust panic arrives as pyo3's PanicException, a BaseException: a bug in the
            # core, never a decision. The body is withheld (502), as for any unsafe body.
            if type(exc).__name__ == "PanicException":
                raise UnsafeBody("core_failure") from None
            raise
        if result is None:
            return None
        out, summary = result
        ctx.stats.count_core_summary(summary)
        return body if out is None else bytes(out)
