"""The compiled core (`phi_proxy_core`) must reach the pure-Python walk's decisions, or give up.

For every generated body on which the native core does not give up:

* its output, parsed, equals the document the Python `_walk_document` produces;
* its output is the original body with exactly the changed values replaced (each written as
  `orjson.dumps` writes it): every other byte comes back as it came;
* its events, applied to a fresh `TransformStats`, equal the Python walk's stats.

Plus: `Keys.open` agrees with `Keyring.open_fast`, each documented give-up case gives up, and
the common shapes (the bench pages, a FHIR bundle) do not. The glue at the top of this module
is a test-only reference for the production glue (which lives in `proxy/`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keys._aead import DEK_BYTES
from keys.errors import InvalidToken
from keys.keyring import KeyInfo, Keyring, KeyState
from keys.token_format import is_field_class, is_kid
from proxy.demo.workspace import DemoPorts, demo_config
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.errors import UnsafeBody
from proxy.transform.jsonpath import compile_path
from proxy.transform.jsonsafe import parse_json
from proxy.transform.masks import FixedMask, KeepLast, NullMask, RemoveMask
from proxy.transform.response import _walk_document
from proxy.transform.settings import FieldSettings
from proxy.transform.testing import TEST_FIELDS

#: Multiplies every generated-example count (e.g. PHI_NATIVE_EXAMPLES=20 for a deep run).
SCALE = int(os.environ.get("PHI_NATIVE_EXAMPLES", "1"))

native = pytest.importorskip(
    "phi_proxy_core",
    reason="phi_proxy_core is not built/installed (pip install ./core or maturin develop)",
)

# ---------------------------------------------------------------------------------------------
# Reference glue (test-only): FieldPolicy / Keyring / access → the native API.
# ---------------------------------------------------------------------------------------------


def _mask_tuple(mask: object) -> tuple:
    if isinstance(mask, FixedMask):
        return ("fixed", mask.text)
    if isinstance(mask, NullMask):
        return ("null", mask.redacted_text)
    if isinstance(mask, RemoveMask):
        return ("remove", mask.redacted_text)
    assert isinstance(mask, KeepLast)
    return ("keep_last", mask.keep, mask.before, mask.after, mask.min_length, mask.fallback)


def _step_tuple(step) -> tuple:
    conditions = None
    if step.conditions is not None:
        conditions = [(list(c.members), c.op, c.literal) for c in step.conditions]
    # Names go as the frozenset the compiled path holds (any collection of str is accepted).
    return (step.descendant, step.names, step.index, conditions)


def native_policy(policy: FieldPolicy):
    """A native.Policy from a compiled FieldPolicy (its resolved tables)."""
    settings = policy.settings
    paths = []
    for selector in settings.selectors:
        if selector.path is not None:
            compiled = compile_path(selector.path, settings.normalize)
            paths.append(([_step_tuple(s) for s in compiled.steps], selector.field_class))
    id_names = sorted(policy._id_names, key=policy._id_names.__getitem__)
    return native.Policy(
        dict(policy._key_classes),
        policy._practice_names,  # a frozenset: any collection of str is accepted
        id_names,
        paths,
        {name: _mask_tuple(mask) for name, mask in policy._masks.items()},
        _mask_tuple(policy.default_mask),
        settings.max_depth,
        settings.fold_separators,
        settings.normalize,
    )


def facts_for(keyring: Keyring, access):
    """The `facts` callback: `_header_facts` without the mask (the native side has it)."""

    def facts(head: str):
        parts = head.split(".")
        if len(parts) != 4 or parts[0] != "phi1":
            return None
        kid, field_class = parts[2], parts[3]
        if not is_kid(kid) or not is_field_class(field_class):
            return None
        practice = keyring.practice_of(kid)
        if practice is None:
            return None
        return practice, access.allows(practice, field_class)

    return facts


def apply_events(events) -> TransformStats:
    stats = TransformStats()
    for kind, field_class, practice, record_id in events:
        if kind == "decrypted":
            stats.decrypted[field_class] += 1
            stats.disclosed(practice, record_id, field_class)
        elif kind == "kept":
            stats.plaintext_kept[field_class] += 1
            stats.disclosed(practice, record_id, field_class)
        else:
            assert kind == "masked"
            assert record_id is None
            stats.masked[field_class] += 1
            if practice is not None:
                stats.withheld.add(practice)
    return stats


@dataclass(frozen=True)
class Grants:
    pairs: frozenset[tuple[str, str]] = frozenset()

    def allows(self, practice: str, field_class: str) -> bool:
        return (practice, field_class) in self.pairs


# ---------------------------------------------------------------------------------------------
# A world: keys (active, decrypt-only, retired), policies, a pool of tokens.
# ---------------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = ("ssn", "insurance_id", "history", "dob", "diagnosis")
PRACTICES = ("A", "B", "C")


def _material():
    """(KeyInfo, dek) for A (active + decrypt-only), B (active), C (active + retired)."""
    rows = []
    for practice, version, state in (
        ("A", 1, KeyState.DECRYPT_ONLY),
        ("A", 2, KeyState.ACTIVE),
        ("B", 1, KeyState.ACTIVE),
        ("C", 1, KeyState.RETIRED),
        ("C", 2, KeyState.ACTIVE),
    ):
        info = KeyInfo(secrets.token_hex(8), practice, version, state, NOW)
        rows.append((info, secrets.token_bytes(DEK_BYTES)))
    return rows


MATERIAL = _material()
KEYRING = Keyring.from_material(MATERIAL)


def native_keys(material=MATERIAL):
    return native.Keys(
        [
            (info.kid, info.practice, dek)
            for info, dek in material
            if info.state in (KeyState.ACTIVE, KeyState.DECRYPT_ONLY)
        ]
    )


KEYS = native_keys()

FIELDS = {
    **TEST_FIELDS,
    "selectors": [
        *TEST_FIELDS["selectors"],
        {"class": "history", "path": "$.data[*].notes"},
        {"class": "insurance_id", "path": "$..[?(@.kind=='ins' && @.meta.ok)].v"},
        {"class": "history", "path": "$..wrap[1]"},
        {"class": "insurance_id", "path": "$..[?(@.flag!=true)].alt"},
        {"class": "diagnosis", "path": "$..coding[*].display"},
    ],
    "record": {"practice_keys": ["practice_id", "practice"], "id_keys": ["patient_id", "id"]},
    "max_depth": 16,
}

FIELDS_PLAIN = {
    "classes": {
        "ssn": {"mask": {"keep_last": 2, "template": "<{last}>", "min_length": 3}},
        "history": {"mask": {"text": "[h]"}},
    },
    "selectors": [
        {"class": "ssn", "keys": ["SSN", "member_id"]},
        {"class": "history", "keys": ["history", "notes"]},
        {"class": "ssn", "path": "$..[?(@.system)].value"},
    ],
    "record": {"practice_keys": ["practice_id"], "id_keys": ["id"]},
    "fold_separators": False,
    "redacted_text": "<gone>",
    "max_depth": 12,
}

POLICIES = {
    name: FieldPolicy.compile(FieldSettings.model_validate(fields))
    for name, fields in (("main", FIELDS), ("plain", FIELDS_PLAIN))
}
NATIVE_POLICIES = {name: native_policy(policy) for name, policy in POLICIES.items()}

VALUES = (
    "123-45-6789",
    "INS-1234567890",
    'history with "quotes", a \\ backslash,\nnewline\tand\x01control',
    "12",
    "Zoë 123456789",
    "héllo wörld ✓ 😀",
    "",
)


def _seal(practice: str, field_class: str, value: str, *, deterministic: bool) -> str:
    return KEYRING.encrypt(practice, field_class, value, deterministic=deterministic)


def _retired_token(value: str, field_class: str = "ssn") -> str:
    """A token of C's retired key (known to facts, unopenable)."""
    info, dek = next((i, d) for i, d in MATERIAL if i.state is KeyState.RETIRED)
    ring = Keyring.from_material([(KeyInfo(info.kid, "C", 1, KeyState.ACTIVE, NOW), dek)])
    return ring.encrypt("C", field_class, value)


