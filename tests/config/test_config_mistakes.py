"""Config mistakes that must be refused or named, never passed silently.

Each test writes a real config beside a real KEK, keystore and JWKS (the demo's workspace) and
runs the real loader or `phi-proxy check-config` (in this process, `proxy.cli.main`).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from keys.config_file import load_section, read_config_mapping
from keys.errors import ConfigError
from keys.settings import KeySettings
from proxy.cli import main
from proxy.demo.workspace import DemoPorts, create_workspace
from proxy.server_settings import HeaderSettings, UpstreamSettings
from proxy.settings import config_warnings, load_settings

PORTS = DemoPorts(proxy=28080, portal=28081, admin=29090)


@pytest.fixture
def workspace(tmp_path):
    """A KEK, keystore and JWKS, and the demo config (a mapping) that uses them."""
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    create_workspace(folder, PORTS)
    return folder


def config_of(folder):
    return yaml.safe_load((folder / "phi-proxy.yaml").read_text(encoding="utf-8"))


def write(folder, data, name="phi-proxy.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def check_config(path, capsys):
    status = main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def self_signed(folder, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


SECOND_SELECTORS = """\
  selectors:                # added later, in the same fields: section
    - {class: insurance_id, keys: [insurance_member_id]}
"""


class TestDuplicateKeys:
    def test_a_second_selectors_key_is_refused_naming_both_lines(self, workspace, capsys):
        """F1: a repeated `selectors:` no longer drops the first list; check-config exits 2."""
        path = workspace / "phi-proxy.yaml"
        text = path.read_text(encoding="utf-8")
        head, sep, tail = text.partition("write_routes:")
        path.write_text(head + SECOND_SELECTORS + sep + tail, encoding="utf-8")
        lines = path.read_text(encoding="utf-8").splitlines()
        first, second = (
            n + 1 for n, line in enumerate(lines) if line.split("#")[0].strip() == "selectors:"
        )
        status, out, err = check_config(path, capsys)
        assert status == 2
        assert "ok:" not in out
        assert (
            f"'selectors' appears twice in the same mapping (line {first} and line {second})" in err
        )
        assert "Merge the two" in err
        with pytest.raises(ConfigError, match="'selectors' appears twice"):
            load_settings(path)

    def test_every_loader_refuses_duplicates(self, workspace):
        """phi-keys / phi-grants / phi-audit read sections through the same strict loader."""
        path = workspace / "phi-proxy.yaml"
        text = path.read_text(encoding="utf-8")
        path.write_text(text + "keys: {keystore: ./other.json}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"'keys' appears twice .*line \d+ and line \d+"):
            load_section(path, "keys", KeySettings)

    def test_duplicates_in_a_flow_mapping_on_one_line(self, tmp_path):
        path = tmp_path / "c.yaml"
        path.write_text("fields: {classes: {ssn: {}, ssn: {mask: null}}}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"'ssn' appears twice .*\(line 1 and line 1\)"):
            read_config_mapping(path)

    def test_merge_keys_still_work_and_own_keys_override_them(self, workspace):
        """`<<: *anchor` keeps working; a key written beside it overrides the merged one."""
        path = workspace / "phi-proxy.yaml"
        text = path.read_text(encoding="utf-8")
        text = text.replace("listen:\n", "listen: &edge\n", 1)
        text = text.replace("admin:\n  host: 127.0.0.1\n", "admin:\n  <<: *edge\n", 1)
        assert "<<: *edge" in text
        path.write_text(text, encoding="utf-8")
        settings = load_settings(path)
        assert settings.admin.host == "127.0.0.1"
        assert settings.admin.port == PORTS.admin


class TestUpstreamTls:
    def test_tls_with_an_http_url_is_refused(self):
        """F5: upstream.tls on an http:// URL would be ignored; it is an error now."""
        with pytest.raises(ValidationError, match=r"upstream.tls is set but upstream.url is http"):
            UpstreamSettings.model_validate(
                {"url": "http://portal.internal:8443", "tls": {"ca_file": "ca.pem"}}
            )

    def test_tls_with_https_is_accepted(self):
        settings = UpstreamSettings.model_validate(
            {"url": "https://portal.internal:8443", "tls": {"ca_file": "ca.pem"}}
        )
        assert settings.tls is not None

    def test_check_config_reports_a_missing_ca_file(self, workspace, capsys):
        """F11: check-config builds the upstream TLS context, so a missing CA file is caught."""
        data = config_of(workspace)
        data["upstream"] = {"url": "https://127.0.0.1:28081", "tls": {"ca_file": "./ca.pem"}}
        status, out, err = check_config(write(workspace, data), capsys)
        assert status == 1
        assert "ok:" not in out
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert "upstream.tls.ca_file" in line
        assert "file not found" in line


