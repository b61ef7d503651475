"""`mask: remove`: where a value can be left out it is; where it cannot, the redacted text.

The shared test fields give class `diagnosis` the remove mask (keys `diagnosis`, `reasonCode`).
How removed members are cut byte for byte, and that both cores agree, is pinned in
test_byte_fidelity.py and the parity tests; this module pins the decisions.
"""

from __future__ import annotations

import orjson
import pytest
from transform_helpers import Grants

from proxy.transform import (
    RouteTable,
    SealContext,
    UnsafeBody,
    encrypt_request,
    transform_response,
)
from proxy.transform.settings import WriteRoutesSettings
from proxy.transform.testing import EVERY_GRANT

JSON = "application/json"


@pytest.fixture
def diagnosis(keyring):
    """A token of practice A's diagnosis class."""
    return keyring.encrypt("A", "diagnosis", "Sprain of ankle")


def shown(ctx, doc) -> object:
    return orjson.loads(transform_response(orjson.dumps(doc), JSON, ctx))


class TestLeftOut:
    def test_a_token_the_caller_may_not_see_is_left_out(self, make_ctx, diagnosis):
        """The member goes, key and all; it counts as masked and withheld, like any mask."""
        ctx = make_ctx()
        assert shown(ctx, {"id": 1, "diagnosis": diagnosis, "n": 2}) == {"id": 1, "n": 2}
        assert ctx.stats.masked == {"diagnosis": 1}
        assert ctx.stats.withheld == {"A"}

    def test_a_grantee_gets_the_value(self, make_ctx, diagnosis):
        ctx = make_ctx(Grants.of(("A", "diagnosis")))
        assert shown(ctx, {"diagnosis": diagnosis}) == {"diagnosis": "Sprain of ankle"}
        assert ctx.stats.decrypted == {"diagnosis": 1}

    def test_an_unselected_token_is_left_out_by_its_own_class(self, make_ctx, diagnosis):
        """Tokens are decided wherever they are; their class's mask says what replaces them."""
        assert shown(make_ctx(), {"note": diagnosis, "x": [diagnosis, 1]}) == {"x": [1]}

    def test_legacy_plaintext_is_left_out_unless_its_practice_is_granted(self, make_ctx):
        doc = {"practice_id": "A", "reasonCode": [{"text": "Hypertension"}], "id": 7}
        assert shown(make_ctx(), doc) == {"practice_id": "A", "id": 7}
        assert shown(make_ctx(Grants.of(("A", "diagnosis"))), doc) == doc

    def test_an_array_keeps_the_elements_the_caller_may_see(self, make_ctx, keyring, diagnosis):
        """Elements are decided one by one: the array is shorter, never holds a gap."""
        other = keyring.encrypt("B", "diagnosis", "Hypertension")
        ctx = make_ctx(Grants.of(("B", "diagnosis")))
        assert shown(ctx, {"diagnosis": [diagnosis, other]}) == {"diagnosis": ["Hypertension"]}

    def test_what_removal_empties_is_left_out_up_to_the_document(self, make_ctx, diagnosis):
        doc = {"a": {"b": [{"diagnosis": diagnosis}]}, "c": {"diagnosis": "x"}}
        assert shown(make_ctx(), doc) == {}

    def test_null_and_containers_that_came_empty_stay(self, make_ctx):
        """Only removal empties: what the portal sent empty or null is not a value to hide."""
        doc = {"diagnosis": None, "reasonCode": [], "x": {"diagnosis": {}}, "y": {}}
        ctx = make_ctx()
        assert shown(ctx, doc) == doc
        assert not ctx.stats.masked


class TestWhereNothingCanBeLeftOut:
    def test_inside_a_longer_string_the_token_becomes_the_redacted_text(self, make_ctx, diagnosis):
        assert shown(make_ctx(), {"note": f"seen for {diagnosis}."}) == {
            "note": "seen for [redacted]."
        }

    def test_a_token_as_an_object_key_becomes_the_redacted_text(self, make_ctx, diagnosis):
        assert shown(make_ctx(), {diagnosis: 1}) == {"[redacted]": 1}

    def test_a_document_that_is_one_token_becomes_the_redacted_text(self, make_ctx, diagnosis):
        body = b' "' + diagnosis.encode() + b'"\n'
        assert transform_response(body, JSON, make_ctx()) == b' "[redacted]"\n'

    def test_text_bodies_get_the_redacted_text(self, make_ctx, diagnosis):
        body = f"id,dx\n1,{diagnosis}\n".encode()
        assert transform_response(body, "text/csv", make_ctx()) == b"id,dx\n1,[redacted]\n"


class TestKeysOfRemovedMembers:
    def test_are_neither_decided_nor_counted(self, make_ctx, keyring, diagnosis):
        """A removed member's key is not shown, so a token in it is not opened for the caller."""
        key = keyring.encrypt("A", "ssn", "123-45-6789")
        ctx = make_ctx(Grants.of(("A", "ssn")))
        assert shown(ctx, {key: diagnosis, "n": 1}) == {"n": 1}
        assert not ctx.stats.decrypted

    def test_cannot_collide_with_a_key_that_stays(self, make_ctx, keyring, diagnosis):
        """Two keys masking to the same text refuse the body, unless one of them is removed."""
        first, second = (keyring.encrypt("A", "insurance_id", v) for v in ("M-1", "M-2"))
        assert shown(make_ctx(), {first: diagnosis, second: 1}) == {"[hidden]": 1}
        with pytest.raises(UnsafeBody, match="key_collision"):
            shown(make_ctx(), {first: 0, second: 1})


def test_values_of_the_class_are_encrypted_on_the_way_in(policy, keyring):
    """A mask is for answers only: a write route encrypts the class like any other."""
    routes = RouteTable.compile(
        WriteRoutesSettings.model_validate(
            [
                {
                    "method": "POST",
                    "path": "/p/{practice}",
                    "practice_from": {"path_param": "practice"},
                }
            ]
        )
    )
    body = b'{"diagnosis": "Sprain of ankle", "reasonCode": ["Sprain"]}'
    stored = encrypt_request(
        body,
        JSON,
        routes.match_route("POST", "/p/A"),
        SealContext(policy, keyring, access=EVERY_GRANT),
    )
    assert b"Sprain" not in stored
    assert stored.count(b"phi1.r.") == 2