def _tamper(token: str) -> str:
    last = token[-2]
    return token[:-2] + ("A" if last != "A" else "B") + token[-1]


GOOD_TOKENS = [
    _seal(p, c, v, deterministic=d)
    for p in PRACTICES
    for c in CLASSES
    for v in VALUES[:4] + VALUES[4:5]
    for d in (False, True)
]
# Tokens under A's decrypt-only key.
_OLD = next((i, d) for i, d in MATERIAL if i.state is KeyState.DECRYPT_ONLY)
_OLD_RING = Keyring.from_material([(KeyInfo(_OLD[0].kid, "A", 1, KeyState.ACTIVE, NOW), _OLD[1])])
GOOD_TOKENS += [_OLD_RING.encrypt("A", "ssn", "987-65-4321"), _OLD_RING.encrypt("A", "dob", "x")]
# One-letter classes (the shortest header), unknown to the policies.
GOOD_TOKENS += [_seal("B", "q", "1-letter class", deterministic=d) for d in (False, True)]
BAD_TOKENS = [
    _tamper(GOOD_TOKENS[0]),
    _retired_token("111-22-3333"),
    "phi1.r.0123456789abcdef.ssn." + "A" * 40,  # unknown kid
    "phi1.garbage",
    _seal("A", "ssn", "phi1.inner", deterministic=False),  # nested
]
#: Test ids for BAD_TOKENS (the tokens are random; pytest-xdist needs the same names everywhere).
BAD_TOKEN_IDS = ["tampered", "retired", "unknown-kid", "garbage", "nested"]

# ---------------------------------------------------------------------------------------------
# Running both sides
# ---------------------------------------------------------------------------------------------


def run_python(policy: FieldPolicy, body: bytes, access, route):
    ctx = RevealContext(policy, KEYRING, access, route, TransformStats())
    try:
        out = _walk_document(parse_json(body), body, ctx)
    except UnsafeBody as exc:
        return None, exc.reason if hasattr(exc, "reason") else str(exc), ctx.stats
    return out, None, ctx.stats


def run_native(name: str, body: bytes, access, route, *, keys=None, facts=None):
    return native.transform_json(
        body,
        NATIVE_POLICIES[name],
        KEYS if keys is None else keys,
        route,
        facts or facts_for(KEYRING, access),
        access.allows,
    )


# A minimal span indexer for the byte-exactness check: every value's [start, end) in `body`.


def _ws(b: bytes, i: int) -> int:
    while i < len(b) and b[i] in b" \t\r\n":
        i += 1
    return i


def _string_end(b: bytes, i: int) -> int:
    i += 1
    while b[i] != 0x22:
        i += 2 if b[i] == 0x5C else 1
    return i + 1


