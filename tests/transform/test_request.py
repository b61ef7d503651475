import orjson
import pytest

from proxy.transform import RequestRejected, RouteTable, SealContext, encrypt_request
from proxy.transform.settings import WriteRoutesSettings
from proxy.transform.testing import EVERY_GRANT

ROUTES = RouteTable.compile(
    WriteRoutesSettings.model_validate(
        [
            {
                "method": "post",
                "path": "/api/practices/{practice_id}/patients",
                "practice_from": {"path_param": "practice_id"},
            },
            {
                "method": "POST",
                "path": "/api/bookings",
                "practice_from": {"body_key": "practice_id"},
            },
        ]
    )
)
PATIENTS_A = ROUTES.match_route("POST", "/api/practices/A/patients")


@pytest.fixture
def seal(policy, keyring):
    """A fresh SealContext."""
    return SealContext(policy, keyring, access=EVERY_GRANT)


class TestRouteTable:
    def test_templates_match_segment_by_segment(self):
        """Parameters take one non-empty segment; anything else is not a write route."""
        assert PATIENTS_A is not None
        assert PATIENTS_A.params == {"practice_id": "A"}
        for method, path in [
            ("GET", "/api/practices/A/patients"),
            ("POST", "/api/practices//patients"),
            ("POST", "/api/practices/A/patients/"),
            ("POST", "/API/practices/A/patients"),
            ("POST", "api/bookings"),
        ]:
            assert ROUTES.match_route(method, path) is None


class TestWriteRoutes:
    def test_selected_fields_are_encrypted_for_the_route_practice(self, seal, keyring):
        """Every selected value leaves as a token that opens to the input under practice A."""
        body = orjson.dumps({"name": "x", "SSN": "123-45-6789", "history": ["flu", 3]})
        out = orjson.loads(encrypt_request(body, "application/json", PATIENTS_A, seal))
        assert out["name"] == "x"
        opened = keyring.open(out["SSN"])
        assert (opened.practice, opened.field_class, opened.plaintext) == (
            "A",
            "ssn",
            "123-45-6789",
        )
        assert out["SSN"].startswith("phi1.d.")  # ssn is deterministic
        assert [keyring.open(t).plaintext for t in out["history"]] == ["flu", "3"]
        assert seal.stats.encrypted == {"ssn": 1, "history": 2}

    def test_practice_from_body_key(self, seal, keyring):
        """The practice may come from a top-level body key."""
        route = ROUTES.match_route("POST", "/api/bookings")
        body = b'{"practice_id": "B", "member_id": "INS-1"}'
        out = orjson.loads(encrypt_request(body, "application/json", route, seal))
        assert keyring.open(out["member_id"]).practice == "B"

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/practices/Z/patients", b'{"ssn": "1"}'),
            ("/api/bookings", b'{"ssn": "1"}'),
            ("/api/bookings", b'{"practice_id": "A", "Practice-Id": "B", "ssn": "1"}'),
        ],
    )
    def test_unknown_or_missing_practice_is_422(self, seal, path, body):
        """No usable practice → 422, and the message does not echo values."""
        with pytest.raises(RequestRejected) as info:
            encrypt_request(body, "application/json", ROUTES.match_route("POST", path), seal)
        assert info.value.status == 422
        assert "'Z'" not in info.value.message
        assert "nothing was forwarded" in info.value.message

    def test_foreign_token_is_422(self, seal, keyring):
        """A token of another practice (or class) in a selected field is refused."""
        for token in (keyring.encrypt("B", "ssn", "1"), keyring.encrypt("A", "history", "1")):
            body = orjson.dumps({"ssn": token})
            with pytest.raises(RequestRejected) as info:
                encrypt_request(body, "application/json", PATIENTS_A, seal)
            assert info.value.status == 422

    def test_own_token_passes_unchanged(self, seal, keyring):
        """A token that already belongs to the practice and class is forwarded as is."""
        body = orjson.dumps({"ssn": keyring.encrypt("A", "ssn", "1")})
        assert encrypt_request(body, "application/json", PATIENTS_A, seal) is body

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
            None,
        ],
    )
    def test_non_json_bodies_are_415(self, seal, content_type):
        """Forms and every other type are refused on write routes."""
        with pytest.raises(RequestRejected) as info:
            encrypt_request(b"ssn=123-45-6789", content_type, PATIENTS_A, seal)
        assert info.value.status == 415
        assert "123" not in info.value.message

    def test_duplicate_keys_are_400(self, seal):
        """A body with duplicate keys could hide plaintext from us: refused."""
        body = b'{"ssn": "123-45-6789", "ssn": null}'
        with pytest.raises(RequestRejected) as info:
            encrypt_request(body, "application/json", PATIENTS_A, seal)
        assert info.value.status == 400


