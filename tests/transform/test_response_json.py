import orjson
import pytest
from transform_helpers import NOBODY, Grants

from keys.keyring import KeyInfo, Keyring, KeyState
from proxy.transform import RevealContext, TransformStats, UnsafeBody, transform_response

JSON = "application/json"


def run(ctx, doc):
    """Transform `doc` (or raw JSON bytes) as application/json and parse the result."""
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return orjson.loads(transform_response(body, JSON, ctx))


class TestTokenDecisions:
    def test_authorized_caller_sees_plaintext(self, make_ctx, keyring):
        """A caller with a grant for the token's practice and class gets the plaintext."""
        ctx = make_ctx(Grants.of(("A", "ssn")))
        out = run(ctx, {"id": 7, "ssn": keyring.encrypt("A", "ssn", "123-45-6789")})
        assert out == {"id": 7, "ssn": "123-45-6789"}
        assert ctx.stats.decrypted["ssn"] == 1
        assert ctx.stats.records == {("A", "7")}

    @pytest.mark.parametrize(
        "access",
        [NOBODY, Grants.of(("B", "ssn")), Grants.of(("A", "insurance_id"))],
        ids=["anonymous", "other-practice", "lacking-class"],
    )
    def test_unauthorized_callers_see_masks(self, make_ctx, keyring, access):
        """No grant, a grant for another practice, or for another class all give the mask."""
        ctx = make_ctx(access)
        out = run(
            ctx,
            {
                "ssn": keyring.encrypt("A", "ssn", "123-45-6789"),
                "member_id": keyring.encrypt("A", "insurance_id", "INS-1"),
                "history": keyring.encrypt("A", "history", "asthma"),
            },
        )
        assert out["ssn"] == "***-**-6789"
        assert out["history"] is None
        if access.allows("A", "insurance_id"):
            assert out["member_id"] == "INS-1"
        else:
            assert out["member_id"] == "[hidden]"
        assert not ctx.stats.practices - {"A"}

    def test_list_of_three_practices_is_decided_per_record(self, make_ctx, keyring):
        """Each record's token is decided by its own practice's grant."""
        ctx = make_ctx(Grants.of(("A", "ssn"), ("C", "ssn")))
        doc = [
            {"id": p, "practice_id": p, "ssn": keyring.encrypt(p, "ssn", f"000-00-000{n}")}
            for n, p in enumerate("ABC")
        ]
        out = run(ctx, doc)
        assert [r["ssn"] for r in out] == ["000-00-0000", "***-**-0001", "000-00-0002"]

    def test_token_copied_into_other_practice_record_is_decided_by_its_key(self, make_ctx, keyring):
        """A practice-A token in a record claiming practice B is decided by A's grant."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        doc = {"practice_id": "B", "ssn": token}
        assert run(make_ctx(Grants.of(("B", "ssn"))), doc)["ssn"] == "***-**-6789"
        assert run(make_ctx(Grants.of(("A", "ssn"))), doc)["ssn"] == "123-45-6789"

    def test_tampered_token_is_masked_and_recorded(self, make_ctx, keyring):
        """A token with a flipped payload character is masked and logged with kid and reason."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        bad = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        ctx = make_ctx(Grants.of(("A", "ssn")))
        out = run(ctx, {"ssn": bad})
        assert out["ssn"] == "[redacted]"
        assert ctx.stats.integrity_failures == 1
        event = ctx.stats.integrity_events[0]
        assert event.kid == token.split(".")[2]
        assert event.reason in {"not-authentic", "bad-base64"}
        # The kid is random hex and may contain any digit run: check the plaintext's shape.
        assert "123-45" not in repr(ctx.stats)
        assert "45-6789" not in repr(ctx.stats)

    def test_unknown_key_is_masked_and_recorded(self, make_ctx):
        """A token under a key this keyring does not know is masked as an integrity failure."""
        from keys.testing import make_keyring

        foreign = make_keyring(["A"]).encrypt("A", "ssn", "123-45-6789")
        ctx = make_ctx(Grants.of(("A", "ssn")))
        assert run(ctx, {"note": foreign})["note"] == "[redacted]"
        assert ctx.stats.integrity_events[0].reason == "unknown-kid"

    def test_retired_key_refuses_and_is_recorded(self, policy):
        """A token under a retired key is masked even for an authorized caller."""
        from datetime import UTC, datetime

        active = Keyring.from_material(
            [(KeyInfo("0" * 16, "A", 1, KeyState.ACTIVE, datetime.now(UTC)), b"k" * 32)]
        )
        token = active.encrypt("A", "ssn", "123-45-6789")
        retired = Keyring.from_material(
            [(KeyInfo("0" * 16, "A", 1, KeyState.RETIRED, datetime.now(UTC)), b"k" * 32)]
        )
        ctx = RevealContext(policy, retired, Grants.of(("A", "ssn")), None, TransformStats())
        assert run(ctx, {"ssn": token})["ssn"] == "[redacted]"
        assert ctx.stats.integrity_events[0].reason == "key-retired"

    def test_nested_token_is_not_unwrapped(self, make_ctx, keyring):
        """A value whose plaintext is another token is masked, never passed on."""
        inner = keyring.encrypt("B", "ssn", "987-65-4321")
        outer = keyring.encrypt("A", "history", inner)
        ctx = make_ctx(Grants.all_classes("A"))
        assert run(ctx, {"history": outer})["history"] is None
        assert ctx.stats.integrity_events[0].reason == "nested-token"