def index_spans(b: bytes, i: int = 0):  # noqa: C901 - one branch per JSON value kind
    """(start, end, children) where children is a dict (objects), a list (arrays) or None."""
    i = _ws(b, i)
    start = i
    c = b[i]
    if c == 0x7B:  # {
        children = {}
        i = _ws(b, i + 1)
        if b[i] == 0x7D:
            return start, i + 1, children
        while True:
            key_end = _string_end(b, i)
            key = json.loads(b[i:key_end])
            i = _ws(b, key_end) + 1  # the colon
            node = index_spans(b, i)
            children[key] = node
            i = _ws(b, node[1])
            if b[i] == 0x7D:
                return start, i + 1, children
            i = _ws(b, i + 1)
    if c == 0x5B:  # [
        items = []
        i = _ws(b, i + 1)
        if b[i] == 0x5D:
            return start, i + 1, items
        while True:
            node = index_spans(b, i)
            items.append(node)
            i = _ws(b, node[1])
            if b[i] == 0x5D:
                return start, i + 1, items
            i += 1
    if c == 0x22:
        return start, _string_end(b, i), None
    end = i
    while end < len(b) and b[end] not in b" \t\r\n,]}":
        end += 1
    return start, end, None


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def expected_splice(body: bytes, before: object, after: object) -> bytes:
    """`body` with each value that differs between `before` and `after` rewritten."""
    edits: list[tuple[int, int, bytes]] = []

    def walk(node, old, new) -> None:
        start, end, children = node
        if isinstance(old, dict) and isinstance(new, dict):
            assert old.keys() == new.keys()
            for key, child in children.items():
                walk(child, old[key], new[key])
        elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            for child, o, n in zip(children, old, new, strict=True):
                walk(child, o, n)
        elif not _same(old, new):
            edits.append((start, end, orjson.dumps(new)))

    walk(index_spans(body), before, after)
    out = bytearray()
    at = 0
    for start, end, text in edits:
        out += body[at:start] + text
        at = end
    out += body[at:]
    return bytes(out)


def check_parity(name: str, body: bytes, access, route) -> bool:
    """Assert parity for one body; False if the native core gave up."""
    result = run_native(name, body, access, route)
    if result is None:
        return False
    out, events = result
    py_out, py_error, py_stats = run_python(POLICIES[name], body, access, route)
    assert py_error is None, f"native decided a body Python refuses ({py_error})"
    assert py_stats.integrity_failures == 0
    assert apply_events(events) == py_stats
    native_out = body if out is None else out
    assert native_out == py_out
    before, after = orjson.loads(body), orjson.loads(py_out)
    if _same_shape(before, after):
        assert native_out == expected_splice(body, before, after)
    # else members were removed (`mask: remove`); how they are cut out is pinned against an
    # independent renderer in tests/transform/test_byte_fidelity.py.
    return True


def _same_shape(old: object, new: object) -> bool:
    """False if `new` lacks a member or element of `old` (a removal) anywhere below."""
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_same_shape(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(map(_same_shape, old, new))
    return True  # a value, or a selected object replaced by its mask


# ---------------------------------------------------------------------------------------------
# Generated documents
# ---------------------------------------------------------------------------------------------

KEYS_VOCAB = (
    "ssn",
    "SSN",
    "Social-Security_Number",
    "\uff53\uff53\uff4e",  # full-width "ssn"
    "member_id",
    "history",
    "notes",
    "practice_id",
    "practice",
    "patient_id",
    "id",
    "ID",
    "identifier",
    "system",
    "value",
    "data",
    "kind",
    "meta",
    "ok",
    "v",
    "wrap",
    "flag",
    "alt",
    "name",
    "\u017fsn",  # long s: NFKC-casefolds to "ssn"
    "é",
    "diagnosis",
    "reasonCode",
    "coding",
    "display",
)

PLAINS = ("123-45-6789", "John", "INS-77", "Zoë", "", "http://hl7.org/fhir/sid/us-ssn", "ins")

tokens = st.sampled_from(GOOD_TOKENS)
texts_with_tokens = st.builds(
    lambda a, t, b: f"{a}{t}{b}",
    st.sampled_from(["", "see ", "x:", "é "]),
    tokens,
    st.sampled_from(["", " end", ".", ", ok"]),
)
scalars = st.one_of(
    st.sampled_from(PLAINS),
    tokens,
    texts_with_tokens,
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0.5, -1.25e10, 8e1]),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)
fhir_identifier = st.fixed_dictionaries(
    {
        "system": st.sampled_from(["http://hl7.org/fhir/sid/us-ssn", "urn:other"]),
        "value": st.one_of(tokens, st.sampled_from(PLAINS)),
    }
)
documents = st.recursive(
    st.one_of(scalars, fhir_identifier),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.sampled_from(KEYS_VOCAB), children, max_size=6),
    ),
    max_leaves=25,
)
grants = st.frozensets(
    st.tuples(st.sampled_from(PRACTICES), st.sampled_from(CLASSES)), max_size=8
).map(Grants)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _escape_letters(match: re.Match[bytes]) -> bytes:
    """A JSON string with every s/S/p spelled as an escape (same value, other bytes)."""
    text = match.group()
    return text.replace(b"s", b"\\u0073").replace(b"S", b"\\u0053").replace(b"p", b"\\u0070")


