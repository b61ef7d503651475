"""The `scim:` section and its secret fail closed.

A config that would expose the listener or grant nothing is refused at load; a weak or exposed
secret at start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from blackbox_env import base_config
from scim_helpers import SECRET, scim_overrides

from keys.errors import ConfigError
from proxy.scim.secret import ScimSecret, ScimSecretError, load_secret
from proxy.scim.settings import ScimSettings
from proxy.settings import config_warnings, load_settings
from tests.cli_process import run_cli_async

PHI_PROXY = Path(sys.executable).parent / "phi-proxy"


def _write(tmp_path: Path, scim: dict, **sections: dict) -> Path:
    config = base_config("http://127.0.0.1:9")
    config.update(sections)
    config["scim"] = scim
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class TestScimSettings:
    def test_off_by_default(self, tmp_path):
        """Without a scim section nothing listens and no secret is needed."""
        config = base_config("http://127.0.0.1:9")
        path = tmp_path / "proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        assert load_settings(path).scim.enabled is False

    def test_enabled_needs_exactly_one_secret_source_and_an_issuer(self, tmp_path):
        """Enabled with no secret, or with no issuer, is refused naming the setting."""
        with pytest.raises(ConfigError, match=r"scim\.secret_file"):
            load_settings(_write(tmp_path, {"enabled": True, "issuer": "https://idp"}))
        with pytest.raises(ConfigError, match=r"scim\.issuer"):
            load_settings(_write(tmp_path, {"enabled": True, "secret_env": "X"}))

    def test_scim_port_apart_from_the_client_port(self, tmp_path):
        """scim.port equal to listen.port on overlapping hosts is refused."""
        scim = scim_overrides(tmp_path)["scim"] | {"port": 8080}
        with pytest.raises(ConfigError, match=r"scim\.port and listen\.port"):
            load_settings(_write(tmp_path, scim, listen={"port": 8080}))

    def test_group_ttl_longer_than_max_ttl_is_refused(self, tmp_path):
        """A mapped group whose grants grants.max_ttl would refuse is a config error."""
        scim = scim_overrides(tmp_path)["scim"]
        scim["groups"] = {"Staff": {"practice": "practice-a", "ttl": "100d"}}
        with pytest.raises(ConfigError, match=r"longer than grants\.max_ttl"):
            load_settings(_write(tmp_path, scim))

    def test_secret_in_clear_off_host_is_warned(self, tmp_path):
        """A SCIM listener on a network address without TLS draws a config warning."""
        scim = scim_overrides(tmp_path)["scim"] | {"host": "0.0.0.0"}  # noqa: S104
        warnings = config_warnings(load_settings(_write(tmp_path, scim)))
        assert any("scim.host is 0.0.0.0 without scim.tls" in w for w in warnings)


class TestScimSecret:
    def test_env_secret_matches_only_the_exact_bearer(self, monkeypatch):
        """The env secret authenticates `Bearer <secret>` and nothing else; repr hides it."""
        monkeypatch.setenv("PHI_TEST_SCIM", SECRET)
        secret = load_secret(ScimSettings(enabled=True, secret_env="PHI_TEST_SCIM", issuer="i"))
        assert secret.matches(f"Bearer {SECRET}")
        assert secret.matches(f"bearer {SECRET}")
        for wrong in (None, SECRET, f"Bearer {SECRET}x", "Bearer ", f"Basic {SECRET}"):
            assert not secret.matches(wrong)
        assert SECRET not in repr(secret)

    def test_short_or_missing_secret_is_refused(self, monkeypatch):
        """Under 32 characters, or an unset variable, stops the start with the fix."""
        monkeypatch.setenv("PHI_TEST_SCIM", "short")
        with pytest.raises(ScimSecretError, match="head -c 32 /dev/urandom"):
            load_secret(ScimSettings(enabled=True, secret_env="PHI_TEST_SCIM", issuer="i"))
        monkeypatch.delenv("PHI_TEST_SCIM")
        with pytest.raises(ScimSecretError, match="is not set"):
            load_secret(ScimSettings(enabled=True, secret_env="PHI_TEST_SCIM", issuer="i"))

    def test_secret_file_readable_by_others_is_refused(self, tmp_path):
        """A 0640 secret file is refused: others could grant themselves access."""
        path = tmp_path / "scim.secret"
        path.write_text(SECRET)
        path.chmod(0o640)
        settings = ScimSettings(enabled=True, secret_file=path, issuer="i")
        with pytest.raises(ScimSecretError, match="chmod 600"):
            load_secret(settings)
        path.chmod(0o600)
        assert isinstance(load_secret(settings), ScimSecret)


class TestCheckConfig:
    async def test_check_config_lists_groups_the_idp_sent_that_nothing_maps(self, scim_env):
        """After the IdP pushes an unmapped group, check-config names it in a warning."""
        env, scim = scim_env
        await scim.create_group("Cafeteria")
        await scim.create_group("Lakeside staff")
        result = await run_cli_async(
            [str(PHI_PROXY), "check-config", "-c", str(env.config_path)], text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "SCIM group(s) 'Cafeteria' that scim.groups does not map" in result.stderr
        assert "Lakeside staff" not in result.stderr
        assert (
            "scim:          127.0.0.1:0/scim/v2, users are https://idp.test.invalid|<externalId>"
            in (result.stdout)
        )

    async def test_the_access_review_lists_groups_the_idp_sent_that_nothing_maps(self, scim_env):
        """`phi-grants review` names them too (text and JSON); they are no finding."""
        env, scim = scim_env
        await scim.create_group("Cafeteria")
        await scim.create_group("Lakeside staff")
        review = [str(PHI_PROXY.with_name("phi-grants")), "-c", str(env.config_path), "review"]
        text, as_json = [
            await run_cli_async(command, text=True, timeout=60)
            for command in (review, [*review, "--json"])
        ]
        assert "scim.groups does not map: 'Cafeteria'." in text.stdout, text.stderr
        assert json.loads(as_json.stdout)["scim_unmapped_groups"] == ["Cafeteria"]
        codes = [f["code"] for f in json.loads(as_json.stdout)["findings"]]
        assert not [code for code in codes if code.startswith("scim_")]