class TestUnselectedTokens:
    def test_token_in_unselected_field_is_decided(self, make_ctx, keyring):
        """Tokens are self-describing: an unselected field's token is still decided."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        assert run(make_ctx(Grants.of(("A", "ssn"))), {"x": token})["x"] == "123-45-6789"
        assert run(make_ctx(), {"x": token})["x"] == "***-**-6789"

    def test_token_inside_longer_string_is_replaced_in_place(self, make_ctx, keyring):
        """A token embedded in free text is replaced, the text around it kept."""
        token = keyring.encrypt("A", "history", "flu")
        out = run(make_ctx(Grants.all_classes("A")), {"note": f"dx: {token}; ok"})
        assert out["note"] == "dx: flu; ok"
        out = run(make_ctx(), {"note": f"dx: {token}; ok"})
        assert out["note"] == "dx: [redacted]; ok"

    def test_token_as_object_key_is_decided(self, make_ctx, keyring):
        """A token used as an object key is decrypted or masked like any other."""
        token = keyring.encrypt("A", "insurance_id", "INS-9")
        assert run(make_ctx(Grants.all_classes("A")), {token: 1}) == {"INS-9": 1}
        assert run(make_ctx(), {token: 1}) == {"[hidden]": 1}

    def test_two_masked_keys_colliding_refuse_the_body(self, make_ctx, keyring):
        """Masking two token keys to the same text refuses the body instead of dropping one."""
        doc = {keyring.encrypt("A", "history", "a"): 1, keyring.encrypt("A", "history", "b"): 2}
        with pytest.raises(UnsafeBody) as info:
            run(make_ctx(), doc)
        assert info.value.reason == "key_collision"

    def test_malformed_prefix_masks_whole_string(self, make_ctx):
        """A string with the prefix but no valid token is masked and counted."""
        ctx = make_ctx(Grants.all_classes("A"))
        out = run(ctx, {"x": "see phi1.r.notatoken and more", "y": "phi1."})
        assert out == {"x": "[redacted]", "y": "[redacted]"}
        assert ctx.stats.integrity_failures == 2


class TestLegacyPlaintext:
    def test_plaintext_kept_with_grant_for_record_practice(self, make_ctx):
        """Legacy plaintext shows only to a caller with a grant for the record's practice."""
        doc = {"practice_id": "A", "patient_id": "p1", "ssn": "123-45-6789"}
        ctx = make_ctx(Grants.of(("A", "ssn")))
        assert run(ctx, doc)["ssn"] == "123-45-6789"
        assert ctx.stats.plaintext_kept["ssn"] == 1
        assert ctx.stats.records == {("A", "p1")}
        assert run(make_ctx(Grants.of(("B", "ssn"))), doc)["ssn"] == "***-**-6789"

    def test_nearest_enclosing_practice_wins(self, make_ctx):
        """A nested record's own practice key overrides the outer one."""
        doc = {"practice_id": "A", "items": [{"ssn": "1"}, {"practice_id": "B", "ssn": "2"}]}
        out = run(make_ctx(Grants.of(("A", "ssn"))), doc)
        assert out["items"][0]["ssn"] == "1"
        assert out["items"][1]["ssn"] == "[redacted]"

    def test_route_practice_is_the_fallback_and_unknown_masks(self, make_ctx):
        """Without a practice key the route's practice decides; with neither, mask."""
        doc = {"member_id": "INS-1"}
        assert run(make_ctx(Grants.all_classes("A"), "A"), doc) == doc
        assert run(make_ctx(Grants.all_classes("A")), doc) == {"member_id": "[hidden]"}

    def test_ambiguous_practice_keys_mask(self, make_ctx):
        """Two practice keys that disagree make the practice unknown, even with a route."""
        body = b'{"practice_id": "A", "PRACTICE_ID": "B", "ssn": "123-45-6789"}'
        out = run(make_ctx(Grants.all_classes("A", "B"), "A"), body)
        assert out["ssn"] == "***-**-6789"

    def test_selected_container_and_numbers_inherit_the_class(self, make_ctx):
        """Every scalar inside a selected container is PHI of that class, numbers included."""
        doc = {"practice_id": "A", "history": [["flu", 40, True], None]}
        out = run(make_ctx(), doc)
        assert out["history"] == [[None, None, None], None]

    def test_selected_objects_in_an_array_are_masked_whole(self, make_ctx):
        """Without access, each selected object becomes the mask: its keys are PHI too."""
        doc = {"practice_id": "A", "history": [{"dx": "flu", "age": 40, "ok": True}, None]}
        ctx = make_ctx()
        out = run(ctx, doc)
        assert out["history"] == [None, None]
        assert ctx.stats.masked == {"history": 1}

    def test_path_selector_with_filter(self, make_ctx):
        """Only the identifier whose system is the SSN system is selected by the path rule."""
        doc = {
            "practice_id": "A",
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
                {"system": "urn:mrn", "value": "MRN-1"},
            ],
        }
        out = run(make_ctx(), doc)
        assert [i["value"] for i in out["identifier"]] == ["***-**-6789", "MRN-1"]