def _dump(doc: object, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(doc)
    if style == 1:
        return json.dumps(doc, ensure_ascii=True).encode()
    if style == 2:
        return json.dumps(doc, ensure_ascii=False, indent=2).encode()
    return _JSON_STRING.sub(_escape_letters, orjson.dumps(doc))


@settings(
    max_examples=600 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    doc=documents,
    style=st.integers(0, 3),
    access=grants,
    route=st.sampled_from([None, "A", "B"]),
    name=st.sampled_from(sorted(POLICIES)),
)
def test_parity_on_generated_documents(doc, style, access, route, name):
    body = _dump(doc, style)
    decided = check_parity(name, body, access, route)
    event("native decided" if decided else "native gave up")


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {
                "id": st.one_of(st.text(max_size=4), st.integers(-5, 2**64 - 1), tokens),
                "practice_id": st.sampled_from(["A", "B", "C", 7]),
                "ssn": st.one_of(tokens, st.sampled_from(PLAINS), st.integers(0, 10**9)),
                "member_id": st.one_of(tokens, st.sampled_from(PLAINS)),
                "history": st.one_of(
                    tokens,
                    st.sampled_from(PLAINS),
                    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(PLAINS)),
                ),
                "identifier": st.lists(fhir_identifier, max_size=3),
            },
            optional={"patient_id": st.sampled_from(["p1", "p2"]), "notes": tokens},
        ),
        max_size=6,
    ),
    access=grants,
    route=st.sampled_from([None, "A"]),
    name=st.sampled_from(sorted(POLICIES)),
)
def test_parity_on_record_listings(records, access, route, name):
    body = orjson.dumps({"count": len(records), "data": records})
    decided = check_parity(name, body, access, route)
    event("native decided" if decided else "native gave up")


# ---------------------------------------------------------------------------------------------
# Keys.open agrees with Keyring.open_fast
# ---------------------------------------------------------------------------------------------


def _python_open(token: str):
    try:
        return KEYRING.open_fast(token)
    except InvalidToken:
        return None


def _native_open(token: str):
    try:
        return KEYS.open(token)
    except ValueError as exc:
        detail = exc.args
    assert detail == ()  # no detail about why
    return None


def test_open_agrees_on_valid_tokens():
    for token in GOOD_TOKENS:
        assert _native_open(token) == _python_open(token) is not None


@given(token=tokens, position=st.integers(0, 400), replacement=st.sampled_from("A_-.=+/é\x00a0"))
@settings(max_examples=400 * SCALE, deadline=None)
def test_open_agrees_on_tampered_tokens(token, position, replacement):
    position %= len(token)
    tampered = token[:position] + replacement + token[position + 1 :]
    assert _native_open(tampered) == _python_open(tampered)


@given(text=st.text(alphabet="phi1.rd0123456789abcdefsn_ABC-=", max_size=80))
@settings(max_examples=300 * SCALE, deadline=None)
def test_open_agrees_on_malformed_text(text):
    assert _native_open(text) == _python_open(text)


@pytest.mark.parametrize("token", BAD_TOKENS, ids=BAD_TOKEN_IDS)
def test_open_agrees_on_bad_tokens(token):
    assert _native_open(token) == _python_open(token)


def test_open_agrees_on_truncations_and_padding():
    token = GOOD_TOKENS[1]
    for cut in range(len(token) - 40, len(token) + 1):
        for suffix in ("", "=", "==", "A", "AA", " "):
            candidate = token[:cut] + suffix
            assert _native_open(candidate) == _python_open(candidate)


def test_open_rejects_non_strings():
    with pytest.raises(ValueError, match=r"^$"):
        KEYS.open(b"phi1.")  # type: ignore[arg-type]


def test_keys_repr_shows_no_material():
    info, dek = MATERIAL[0]
    text = repr(KEYS)
    assert dek.hex() not in text
    assert info.kid not in text


# ---------------------------------------------------------------------------------------------
# Give-up cases: one each
# ---------------------------------------------------------------------------------------------

GRANT_ALL = Grants(frozenset((p, c) for p in PRACTICES for c in CLASSES))
NOBODY = Grants()
TOKEN_A = _seal("A", "ssn", "123-45-6789", deterministic=False)


def gives_up(body: bytes, access=GRANT_ALL, route=None, name="main", **kw) -> bool:
    return run_native(name, body, access, route, **kw) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,}',
        b'{"a":"\xff"}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\udc00x"}',
        b'{"a":"x\x01"}',
        b'{"a":1} x',
        b"\xef\xbb\xbf{}",
        b"",
        b'{"a":NaN}',
        b'{"a":1e400}',
        b"[01]",
    ],
)
def test_gives_up_on_invalid_json(body):
    assert gives_up(body)


def test_gives_up_on_duplicate_keys():
    assert gives_up(b'{"name":1,"name":2}')
    assert gives_up(b'{"name":1,"n\\u0061me":2}')
    assert gives_up(b'{"":1,"b":2,"":3}')  # empty names are names too (found by the fuzz test)
    assert not gives_up(b'{"name":1,"Name":2}')  # distinct keys, same normalized name


def test_gives_up_beyond_max_depth():
    deep = b"[" * 17 + b"]" * 17
    assert gives_up(deep)
    assert not gives_up(b"[" * 16 + b"]" * 16)
    # Inside an object that would be masked as a whole.
    masked = b'{"history":{"a":' + b"[" * 16 + b"]" * 16 + b"}}"
    assert gives_up(masked, access=NOBODY)


def test_gives_up_on_token_in_key():
    assert gives_up(orjson.dumps({TOKEN_A: 1}))
    assert gives_up(b'{"\\u0070hi1.x":1}')


@pytest.mark.parametrize("token", BAD_TOKENS, ids=BAD_TOKEN_IDS)
def test_gives_up_on_bad_tokens(token):
    assert gives_up(orjson.dumps({"ssn": token}))
    assert gives_up(orjson.dumps({"note": token}))


