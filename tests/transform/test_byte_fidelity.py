"""Bytes in = bytes out, except the decided values: the splice and the transforms that use it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_spelling import KEYS, SCALARS, TREES, render
from transform_helpers import NOBODY, Grants

from proxy.transform import (
    FieldPolicy,
    RevealContext,
    RouteTable,
    SealContext,
    TransformStats,
    encrypt_request,
    transform_response,
)
from proxy.transform.jsonsafe import parse_json
from proxy.transform.response import transform_json_pure
from proxy.transform.settings import FieldSettings, WriteRoutesSettings
from proxy.transform.splice import REMOVED, Edits, splice
from proxy.transform.testing import EVERY_GRANT, compare_cores

FHIR_BUNDLE = Path(__file__).parents[1] / "fixtures" / "fhir-patient-bundle.json"
JSON = "application/json"
ROUTES = RouteTable.compile(
    WriteRoutesSettings.model_validate(
        [
            {
                "method": "POST",
                "path": "/api/practices/{practice_id}/patients",
                "practice_from": {"path_param": "practice_id"},
            }
        ]
    )
)
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _nodes(node, path=()):
    """(path, container, key) of every member and element below `node`."""
    if isinstance(node, dict):
        for key, item in node.items():
            yield (*path, key), node, key
            yield from _nodes(item, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield (*path, index), node, index
            yield from _nodes(item, (*path, index))


def _containers_on(doc, path):
    node = doc
    yield node
    for step in path[:-1]:
        node = node[step]
        yield node


def _without(node, removed: dict[tuple, object], path=()):
    """`node` as a parser reads it after the members at `removed` paths are left out."""
    if isinstance(node, dict):
        return {
            k: _without(v, removed, (*path, k))
            for k, v in node.items()
            if (*path, k) not in removed
        }
    if isinstance(node, list):
        return [
            _without(v, removed, (*path, i))
            for i, v in enumerate(node)
            if (*path, i) not in removed
        ]
    return node


class TestSplice:
    @SETTINGS
    @given(tree=TREES, seed=st.integers(0, 2**16), data=st.data())
    def test_only_the_edited_values_change_byte_for_byte(self, tree, seed, data):
        """Splicing random edits into a randomly spelled body equals rendering them in place."""
        body = render(tree, seed)
        doc = parse_json(body)
        nodes = list(_nodes(doc))
        edits = Edits()
        replaced: dict[tuple, object] = {}
        chosen = data.draw(st.lists(st.sampled_from(nodes), max_size=4)) if nodes else []
        for path, container, key in chosen:
            if any(path[: len(p)] == p for p in replaced if p and p[0] != "keys"):
                continue  # a value inside one already replaced is gone with it
            if any(p[: len(path)] == path for p in replaced if p and p[0] != "keys"):
                continue
            new = data.draw(st.one_of(st.none(), st.text(max_size=5)))
            edits.values[id(container), key] = new
            replaced[path] = new
            edits.dirty.update(map(id, _containers_on(doc, path)))
        expected = render(tree, seed, replaced)
        assert expected == splice(body, doc, edits)

    @SETTINGS
    @given(tree=st.dictionaries(KEYS, SCALARS, min_size=1, max_size=4), seed=st.integers(0, 99))
    def test_renamed_keys_change_nothing_else(self, tree, seed):
        """A key decided in place (a token in a key) is the only byte run that changes."""
        body = render(tree, seed)
        doc = parse_json(body)
        first = next(iter(doc))
        edits = Edits()
        edits.keys[id(doc)] = {first: "[redacted]"}
        edits.dirty.add(id(doc))
        expected = render(tree, seed, {("keys",): {first: "[redacted]"}})
        assert expected == splice(body, doc, edits)

    @SETTINGS
    @given(tree=TREES, seed=st.integers(0, 2**16), data=st.data())
    def test_removed_members_are_cut_with_one_separator(self, tree, seed, data):
        """Random members left out: every other byte stays, and the text is still JSON."""
        body = render(tree, seed)
        doc = parse_json(body)
        nodes = list(_nodes(doc))
        edits = Edits()
        removed: dict[tuple, object] = {}
        chosen = data.draw(st.lists(st.sampled_from(nodes), max_size=6)) if nodes else []
        for path, container, key in chosen:
            if any(path[: len(p)] == p or p[: len(path)] == path for p in removed):
                continue  # inside a removed member, or holding one
            edits.values[id(container), key] = REMOVED
            removed[path] = REMOVED
            edits.dirty.update(map(id, _containers_on(doc, path)))
        out = splice(body, doc, edits)
        assert render(tree, seed, removed) == out
        assert parse_json(out) == _without(doc, removed)

    def test_a_removed_member_takes_one_comma_and_its_indentation(self):
        """Pretty-printed: the member's line goes; first, middle and last alike."""
        body = b'{\n  "a": 1,\n  "b": [\n    2,\n    3\n  ],\n  "c": 4\n}'
        doc = parse_json(body)
        for key, want in (
            ("a", b'{\n  "b": [\n    2,\n    3\n  ],\n  "c": 4\n}'),
            ("b", b'{\n  "a": 1,\n  "c": 4\n}'),
            ("c", b'{\n  "a": 1,\n  "b": [\n    2,\n    3\n  ]\n}'),
        ):
            edits = Edits()
            edits.values[id(doc), key] = REMOVED
            edits.dirty.add(id(doc))
            assert splice(body, doc, edits) == want

    def test_a_document_left_without_members_keeps_its_brackets(self):
        """Nothing can remove the document itself: `{ }` with the blanks that were inside."""
        body = b'{\n  "a": 1,\n  "b": 2\n}'
        doc = parse_json(body)
        edits = Edits()
        edits.values[id(doc), "a"] = edits.values[id(doc), "b"] = REMOVED
        edits.dirty.add(id(doc))
        assert splice(body, doc, edits) == b"{\n  \n}"

    def test_no_edits_return_the_same_bytes_object(self):
        """Nothing decided → the very bytes object that came in."""
        body = b' {"a": 1.50} '
        assert splice(body, parse_json(body), Edits()) is body

    def test_a_changed_top_level_value_keeps_the_blanks_around_it(self):
        """A body that is one token becomes the decided value, surrounded as it was."""
        body = b' \n"x"\t'
        edits = Edits()
        edits.root = (None,)
        assert splice(body, parse_json(body), edits) == b" \nnull\t"