class TestKeyNormalization:
    @pytest.mark.parametrize(
        "raw_key",
        [
            rb'"\u0073sn"',
            b'"SSN"',
            b'"Ssn"',
            '"\uff33\uff33\uff2e"'.encode(),
            b'"Social-Security-Number"',
        ],
    )
    def test_key_spellings_all_match(self, make_ctx, raw_key):
        """Escaped, upper-case, mixed-case, full-width and separator variants are selected."""
        body = b'{"practice_id": "A", ' + raw_key + b': "123-45-6789"}'
        out = run(make_ctx(), body)
        assert "123-45-6789" not in orjson.dumps(out).decode()


class TestUnsafeBodies:
    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"ssn": "1", "ssn": "phi1.x"}', "duplicate_key"),
            (b'{"a": {"ssn": 1, "b": 2, "ssn": 3}}', "duplicate_key"),
            (b'{"ssn": "\xff"}', "invalid_utf8"),
            (b'{"ssn": "\\ud800"}', "invalid_utf8"),
            (b'{"ssn": NaN}', "invalid_json"),
            (b'{"ssn": Infinity}', "invalid_json"),
            (b'{"ssn": "1",}', "invalid_json"),
        ],
    )
    def test_unsafe_body_raises(self, make_ctx, body, reason):
        """Bodies that readers could see differently are refused with a reason code."""
        with pytest.raises(UnsafeBody) as info:
            transform_response(body, JSON, make_ctx())
        assert info.value.reason == reason
        assert body.decode("latin-1") not in str(info.value)

    def test_duplicate_hidden_behind_escaped_colon_is_found(self, make_ctx):
        r"""The exact fallback catches duplicates when a \u003a escape could mask the count."""
        body = b'{"ssn": "a\\u003ab", "ssn": "x"}'
        with pytest.raises(UnsafeBody, match="duplicate_key"):
            transform_response(body, JSON, make_ctx())

    def test_escaped_colon_without_duplicates_passes(self, make_ctx):
        """An escaped colon alone is not mistaken for a duplicate key."""
        body = b'{"ssn": "a\\u003ab", "practice_id": "A"}'
        out = run(make_ctx(Grants.of(("A", "ssn"))), body)
        assert out["ssn"] == "a:b"

    @pytest.mark.parametrize("depth", [65, 300, 10_000])
    def test_deep_nesting_is_refused(self, make_ctx, depth):
        """Nesting beyond max_depth (or any parser limit) is refused, never half-processed."""
        body = b'{"ssn":' * depth + b'"1"' + b"}" * depth
        with pytest.raises(UnsafeBody, match="too_deep"):
            transform_response(body, JSON, make_ctx())

    def test_integer_beyond_64_bits_is_kept_exactly_when_rewriting(self, make_ctx):
        """A huge integer beside a masked value comes back digit for digit (never a float)."""
        body = b'{"n": 123456789012345678901234567890, "ssn": "1"}'
        out = transform_response(body, JSON, make_ctx())
        assert out == b'{"n": 123456789012345678901234567890, "ssn": "[redacted]"}'
        ok = b'{"n": 123456789012345678901234567890, "ssn": "1", "practice_id": "A"}'
        assert transform_response(ok, JSON, make_ctx(Grants.of(("A", "ssn")))) is ok