def test_gives_up_on_header_practice_mismatch():
    def lying_facts(head):
        return ("B", True)

    assert gives_up(orjson.dumps({"ssn": TOKEN_A}), facts=lying_facts)


def test_gives_up_when_prefix_survives_substitution():
    assert gives_up(b'{"note":"see phi1.not-a-token"}')
    # A decrypted value next to text (no prefix results), and a prefix glued to a token.
    token = _seal("A", "dob", "1.x", deterministic=False)
    assert not gives_up(orjson.dumps({"note": "phi " + token}), access=GRANT_ALL)
    assert gives_up(orjson.dumps({"note": "phi1." + token}))


def test_gives_up_on_keep_last_over_non_ascii():
    assert gives_up(b'{"ssn":"Zo\xc3\xab 123456789"}', access=NOBODY)
    token = _seal("A", "ssn", "Zoë 123456789", deterministic=True)
    assert gives_up(orjson.dumps({"ssn": token}), access=NOBODY)
    assert not gives_up(orjson.dumps({"ssn": token}), access=GRANT_ALL)


def test_gives_up_on_numeric_filter_comparisons():
    body = orjson.dumps({"identifier": [{"system": 5, "value": "123-45-6789"}]})
    assert gives_up(body, access=NOBODY)
    numeric = FieldPolicy.compile(
        FieldSettings.model_validate(
            {
                "classes": {"ssn": {}},
                "selectors": [{"class": "ssn", "path": "$..[?(@.n==1)].value"}],
            }
        )
    )
    NATIVE_POLICIES["numeric"] = native_policy(numeric)
    try:
        assert gives_up(b'{"a":{"n":"x","value":"v"}}', name="numeric")
    finally:
        del NATIVE_POLICIES["numeric"]


def test_gives_up_on_integers_beyond_64_bits():
    assert gives_up(b'{"id":18446744073709551616,"ssn":"1"}')
    assert gives_up(b'{"id":-9223372036854775809}')
    assert not gives_up(b'{"id":18446744073709551615,"ssn":"123-45-6789"}')


def test_gives_up_on_float_under_keep_last():
    assert gives_up(b'{"ssn":8E+1}', access=NOBODY)
    assert not gives_up(b'{"member_id":8E+1}', access=NOBODY)


# ---------------------------------------------------------------------------------------------
# Common shapes do not give up (and agree)
# ---------------------------------------------------------------------------------------------


def _bench_page(count: int, practice: str = "A") -> bytes:
    records = [
        {
            "id": f"p{index:07d}",
            "practice_id": practice,
            "name": f"Patient {index}",
            "dob": "1970-01-01",
            "appointments": index % 40,
            "active": True,
            "ssn": KEYRING.encrypt(practice, "ssn", f"123-45-{index:04d}", deterministic=True),
            "insurance_id": KEYRING.encrypt(practice, "insurance_id", f"INS-{index}"),
            "history": KEYRING.encrypt(practice, "history", "hypertension " * 15),
        }
        for index in range(count)
    ]
    return orjson.dumps({"count": count, "patients": records})


def _fhir_bundle(count: int) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:{index}",
            "resource": {
                "resourceType": "Patient",
                "id": f"pat-{index}",
                "practice_id": "A",
                "identifier": [
                    {
                        "system": "http://hl7.org/fhir/sid/us-ssn",
                        "value": KEYRING.encrypt("A", "ssn", f"123-45-{index:04d}"),
                    },
                    {"system": "urn:mrn", "value": f"MRN{index}"},
                ],
                "name": [{"family": "Doe", "given": ["Jane", "Q"]}],
                "telecom": [{"system": "phone", "value": "555-0100"}],
            },
        }
        for index in range(count)
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries})


@pytest.mark.parametrize("count", [0, 1, 20])
@pytest.mark.parametrize("access", [GRANT_ALL, NOBODY, Grants(frozenset({("A", "ssn")}))])
def test_bench_pages_do_not_give_up(count, access):
    assert check_parity("main", _bench_page(count), access, None)


@pytest.mark.parametrize("access", [GRANT_ALL, NOBODY])
def test_fhir_bundle_does_not_give_up(access):
    assert check_parity("main", _fhir_bundle(10), access, "A")


def test_no_phi_body_is_unchanged():
    body = orjson.dumps({"items": [{"name": "x", "n": 1.5, "tags": ["a", "b"]}] * 10})
    out, events = run_native("main", body, NOBODY, None)
    assert out is None
    assert events == []


def test_events_shape():
    body = orjson.dumps(
        {"id": 7, "practice_id": "A", "ssn": TOKEN_A, "member_id": "INS-1", "history": "h"}
    )
    out, events = run_native(
        "main", body, Grants(frozenset({("A", "ssn"), ("A", "history")})), None
    )
    assert events == [
        ("decrypted", "ssn", "A", "7"),
        ("masked", "insurance_id", None, None),
        ("kept", "history", "A", "7"),
    ]
    assert orjson.loads(out) == {
        "id": 7,
        "practice_id": "A",
        "ssn": "123-45-6789",
        "member_id": "[hidden]",
        "history": "h",
    }


def test_callbacks_are_memoized():
    calls = {"facts": 0, "allows": 0}
    base_facts = facts_for(KEYRING, GRANT_ALL)

    def facts(head):
        calls["facts"] += 1
        return base_facts(head)

    def allows(practice, field_class):
        calls["allows"] += 1
        return True

    body = _bench_page(20)
    result = native.transform_json(body, NATIVE_POLICIES["main"], KEYS, None, facts, allows)
    assert result is not None
    assert calls["facts"] == 3  # one per distinct header (kid, class)
    assert calls["allows"] == 0


