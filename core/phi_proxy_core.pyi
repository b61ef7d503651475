# Type stubs for phi_proxy_core, the compiled core of phi-proxy's JSON response transform.
# See core/README.md for the semantics (when it gives up, what the events mean).

from collections.abc import Callable, Collection, Sequence
from typing import Final, TypeAlias

ABI: Final[int]

Scalar: TypeAlias = str | int | float | bool | None
# A filter condition: normalized member names, the operator (exists, == or !=), a literal.
Condition: TypeAlias = tuple[Sequence[str], str, Scalar]
# A path step: descendant flag, then names, an index or conditions (or none: a wildcard).
Step: TypeAlias = tuple[bool, Collection[str] | None, int | None, Sequence[Condition] | None]
# A mask: "fixed" and its text, "null" or "remove" and the redacted text, or "keep_last"
# followed by keep, before, after, min_length and fallback.
MaskSpec: TypeAlias = tuple[object, ...]
# A stats event: kind (decrypted, masked or kept), field class, practice, record id.
Event: TypeAlias = tuple[str, str, str | None, str | None]

class Keys:
    # Decrypting keys (ACTIVE / DECRYPT_ONLY) with a bounded cache of opened tokens.
    def __init__(self, entries: list[tuple[str, str, bytes]]) -> None: ...
    # (practice, field_class, plaintext); ValueError() whenever it cannot open.
    def open(self, token: str) -> tuple[str, str, str]: ...
    def __len__(self) -> int: ...
    # Tokens remembered by the opened-token cache (for metrics).
    @property
    def cached(self) -> int: ...

class Policy:
    # The compiled field policy, as resolved by `FieldPolicy`.
    def __init__(
        self,
        key_classes: dict[str, str],
        practice_names: Collection[str],
        id_names: Sequence[str],
        paths: Sequence[tuple[Sequence[Step], str]],
        masks: dict[str, MaskSpec],
        default_mask: MaskSpec,
        max_depth: int,
        fold_separators: bool,
        normalize: Callable[[str], str],
    ) -> None: ...

class Hints:
    # The no-PHI proof of one policy (FieldPolicy.may_need_transform's byte checks).
    def __init__(
        self,
        needles: list[bytes],
        fold_separators: bool,
        always_inspect: bool,
        revealing_ranges: list[tuple[int, int]],
    ) -> None: ...
    # 1 token prefix (alone), 2 NUL byte, 4 a key may normalize to a selected name.
    def scan(self, body: bytes) -> int: ...
    def may_hold_names(self, body: bytes) -> bool: ...

# The events grouped as TransformStats keeps them: (decrypted, masked, kept) class -> count,
# the practices withheld, the practices shown, and (practice, record id) -> classes shown.
Summary: TypeAlias = tuple[
    dict[str, int],
    dict[str, int],
    dict[str, int],
    list[str],
    list[str],
    dict[tuple[str, str], set[str]],
]

# None: give up (run the Python transform); else (new body or None, events), or with
# grouped=True (new body or None, summary).
def transform_json(
    body: bytes,
    policy: Policy,
    keys: Keys,
    route_practice: str | None,
    facts: Callable[[str], tuple[str, bool] | None],
    allows: Callable[[str, str], bool],
    grouped: bool = False,
) -> tuple[bytes | None, list[Event] | Summary] | None: ...

# proxy/audit/segments.py's check_segment over one segment's bytes (core/src/audit.rs), or None:
# give up, the Python check decides. Accepted: (lines, checkpoints, (seq, prev, continues) of the
# first line or None, last_seq, last_hash, unauth_head, unauth_reset, unauth_tail, signature
# spans, sink spans); spans are flat [start, end, ...] byte offsets into `data`. `sink`:
# (subject, since, until, practice) of the report's filter (proxy/audit/report.py).
def audit_check_segment(
    data: bytes,
    key: bytes | None,
    *,
    check_signatures: bool,
    at_file_start: bool,
    readable: list[int],
    sink: tuple[str | None, str | None, str | None, str | None] | None,
) -> (
    tuple[
        int,
        int,
        tuple[int, str | None, bool] | None,
        int | None,
        str | None,
        int | None,
        bool,
        int | None,
        list[int],
        list[int],
    ]
    | None
): ...