class TestOtherRoutes:
    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/json", b'{"patient": {"Ssn": "123-45-6789"}}'),
            (None, b'{"ssn": "123-45-6789"}'),
            ("application/x-www-form-urlencoded", b"a=1&patient[ssn]=123-45-6789"),
            ("application/x-www-form-urlencoded", b"a=1;ssn=123-45-6789"),
        ],
    )
    def test_plaintext_phi_on_other_routes_is_422(self, seal, content_type, body):
        """Plaintext in a selected field on a route that does not encrypt is refused."""
        with pytest.raises(RequestRejected) as info:
            encrypt_request(body, content_type, None, seal)
        assert info.value.status == 422
        assert "123" not in info.value.message

    def test_tokens_and_other_fields_pass(self, seal, keyring):
        """Tokens and unselected fields pass untouched on other routes."""
        body = orjson.dumps({"ssn": keyring.encrypt("B", "ssn", "1"), "name": "x"})
        assert encrypt_request(body, "application/json", None, seal) is body
        assert encrypt_request(b"user=x&pw=y", "application/x-www-form-urlencoded", None, seal)

    @pytest.mark.parametrize(
        "body",
        [
            b'{"ssn": "123-45-6789", "ssn": 1}',
            b'{"ssn": "123-45-6789", "n": NaN}',
        ],
    )
    def test_unparseable_json_looking_body_naming_phi_is_refused(self, seal, body):
        """An undeclared JSON-looking body that names a PHI key but cannot be checked is refused."""
        with pytest.raises(RequestRejected) as info:
            encrypt_request(body, "text/plain", None, seal)
        assert info.value.status == 400
        assert "123" not in info.value.message

    def test_json_looking_text_without_phi_keys_passes(self, seal):
        """Text that merely starts like JSON and names no PHI key is forwarded untouched."""
        body = b"{not json, just notes"
        assert encrypt_request(body, "text/plain", None, seal) is body


class TestSelectedObjects:
    """A selected object's keys would reach the portal in clear: refused."""

    @pytest.mark.parametrize(
        "doc",
        [
            {"ssn": {"900-55-4321": None}},
            {"name": "Ada", "history": {"HIV positive": True, "hepatitis C": "2019"}},
            {"history": ["flu", {"HIV positive": None}]},
        ],
    )
    @pytest.mark.parametrize("route", [PATIENTS_A, None], ids=["write", "other"])
    def test_refused_on_every_route(self, seal, doc, route):
        with pytest.raises(RequestRejected) as info:
            encrypt_request(orjson.dumps(doc), "application/json", route, seal)
        assert info.value.status == 422
        assert info.value.reason in {  # whichever value the walk meets first
            "plaintext_key_in_selected_object",
            "plaintext_outside_write_route",
        }
        assert "HIV" not in info.value.message
        assert "900" not in info.value.message

    def test_empty_objects_and_unselected_objects_pass(self, seal, keyring):
        body = orjson.dumps({"history": {}, "insurance": {"member_id": "M-1", "payer": "X"}})
        out = orjson.loads(encrypt_request(body, "application/json", PATIENTS_A, seal))
        assert out["history"] == {}
        assert out["insurance"]["payer"] == "X"
        assert keyring.open(out["insurance"]["member_id"]).plaintext == "M-1"