def test_callback_errors_propagate():
    def facts(head):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        native.transform_json(
            orjson.dumps({"ssn": TOKEN_A}), NATIVE_POLICIES["main"], KEYS, None, facts, bool
        )


# ---------------------------------------------------------------------------------------------
# Pinned parity cases
# ---------------------------------------------------------------------------------------------

_KID_A = next(i.kid for i, _ in MATERIAL if i.practice == "A" and i.state is KeyState.ACTIVE)
_KID_B = next(i.kid for i, _ in MATERIAL if i.practice == "B")

PINNED = [
    # A withheld token whose payload is not even base64: masked without opening, as in Python.
    {"member_id": f"phi1.r.{_KID_A}.insurance_id.not base64 at all!"},
    {"member_id": f"phi1.d.{_KID_B}.insurance_id."},
    # A retired key's token: withheld and masked without opening (no integrity event) when the
    # mask needs no value; opening it (a grant, or a keep-last mask) gives up.
    {"member_id": _retired_token("INS-9", "insurance_id"), "note": _retired_token("x", "dob")},
    # Escaped and non-ASCII spellings of selected keys; separators folded.
    {"\\u0073sn": "123-45-6789", "Social.Security-Number": "987-65-4321"},
    {"\uff53\uff53\uff4e": "123-45-6789", "\u017fsn": TOKEN_A, "\u017f\u017fn": "x"},
    # Integer, negative-zero and huge record ids; an integer practice.
    {"id": -0, "practice_id": "A", "ssn": TOKEN_A},
    {"id": 18446744073709551615, "patient_id": None, "ssn": "123-45-6789"},
    {"practice_id": 7, "ssn": "123-45-6789"},
    # Ambiguous practice keys; a practice key holding a token.
    {"practice_id": "A", "practice": "B", "ssn": "123-45-6789"},
    {"practice_id": TOKEN_A, "ssn": "123-45-6789"},
    # Selected containers: masked whole, empty, arrays inherit, nested records.
    {"history": {"a": {"id": 3, "practice_id": "A", "b": [1, True, None, "x"]}}},
    {"history": {}, "ssn": [], "member_id": [1, "2", {"k": "v"}, [TOKEN_A]]},
    # Tokens inside text, at the edges, repeated; unselected whole tokens of a null mask.
    {"note": f"{TOKEN_A} and {TOKEN_A}, then x{TOKEN_A} end"},
    {"note": _seal("A", "history", "h", deterministic=False)},
    {"note": f"é{_seal('A', 'dob', 'y', deterministic=True)}é"},
    # Selected numbers and booleans (keep-last over integers, -0).
    {"ssn": -0, "social_security_number": 123456789012, "member_id": True},
    # A token spelled with an escape (decoded, it is a token like any other).
    {"ssn": "\\u0070" + TOKEN_A[1:], "note": "\\u0070" + TOKEN_A[1:]},
    # Escapes everywhere in values that stay untouched.
    {"name": "a\\u00e9\\n\\/", "n": 1.0e2, "ssn": "123\\u002d45-6789"},
]


@pytest.mark.parametrize("doc", PINNED)
@pytest.mark.parametrize("access", [GRANT_ALL, NOBODY, Grants(frozenset({("A", "ssn")}))])
@pytest.mark.parametrize("route", [None, "A"])
def test_pinned_parity(doc, access, route):
    body = orjson.dumps(doc).replace(b"\\\\u", b"\\u").replace(b"\\\\n", b"\\n")
    body = body.replace(b"\\\\/", b"\\/")
    if not check_parity("main", body, access, route):
        # Only where the Python walk itself meets an unopenable or malformed token.
        _out, error, stats = run_python(POLICIES["main"], body, access, route)
        assert error is not None or stats.integrity_failures > 0


# ---------------------------------------------------------------------------------------------
# The scanner never accepts what the strict Python parser refuses
# ---------------------------------------------------------------------------------------------

_SEEDS = [
    b'{"a":[1,-0.5e+3,true,false,null,"x\\u00e9\\n"],"b":{"c":{}}}',
    b'[{"id":1,"ssn":"123-45-6789"},{"id":2,"name":"\\ud83d\\ude00"}]',
    b'{"n":123456789012345678,"f":1.5E-7,"s":"\\"\\\\\\/\\b\\f\\r\\t"}',
    '{"é":"ü","k":" "}'.encode(),
]
_FRAGMENTS = [
    b"",
    b",",
    b":",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"0",
    b"-",
    b"01",
    b".",
    b"e",
    b"E+",
    b"1e400",
    b"1e-400",
    b"9" * 25,
    b"0." + b"0" * 400 + b"1",
    b"NaN",
    b"tru",
    b"null",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"\x0b",
    b"\xc2\xa0",
    b'"a"',
    b'"a":1',
]


@settings(max_examples=1500 * SCALE, deadline=None)
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 3), st.sampled_from(_FRAGMENTS)),
        min_size=1,
        max_size=3,
    ),
)
def test_scanner_accepts_only_strictly_valid_json(seed, edits):
    body = seed
    for offset, cut, fragment in edits:
        position = offset % (len(body) + 1)
        body = body[:position] + fragment + body[position + cut :]
    if gives_up(body, access=NOBODY):
        event("native gave up")
        return
    event("native accepted")
    parse_json(body)  # raises UnsafeBody if the Python side would refuse it