class TestUnchangedBodies:
    def test_body_without_phi_is_returned_as_is(self, make_ctx):
        """No token and no selected key: the very same bytes object comes back."""
        body = b'{ "name" : "x",\n "list": [1, 2.50, "y"] }'
        assert transform_response(body, JSON, make_ctx()) is body

    def test_authorized_plaintext_leaves_bytes_identical(self, make_ctx):
        """Selected plaintext the caller may see is kept without re-serialization."""
        body = b'{"practice_id":"A",  "ssn": "123-45-6789"}'
        assert transform_response(body, JSON, make_ctx(Grants.of(("A", "ssn")))) is body

    def test_json_suffix_types_are_walked(self, make_ctx, keyring):
        """application/fhir+json is JSON too."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        out = transform_response(orjson.dumps({"ssn": token}), "application/fhir+json", make_ctx())
        assert orjson.loads(out) == {"ssn": "***-**-6789"}


class TestRecordIds:
    """The audited record id follows `record.id_keys` order, not the object's."""

    def test_config_order_picks_the_id(self, make_ctx, keyring):
        token = keyring.encrypt("A", "ssn", "555-44-3333")
        for doc in (
            {"id": "enc-77", "patient_id": "p-1042", "practice_id": "A", "ssn": token},
            {"patient_id": "p-1042", "id": "enc-77", "practice_id": "A", "ssn": token},
        ):
            ctx = make_ctx(Grants.of(("A", "ssn")))
            run(ctx, doc)
            assert ctx.stats.disclosures == {("A", "p-1042"): {"ssn"}}

    def test_an_unusable_first_id_falls_back_to_the_next(self, make_ctx, keyring):
        token = keyring.encrypt("A", "ssn", "555-44-3333")
        ctx = make_ctx(Grants.of(("A", "ssn")))
        run(ctx, {"id": "enc-77", "patient_id": None, "practice_id": "A", "ssn": token})
        assert ctx.stats.disclosures == {("A", "enc-77"): {"ssn"}}