class TestFhirRoundTrip:
    def test_bundle_written_then_read_by_a_grantee_is_byte_identical(self, policy, keyring):
        """Pretty-printed FHIR with `8E+1` goes in, is stored as ciphertext, comes back as sent."""
        written = FHIR_BUNDLE.read_bytes()
        route = ROUTES.match_route("POST", "/api/practices/A/patients")
        stored = encrypt_request(
            written,
            "application/fhir+json",
            route,
            SealContext(policy, keyring, access=EVERY_GRANT),
        )
        assert b"999-80-9771" not in stored
        assert stored.count(b"phi1.d.") == 1  # the SSN identifier's value, deterministic
        assert b'"value": 8E+1,' in stored
        assert b'"value": 1.1E+2,' in stored
        assert len(stored.splitlines()) == len(written.splitlines())
        ctx = RevealContext(policy, keyring, Grants.of(("A", "ssn")), None, TransformStats())
        assert transform_response(stored, "application/fhir+json", ctx) == written
        assert ctx.stats.decrypted["ssn"] == 1

    def test_a_stranger_sees_the_same_bytes_with_only_the_ssn_masked(self, policy, keyring):
        """All but the masked SSN, decimals and escapes included, is as the portal sent it."""
        written = FHIR_BUNDLE.read_bytes()
        route = ROUTES.match_route("POST", "/api/practices/A/patients")
        stored = encrypt_request(
            written, JSON, route, SealContext(policy, keyring, access=EVERY_GRANT)
        )
        ctx = RevealContext(policy, keyring, NOBODY, None, TransformStats())
        shown = transform_response(stored, JSON, ctx)
        assert shown == written.replace(b'"999-80-9771"', b'"***-**-9771"')

    def test_response_escapes_of_untouched_strings_survive(self, policy, keyring):
        r"""`\u2014`, `\"` and `\n` in other strings are not re-encoded when a value changes."""
        token = keyring.encrypt("A", "ssn", "123-45-6789").encode()
        body = b'{"note": "a \\u2014 \\"b\\"\\n", "ssn": "' + token + b'", "t": 1.10}'
        ctx = RevealContext(policy, keyring, NOBODY, None, TransformStats())
        shown = transform_response(body, JSON, ctx)
        assert shown == b'{"note": "a \\u2014 \\"b\\"\\n", "ssn": "***-**-6789", "t": 1.10}'


#: One class with `mask: remove`, selected by the key "b" (one of json_spelling's KEYS).
REMOVE_POLICY = FieldPolicy.compile(
    FieldSettings.model_validate(
        {"classes": {"gone": {"mask": "remove"}}, "selectors": [{"class": "gone", "keys": ["b"]}]}
    )
)


#: Trees where "b" (selected) is one key in three, so removals are common.
REMOVE_TREES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", 'q"t']), kids, max_size=3)
    ),
    max_leaves=16,
)


def _removals(node, path, out, *, selected: bool) -> bool:
    """The walk's rule, modelled: True if `node` is removed; members removed go into `out`.

    A selected non-null scalar is removed; a selected non-empty object is removed whole;
    elements of a selected array are decided one by one; a container that had members and
    has none left is removed; null and containers that came empty stay.
    """
    if isinstance(node, dict):
        if selected and node:
            return True
        fates = [_removals(v, (*path, k), out, selected=k == "b") for k, v in node.items()]
        keys = list(node)
    elif isinstance(node, list):
        fates = [_removals(v, (*path, i), out, selected=selected) for i, v in enumerate(node)]
        keys = list(range(len(node)))
    else:
        return selected and node is not None
    for key, gone in zip(keys, fates, strict=True):
        if gone:
            out[(*path, key)] = REMOVED
    return bool(fates) and all(fates)


class TestRemoveMask:
    @SETTINGS
    @given(tree=REMOVE_TREES, seed=st.integers(0, 2**16))
    def test_a_stranger_gets_the_document_without_the_class_and_nothing_else_changes(
        self, keyring, tree, seed
    ):
        """Both cores leave out exactly the selected values and what they empty, byte for byte."""
        body = render(tree, seed)
        removed: dict[tuple, object] = {}
        _removals(tree, (), removed, selected=False)
        expected = render(tree, seed, removed) if removed else body

        def make():
            return RevealContext(REMOVE_POLICY, keyring, NOBODY, None, TransformStats())

        assert transform_json_pure(body, make()) == expected
        assert compare_cores(body, make) is None

    def test_a_grantee_gets_every_byte(self, keyring):
        """Legacy plaintext a caller may see is kept: the same bytes object comes back."""
        body = b'{"practice_id": "A", "b": "flu", "a": [{"b": 1}]}'
        grants = Grants.of(("A", "gone"))
        ctx = RevealContext(REMOVE_POLICY, keyring, grants, None, TransformStats())
        assert transform_json_pure(body, ctx) is body