@pytest.mark.parametrize(
    "body",
    [b"1e-400", b"0." + b"0" * 400 + b"1", b"-0.0", b"123456789012345678901e-5", b'"\\u0000"'],
)
def test_scanner_edge_numbers_and_strings(body):
    if not gives_up(body, access=NOBODY):
        parse_json(body)


def test_policy_refuses_more_than_64_path_steps():
    step = (False, ["a"], None, None)
    with pytest.raises(ValueError, match="64"):
        native.Policy({}, [], [], [([step] * 65, "x")], {}, ("fixed", "r"), 8, True, str.lower)  # noqa: FBT003


def test_policy_argument_types():
    with pytest.raises(TypeError, match="rank order"):
        native.Policy({}, [], {"id"}, [], {}, ("fixed", "r"), 8, True, str.lower)  # noqa: FBT003
    with pytest.raises(TypeError, match="got a str"):
        native.Policy({}, "id", [], [], {}, ("fixed", "r"), 8, True, str.lower)  # noqa: FBT003
    with pytest.raises(ValueError, match="mask"):
        native.Policy({}, [], [], [], {}, ("nope",), 8, True, str.lower)  # noqa: FBT003


def test_policy_repr_and_keys_len():
    assert "Policy" in repr(NATIVE_POLICIES["main"])
    assert len(KEYS) == 4  # the retired key is not given to the native side


# ---------------------------------------------------------------------------------------------
# Random policies: key selectors, path selectors of every supported form, masks
# ---------------------------------------------------------------------------------------------

_PATH_NAMES = ("ssn", "id", "identifier", "system", "value", "data", "kind", "meta", "ok", "v")
_name = st.sampled_from(_PATH_NAMES)
_literal = st.sampled_from(
    ["'http://hl7.org/fhir/sid/us-ssn'", "'ins'", '"John"', "true", "false", "null"]
)
_member = st.lists(_name, min_size=1, max_size=2).map(lambda ns: "@" + "".join("." + n for n in ns))
_condition = st.one_of(
    _member,
    st.builds(
        lambda m, op, lit: f"{m}{op}{lit}", _member, st.sampled_from(["==", "!=", " == "]), _literal
    ),
)
_filter = st.lists(_condition, min_size=1, max_size=2).map(" && ".join)
_step = st.one_of(
    _name.map(lambda n: "." + n),
    _name.map(lambda n: ".." + n),
    st.sampled_from([".*", "..*", "[*]", "[0]", "[1]", "..[1]", "..[*]"]),
    st.lists(_name, min_size=1, max_size=2).map(
        lambda ns: "[" + ",".join(f"'{n}'" for n in ns) + "]"
    ),
    _filter.map(lambda f: f"[?({f})]"),
    _filter.map(lambda f: f"..[?{f}]"),
)
_path = st.lists(_step, min_size=1, max_size=4).map(lambda steps: "$" + "".join(steps))
_mask = st.one_of(
    st.none(),
    st.just({"text": "[t]"}),
    st.builds(
        lambda keep, min_length: {
            "keep_last": keep,
            "template": "<{last}>",
            "min_length": min_length,
        },
        st.integers(1, 4),
        st.one_of(st.none(), st.integers(1, 6)),
    ),
)
_selector = st.one_of(
    st.builds(
        lambda c, names: {"class": c, "keys": names},
        st.sampled_from(["ssn", "history", "insurance_id"]),
        st.lists(st.sampled_from(KEYS_VOCAB[:12]), min_size=1, max_size=3),
    ),
    st.builds(lambda c, p: {"class": c, "path": p}, st.sampled_from(["ssn", "history"]), _path),
)
random_fields = st.builds(
    lambda masks, selectors, fold, depth: {
        "classes": {
            c: {"mask": m} for c, m in zip(["ssn", "history", "insurance_id"], masks, strict=True)
        },
        "selectors": selectors,
        "record": {"practice_keys": ["practice_id"], "id_keys": ["id", "patient_id"]},
        "fold_separators": fold,
        "max_depth": depth,
    },
    st.lists(_mask, min_size=3, max_size=3),
    st.lists(_selector, min_size=1, max_size=4),
    st.booleans(),
    st.integers(4, 12),
)


@settings(
    max_examples=400 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    fields=random_fields,
    doc=documents,
    style=st.integers(0, 3),
    access=grants,
    route=st.sampled_from([None, "A"]),
)
def test_parity_under_random_policies(fields, doc, style, access, route):
    policy = FieldPolicy.compile(FieldSettings.model_validate(fields))
    NATIVE_POLICIES["random"] = native_policy(policy)
    POLICIES["random"] = policy
    try:
        decided = check_parity("random", _dump(doc, style), access, route)
    finally:
        del NATIVE_POLICIES["random"], POLICIES["random"]
    event("native decided" if decided else "native gave up")


# ---------------------------------------------------------------------------------------------
# The demo portal's pages (proxy/demo): its config, its shapes, aiohttp's JSON spelling
# ---------------------------------------------------------------------------------------------

DEMO_FIELDS = demo_config(DemoPorts())["fields"]
POLICIES["demo"] = FieldPolicy.compile(FieldSettings.model_validate(DEMO_FIELDS))
NATIVE_POLICIES["demo"] = native_policy(POLICIES["demo"])


