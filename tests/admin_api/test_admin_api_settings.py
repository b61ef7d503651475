"""The `admin_api:` section fails closed: off by default, never sharing a port, warnings loud."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
import yaml
from blackbox_env import base_config, write_env_files

from keys.errors import ConfigError
from proxy.admin_api.auth import has_role
from proxy.settings import config_warnings, load_settings
from tests.cli_process import run_cli

if TYPE_CHECKING:
    from pathlib import Path


def _write(tmp_path: Path, admin_api: dict | None, **sections: dict) -> Path:
    config = base_config("http://127.0.0.1:9")
    config.update(sections)
    if admin_api is not None:
        config["admin_api"] = admin_api
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class TestAdminApiSettings:
    def test_off_by_default(self, tmp_path):
        """Without an admin_api section nothing listens."""
        assert load_settings(_write(tmp_path, None)).admin_api.enabled is False

    @pytest.mark.parametrize(
        ("sections", "setting"),
        [
            ({"listen": {"port": 9091}}, "listen.port"),
            ({"admin": {"port": 9091}}, "admin.port"),
        ],
    )
    def test_a_port_shared_with_another_listener_is_refused(self, tmp_path, sections, setting):
        """The admin API on the client or health port would be reachable by their callers."""
        with pytest.raises(ConfigError, match=rf"admin_api\.port and {setting}"):
            load_settings(_write(tmp_path, {"enabled": True, "port": 9091}, **sections))

    def test_a_port_shared_with_scim_is_refused(self, tmp_path):
        """Nor may it share the SCIM listener's port."""
        (tmp_path / "s").write_text("x" * 40)
        scim = {"enabled": True, "port": 9444, "secret_file": "./s", "issuer": "https://i"}
        with pytest.raises(ConfigError, match=r"admin_api\.port and scim\.port"):
            load_settings(_write(tmp_path, {"enabled": True, "port": 9444}, scim=scim))

    @pytest.mark.parametrize("claim", ["", "realm_access.", ".roles"])
    def test_a_role_claim_that_is_not_a_path_is_refused(self, tmp_path, claim):
        """An empty claim or empty path part would never match: refused at load."""
        with pytest.raises(ConfigError, match=r"role_claim"):
            load_settings(_write(tmp_path, {"enabled": True, "role_claim": claim}))

    def test_network_address_without_tls_is_warned_about(self, tmp_path):
        """Admin tokens in clear text over the network: check-config and serve warn."""
        settings = load_settings(_write(tmp_path, {"enabled": True, "host": "0.0.0.0"}))  # noqa: S104
        assert any("admin_api.host is 0.0.0.0 without admin_api.tls" in w
                   for w in config_warnings(settings))  # fmt: skip
        loopback = load_settings(_write(tmp_path, {"enabled": True}))
        assert not any("admin_api" in w for w in config_warnings(loopback))


class TestRoleClaim:
    @pytest.mark.parametrize(
        ("claims", "expected"),
        [
            ({"roles": ["reader", "phi-admin"]}, True),
            ({"roles": "phi-admin"}, True),
            ({"roles": "phi-admin reader"}, False),  # one string is one role, not a list
            ({"roles": ["PHI-ADMIN"]}, False),  # exact match only
            ({"roles": [["phi-admin"]]}, False),
            ({"roles": {"phi-admin": True}}, False),
            ({}, False),
        ],
    )
    def test_only_the_exact_role_in_the_claim_counts(self, claims, expected):
        """The role is the claim's string or one element of its list, compared exactly."""
        assert has_role(claims, "roles", "phi-admin") is expected

    def test_a_dotted_path_reads_nested_claims(self):
        """realm_access.roles (Keycloak) is read through the nested object."""
        claims = {"realm_access": {"roles": ["phi-admin"]}, "roles": []}
        assert has_role(claims, "realm_access.roles", "phi-admin")
        assert not has_role({"realm_access": ["phi-admin"]}, "realm_access.roles", "phi-admin")


class TestCheckConfig:
    def test_check_config_names_the_listener_and_who_is_an_admin(self, tmp_path):
        """The summary line says where the API listens and which claim makes an admin."""
        section = {"enabled": True, "port": 9091, "role_claim": "groups", "role": "phi-admin"}
        config_path, _settings, _issuer = write_env_files(
            tmp_path, "http://127.0.0.1:9", overrides={"admin_api": section}
        )
        out = run_cli(
            [sys.executable, "-m", "proxy", "check-config", "-c", str(config_path)],
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert (
            "admin api:     http://127.0.0.1:9091/api/v1, admins: tokens for audience "
            "phi-proxy-tests whose groups holds 'phi-admin'"
        ) in out.stdout
