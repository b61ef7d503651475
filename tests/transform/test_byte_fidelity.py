"""Bytes in = bytes out, except the decided values: the splice and the transforms that use it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_spelling import KEYS, SCALARS, TREES, render
from transform_helpers import NOBODY, Grants

from proxy.transform import (
    RevealContext,
    RouteTable,
    SealContext,
    TransformStats,
    encrypt_request,
    transform_response,
)
from proxy.transform.jsonsafe import parse_json
from proxy.transform.settings import WriteRoutesSettings
from proxy.transform.splice import Edits, splice
from proxy.transform.testing import EVERY_GRANT

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