def _demo_patient(n: int, practice: str, *, encrypted: bool) -> dict:
    def seal(field_class: str, value: str, *, deterministic: bool = False) -> str:
        if not encrypted:
            return value
        return KEYRING.encrypt(practice, field_class, value, deterministic=deterministic)

    return {
        "id": n,
        "practice_id": practice,
        "name": f"Demo Patient {n}",
        "date_of_birth": seal("dob", "1980-01-0" + str(n % 9 + 1)),
        "ssn": seal("ssn", f"900-00-{n:04d}", deterministic=True),
    }


def _demo_pages(practice: str, *, encrypted: bool) -> list[bytes]:
    patients = [_demo_patient(n, practice, encrypted=encrypted) for n in range(1, 7)]
    detail = {
        **patients[0],
        "insurance": {
            "carrier": "Demo Mutual",
            "member_id": KEYRING.encrypt(practice, "insurance_id", "DEMO-0001")
            if encrypted
            else "DEMO-0001",
        },
        "medical_history": KEYRING.encrypt(practice, "history", "asthma, penicillin allergy")
        if encrypted
        else "asthma",
        "appointments": [
            {
                "id": 1,
                "starts_at": "2026-12-01T09:30:00Z",
                "provider": "Dr. Demo",
                "visit_reason": KEYRING.encrypt(practice, "history", "follow-up"),
            },
        ],
    }
    appointments = {
        "practice_id": practice,
        "appointments": [
            {
                "id": i,
                "patient_id": i,
                "patient_name": f"Demo Patient {i}",
                "starts_at": "2026-12-01T09:30:00Z",
                "provider": "Dr. Demo",
                "visit_reason": KEYRING.encrypt(practice, "history", f"reason {i}"),
            }
            for i in range(1, 4)
        ],
    }
    listing = {"practice_id": practice, "patients": patients}
    # aiohttp's json_response writes json.dumps with its default separators.
    return [json.dumps(page).encode() for page in (listing, detail, appointments)]


@settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, style=st.integers(0, 3), access=grants, route=st.sampled_from([None, "A"]))
def test_parity_with_key_selectors_only(doc, style, access, route):
    # No path selector: subtrees with nothing decidable are skipped by the native walk.
    wrapped = {"data": [doc, {"member_id": doc}], "date_of_birth": doc}
    decided = check_parity("demo", _dump(wrapped, style), access, route)
    event("native decided" if decided else "native gave up")


@pytest.mark.parametrize("encrypted", [True, False])
@pytest.mark.parametrize(
    "access",
    [
        Grants(
            frozenset((p, c) for p in ("A",) for c in ("ssn", "dob", "insurance_id", "history"))
        ),
        NOBODY,
        Grants(frozenset({("B", "ssn")})),
    ],
)
@pytest.mark.parametrize("route", [None, "A"])
def test_demo_pages_do_not_give_up(encrypted, access, route):
    for body in _demo_pages("A", encrypted=encrypted):
        assert check_parity("demo", body, access, route)


_RAW_KEYS = ["", "a", "\\u0061", "b", "\u00e9", "\\u00e9", "A", "ssn", "s\\u0073n", '\\"', "\\\\"]


def _raw_object(members: list[tuple[str, bytes]]) -> bytes:
    return b"{" + b",".join(b'"' + key.encode() + b'":' + value for key, value in members) + b"}"


_raw_json = st.recursive(
    st.sampled_from([b"1", b'"x"', b"null", b"[]", b"{}"]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: b"[" + b",".join(items) + b"]"),
        st.lists(st.tuples(st.sampled_from(_RAW_KEYS), inner), max_size=14).map(_raw_object),
    ),
    max_leaves=30,
)


@settings(max_examples=1500 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_raw_json)
def test_duplicate_keys_always_give_up(body):
    """Objects of raw key spellings (escaped, empty, repeated, 13+ keys): never a duplicate."""
    try:
        parse_json(body)
    except UnsafeBody:
        assert gives_up(body, access=NOBODY)
        event("duplicate: gave up")
        return
    event("no duplicate")
    result = run_native("main", body, NOBODY, None)
    if result is not None:
        assert result[0] is None or orjson.loads(result[0]) is not None


def test_large_bodies_from_several_threads():
    # Bodies of 64 KB and more are scanned without the GIL: threads interleave, results agree.
    from concurrent.futures import ThreadPoolExecutor

    body = _bench_page(120)
    assert len(body) > 64 * 1024
    expected = run_native("main", body, GRANT_ALL, None)
    assert expected is not None
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run_native("main", body, GRANT_ALL, None), range(16)))
    assert all(result == expected for result in results)
    assert check_parity("main", body, GRANT_ALL, None)


def test_removed_members_are_decided_natively():
    """`mask: remove` needs no give-up: members, elements, emptied containers, path matches."""
    token = _seal("B", "diagnosis", "Sprain of ankle", deterministic=False)
    record = {
        "id": "p1",
        "practice_id": "A",
        "diagnosis": "Viral sinusitis",
        "reasonCode": [{"coding": [{"system": "s", "code": "1", "display": token}]}],
        "code": {"coding": [{"code": "1", "display": "Viral sinusitis"}], "text": "t"},
    }
    for body in (
        orjson.dumps({"data": [record, {"id": "p2"}]}),
        json.dumps([record], indent=2).encode(),
    ):
        for access in (NOBODY, GRANT_ALL, Grants(frozenset({("A", "diagnosis")}))):
            assert check_parity("main", body, access, None)
        out, _ = run_native("main", body, NOBODY, None)
        assert b"sinusitis" not in out
        assert b"reasonCode" not in out
        assert b'"code"' in out
