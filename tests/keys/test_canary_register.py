"""The canary register and `phi-keys canary`: issue, list, show, remove, against real files."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.canary_register import (
    SEAL_CLASS,
    CanaryRegisterError,
    parse_register,
    unseal_field,
)
from keys.cli import main
from keys.cli_canary import parse_field_spec
from keys.errors import ConfigError
from tests.keys.canary_helpers import (
    CONFIG,
    MEMBER,
    SSN,
    audit_actions,
    issue,
    keyring_of,
    make_config,
    register_of,
)

_PATH = Path("/nonexistent/register.json")


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


class TestIssue:
    def test_tokens_are_made_by_the_proxy_encryption_path(self, config, capsys):
        """A deterministic class gives exactly the token the proxy would store; both open."""
        _, tokens = issue(config, capsys, f"ssn={SSN}", f"insurance_id={MEMBER}")
        keyring = keyring_of(config)
        assert tokens["ssn"] == keyring.encrypt("practice-a", "ssn", SSN, deterministic=True)
        assert tokens["insurance_id"].startswith("phi1.r.")  # not deterministic in the config
        assert keyring.open(tokens["insurance_id"]).plaintext == MEMBER
        assert keyring.open(tokens["ssn"]).field_class == "ssn"

    def test_values_from_stdin_one_line_per_bare_field(self, config, capsys, monkeypatch):
        """Bare --field values come from stdin in order, so they stay out of the process list."""
        import io

        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f"{SSN}\n".encode())))
        _, tokens = issue(config, capsys, "ssn", f"insurance_id={MEMBER}")
        assert keyring_of(config).open(tokens["ssn"]).plaintext == SSN

    def test_register_file_is_private_and_reveals_no_token_or_value(self, config, capsys):
        """0600, and neither the canary's tokens nor its values appear in the file."""
        canary_id, tokens = issue(config, capsys, f"ssn={SSN}", f"insurance_id={MEMBER}")
        path = register_of(config).path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        for secret in (*tokens.values(), SSN, MEMBER):
            assert secret not in text
        (entry,) = register_of(config).read()
        assert entry.canary_id == canary_id
        opened = {
            f.field_class: unseal_field(keyring_of(config), "practice-a", f) for f in entry.fields
        }
        assert opened == tokens
        assert all(f".{SEAL_CLASS}." in f.sealed for f in entry.fields)

    def test_issue_is_audited_with_ids_and_classes_never_values(self, config, capsys):
        """The key_change event names the canary and its classes; the label and values stay out."""
        canary_id, _ = issue(config, capsys, f"ssn={SSN}", label="Jane Roe, chart 4711")
        event = audit_actions(config)[-1]
        assert (event["action"], event["details"]["canary_id"]) == ("canary", canary_id)
        assert event["details"]["field_classes"] == ["ssn"]
        text = (config.parent / "audit.jsonl").read_text()
        assert SSN not in text
        assert "Jane Roe" not in text

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            (["nosuch=1"], "not defined under fields.classes"),
            (["ssn="], "empty"),
            (["ssn=1", "ssn=2"], "each class at most once"),
            (["ssn=phi1.d.0123456789abcdef.ssn.AAAA"], "not a token"),
            (["SSN=1"], "not a field class name"),
        ],
    )
    def test_bad_fields_issue_nothing(self, config, capsys, fields, message):
        """Each mistake exits 2 with the fix, and the register stays as it was."""
        args = ["-c", str(config), "canary", "--practice", "practice-a"]
        for spec in fields:
            args += ["--field", spec]
        assert main(args) == 2
        assert message in capsys.readouterr().err
        assert register_of(config).read() == ()

    def test_config_without_fields_section_is_refused(self, tmp_path, capsys):
        """A keys-only config cannot say how classes are encrypted: exit 2, nothing issued."""
        path = tmp_path / "keys-only.yaml"
        path.write_text(CONFIG.split("fields:", maxsplit=1)[0])
        assert main(["-c", str(path), "init", "--generate-kek", str(tmp_path / "kek.b64")]) == 0
        assert main(["-c", str(path), "add-practice", "practice-a"]) == 0
        capsys.readouterr()
        status = main(["-c", str(path), "canary", "--practice", "practice-a", "--field", "ssn=1"])
        assert status == 2
        assert "no `fields:` section" in capsys.readouterr().err