class TestTrustedProxies:
    def test_host_bits_are_an_error_naming_the_intended_network(self):
        """F6: 10.0.0.1/0 no longer means 0.0.0.0/0; the message suggests 10.0.0.1/32."""
        with pytest.raises(ValidationError, match=r"write 10\.0\.0\.1/32 for this one address"):
            HeaderSettings.model_validate({"trusted_proxies": ["10.0.0.1/0"]})
        with pytest.raises(ValidationError, match=r"or 10\.0\.0\.0/24 for the whole subnet"):
            HeaderSettings.model_validate({"trusted_proxies": ["10.0.0.5/24"]})

    @pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0"])
    def test_prefix_length_zero_is_refused(self, network):
        with pytest.raises(ValidationError, match="trusts every address"):
            HeaderSettings.model_validate({"trusted_proxies": [network]})

    def test_networks_and_single_addresses_are_accepted(self):
        settings = HeaderSettings.model_validate(
            {"trusted_proxies": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}
        )
        assert [str(n) for n in settings.trusted_networks()] == [
            "10.0.0.0/8",
            "192.0.2.7/32",
            "2001:db8::/32",
        ]

    def test_check_config_shows_the_security_posture(self, workspace, capsys):
        """F6/F11: trusted_proxies, identity.require, audit, forward_authorization are shown."""
        data = config_of(workspace)
        data["headers"] = {"trusted_proxies": ["10.1.2.0/24"]}
        data["audit"] = {"on_failure": "allow"}
        status, out, _err = check_config(write(workspace, data), capsys)
        assert status == 0
        posture = out[out.index("security posture:") :]
        assert "trusted_proxies:       10.1.2.0/24" in posture
        assert "identity.require:      false" in posture
        assert "on_failure allow" in posture
        assert "forward_authorization: true" in posture
        assert "plain http on loopback" in posture


class TestListeners:
    def test_admin_on_the_listen_port_is_refused(self, workspace):
        """F11: admin.port == listen.port on overlapping hosts would serve admin to clients."""
        data = config_of(workspace)
        data["admin"] = {"host": "0.0.0.0", "port": PORTS.proxy}  # noqa: S104 - never bound
        with pytest.raises(ConfigError, match=r"admin.port and listen.port are both 28080"):
            load_settings(write(workspace, data))

    def test_same_port_on_different_addresses_is_allowed(self, workspace):
        data = config_of(workspace)
        data["admin"] = {"host": "127.0.0.2", "port": PORTS.proxy}
        assert load_settings(write(workspace, data)).admin.port == PORTS.proxy

    @pytest.mark.parametrize("section", ["listen", "admin"])
    def test_an_empty_host_is_refused(self, workspace, section):
        """Suspicion 6: '' binds every interface in asyncio; 0.0.0.0 must be written out."""
        data = config_of(workspace)
        data[section]["host"] = ""
        with pytest.raises(ConfigError, match=rf"{section}.host is empty.*write 0\.0\.0\.0"):
            load_settings(write(workspace, data))

    def test_check_config_reports_a_missing_listener_certificate(self, workspace, capsys):
        """F11: a listen.tls file that does not exist is one error line, not an ok."""
        data = config_of(workspace)
        data["listen"]["tls"] = {"cert_file": "./tls/proxy.crt", "key_file": "./tls/proxy.key"}
        status, out, err = check_config(write(workspace, data), capsys)
        assert status == 1
        assert "ok:" not in out
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert "listen.tls.cert_file" in line
        assert "file not found" in line

    def test_check_config_refuses_a_group_readable_listener_key(self, workspace, capsys):
        """Item 7: the listener's private key must be 0600 (or stricter)."""
        cert, key = self_signed(workspace, "proxy")
        key.chmod(0o640)
        data = config_of(workspace)
        data["listen"]["tls"] = {"cert_file": str(cert), "key_file": str(key)}
        status, _out, err = check_config(write(workspace, data), capsys)
        assert status == 1
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert "listener TLS private key is readable or writable by group or others" in line
        key.chmod(0o600)
        status, out, _err = check_config(write(workspace, data), capsys)
        assert status == 0, _err
        assert "(TLS)" in out


class TestPolicyWarnings:
    def test_an_empty_field_policy_with_write_routes_warns(self, workspace, capsys):
        """F11: fields: {} with write routes passes validation but encrypts nothing: warn."""
        data = config_of(workspace)
        data["fields"] = {}
        status, out, err = check_config(write(workspace, data), capsys)
        assert status == 0
        assert "ok:" in out
        assert "warning: fields.selectors is empty" in err
        assert "warning: write_routes lists 3 route(s) but no selector" in err

    def test_classes_no_selector_uses_warn(self, workspace, capsys):
        data = config_of(workspace)
        data["fields"]["selectors"] = [{"class": "insurance_id", "keys": ["member_id"]}]
        path = write(workspace, data)
        status, _out, err = check_config(path, capsys)
        assert status == 0
        assert "warning: fields.classes defines dob, history, ssn but no selector uses them" in err
        assert config_warnings(load_settings(path))

    def test_the_demo_config_has_no_warning(self, workspace):
        assert config_warnings(load_settings(workspace / "phi-proxy.yaml")) == []

    def test_plain_http_to_another_host_warns(self, workspace, capsys):
        data = config_of(workspace)
        data["upstream"]["url"] = "http://portal.internal:8000"
        status, out, err = check_config(write(workspace, data), capsys)
        assert status == 0
        assert "PLAIN HTTP to portal.internal" in out
        assert "warning: upstream.url is plain http to portal.internal" in err