class TestListShowRemove:
    def test_list_shows_ids_and_classes_never_tokens(self, config, capsys):
        """--list (table and JSON) names each canary, never its tokens; it is not audited."""
        canary_id, tokens = issue(config, capsys, f"ssn={SSN}")
        before = len(audit_actions(config))
        assert main(["-c", str(config), "canary", "--list"]) == 0
        table = capsys.readouterr().out
        assert canary_id in table
        assert "ssn" in table
        assert "night shift test" in table
        assert main(["-c", str(config), "canary", "--list", "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert (row["id"], row["practice"], row["classes"]) == (canary_id, "practice-a", ["ssn"])
        assert tokens["ssn"] not in table + json.dumps(row)
        assert len(audit_actions(config)) == before

    def test_show_prints_the_tokens_again(self, config, capsys):
        """--show ID prints the same tokens as at issue (for planting later)."""
        canary_id, tokens = issue(config, capsys, f"ssn={SSN}", f"insurance_id={MEMBER}")
        assert main(["-c", str(config), "canary", "--show", canary_id]) == 0
        out = capsys.readouterr().out
        assert tokens["ssn"] in out
        assert tokens["insurance_id"] in out

    def test_remove_without_force_changes_nothing(self, config, capsys):
        """--remove alone says what it would remove and exits 1; the register keeps it."""
        canary_id, _ = issue(config, capsys, f"ssn={SSN}")
        before = len(audit_actions(config))
        assert main(["-c", str(config), "canary", "--remove", canary_id]) == 1
        assert "--force" in capsys.readouterr().err
        assert [e.canary_id for e in register_of(config).read()] == [canary_id]
        assert len(audit_actions(config)) == before

    def test_remove_with_force_removes_only_that_canary_and_is_audited(self, config, capsys):
        """--remove ID --force drops that entry, keeps the others, and records the removal."""
        first, _ = issue(config, capsys, f"ssn={SSN}")
        second, _ = issue(config, capsys, f"insurance_id={MEMBER}")
        assert main(["-c", str(config), "canary", "--remove", first, "--force"]) == 0
        assert [e.canary_id for e in register_of(config).read()] == [second]
        assert audit_actions(config)[-1]["details"]["remove"] == first

    def test_unknown_id_is_an_error(self, config, capsys):
        """Removing or showing an id the register lacks exits 1 and says how to find ids."""
        assert main(["-c", str(config), "canary", "--remove", "c_0123456789abcdef"]) == 1
        assert "--list" in capsys.readouterr().err

    def test_loose_register_is_refused(self, config, capsys):
        """A register others may write could silence the tripwire: refused, with the chmod."""
        issue(config, capsys, f"ssn={SSN}")
        register_of(config).path.chmod(0o666)
        assert main(["-c", str(config), "canary", "--list"]) == 1
        assert "chmod 600" in capsys.readouterr().err


class TestParsing:
    @given(st.binary(max_size=300))
    @settings(max_examples=200, deadline=None)
    def test_any_bytes_parse_or_raise_the_register_error(self, data):
        """Arbitrary file content gives entries or CanaryRegisterError, never another error."""
        with contextlib.suppress(CanaryRegisterError):
            parse_register(data, _PATH)

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=12,
        )
    )
    @settings(max_examples=200, deadline=None)
    def test_any_json_inside_a_register_parses_or_raises(self, entry):
        """A register whose entry is any JSON value: entries or CanaryRegisterError."""
        doc = {"format": "phi-proxy-canary-register", "version": 1, "canaries": [entry]}
        with contextlib.suppress(CanaryRegisterError):
            parse_register(json.dumps(doc).encode(), _PATH)

    @given(st.text(max_size=40))
    def test_field_specs_parse_or_raise_config_error(self, spec):
        """`--field` text gives (class, value) or ConfigError; the value keeps every `=`."""
        try:
            field_class, value = parse_field_spec(spec)
        except ConfigError:
            return
        assert spec == (field_class if value is None else f"{field_class}={value}")