class TestAuditFilesApart:
    @pytest.mark.parametrize(
        ("audit", "other"),
        [
            ({"path": "./kek.b64", "key_env": "PHI_AUDIT_KEY"}, "keys.kek.path"),
            ({"path": "keystore.json"}, "keys.keystore"),
            ({"key_file": "./keystore.json.lock"}, "keys.keystore"),
            ({"key_file": "./grants.sqlite3-wal"}, "grants.store"),
            ({"signing_key_file": "jwks.json"}, "identity.jwks_file"),
            ({"path": "./keystore.json.usage.json"}, "keys.usage_file"),
        ],
    )
    def test_an_audit_file_on_a_key_or_store_file_is_refused(self, workspace, audit, other):
        """F3: the trail would append JSON to the KEK, keystore, grant DB or JWKS."""
        data = config_of(workspace)
        data["audit"] = audit
        setting = "audit." + next(iter(k for k in audit if k != "key_env"))
        with pytest.raises(ConfigError, match=rf"{setting} \(.*\) is the same file as {other}"):
            load_settings(write(workspace, data))

    def test_a_symlink_to_the_kek_is_seen_through(self, workspace):
        (workspace / "trail.jsonl").symlink_to(workspace / "kek.b64")
        data = config_of(workspace)
        data["audit"] = {"path": "trail.jsonl"}
        with pytest.raises(ConfigError, match=r"audit.path .* is the same file as keys.kek.path"):
            load_settings(write(workspace, data))

    def test_the_default_audit_files_are_fine(self, workspace):
        settings = load_settings(workspace / "phi-proxy.yaml")
        assert settings.audit.path.name == "audit.jsonl"


class TestMergeKeys:
    """Merge keys cannot drop a block silently either."""

    FIELDS = 'fields:\n  classes:\n    ssn: {mask: {text: "[hidden]"}}\n    history: {mask: null}\n'

    @pytest.mark.parametrize(
        "merge",
        [
            (
                "  <<: {selectors: [{class: ssn, keys: [ssn]}]}\n"
                "  <<: {selectors: [{class: history, keys: [medical_history]}]}\n"
            ),
            (
                "  <<: [{selectors: [{class: ssn, keys: [ssn]}]},"
                " {selectors: [{class: history, keys: [medical_history]}]}]\n"
            ),
        ],
    )
    def test_two_merges_bringing_one_key_are_refused(self, tmp_path, merge):
        path = tmp_path / "proxy.yaml"
        path.write_text(self.FIELDS + merge)
        with pytest.raises(ConfigError, match="appears twice"):
            read_config_mapping(path)


class TestAuditKeyModes:
    """Docs audit: check-config passed a world-readable audit key that serve then refused."""

    def test_check_config_refuses_a_readable_audit_key(self, workspace, capsys):
        data = config_of(workspace)
        data["audit"] = {"key_file": "./audit.key"}
        path = write(workspace, data)
        key = workspace / "audit.key"
        key.write_text("A" * 43 + "=\n", encoding="ascii")
        key.chmod(0o644)
        status, _out, err = check_config(path, capsys)
        assert status == 1
        assert "audit.key_file" in err
        assert "chmod 600" in err
        key.chmod(0o600)
        status, _out, err = check_config(path, capsys)
        assert status == 0, err


class TestRootFilters:
    def test_a_malformed_root_filter_is_refused_naming_the_selector(self, workspace, capsys):
        data = config_of(workspace)
        data["fields"]["selectors"].append(
            {"class": "history", "path": "$.code", "root_filter": "resourceType == 'Condition'"}
        )
        number = len(data["fields"]["selectors"]) - 1
        status, out, err = check_config(write(workspace, data), capsys)
        assert status != 0
        assert f"selectors[{number}].root_filter" in out + err
        assert "starts with @" in out + err

    def test_a_root_filter_without_a_path_is_refused(self, workspace, capsys):
        data = config_of(workspace)
        data["fields"]["selectors"].append(
            {"class": "history", "keys": ["diagnosis"], "root_filter": "@.resourceType"}
        )
        status, out, err = check_config(write(workspace, data), capsys)
        assert status != 0
        assert "`root_filter` goes with a `path` selector" in out + err
