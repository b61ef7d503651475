"""The `admin_api.console:` section: off by default, and each mistake refused with the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from keys.errors import ConfigError
from proxy.admin_api.settings import AdminApiSettings
from proxy.console.app import read_client_secret
from proxy.console.settings import ConsoleSettings

OIDC = {
    "authorization_endpoint": "https://login.example.org/authorize",
    "token_endpoint": "https://login.example.org/token",
    "client_id": "phi-proxy-console",
    "redirect_uri": "https://phi-admin.example.org/console/callback",
}


def _api(console: dict, *, enabled: bool = True) -> AdminApiSettings:
    return AdminApiSettings.model_validate({"enabled": enabled, "console": console})


def test_the_console_is_off_by_default():
    assert AdminApiSettings().console.enabled is False
    assert ConsoleSettings().session_minutes == 60


def test_a_complete_section_loads_and_check_config_names_the_console():
    api = _api({"enabled": True, "oidc": OIDC})
    assert api.console.oidc is not None
    assert api.console.oidc.origin == "https://phi-admin.example.org"
    assert api.console.oidc.scopes == ("openid",)
    assert "console at https://phi-admin.example.org/console/" in api.describe("aud")


@pytest.mark.parametrize(
    ("console", "enabled", "says"),
    [
        ({"enabled": True}, True, "console.oidc is missing"),
        ({"enabled": True, "oidc": OIDC}, False, "admin_api.enabled is false"),
        (
            {"enabled": True, "oidc": {**OIDC, "redirect_uri": "http://10.0.0.5/console/callback"}},
            True,
            "plain http",
        ),
        (
            {"enabled": True, "oidc": {**OIDC, "redirect_uri": "https://a.example.org/cb"}},
            True,
            "must end in /console/callback",
        ),
        (
            {"enabled": True, "oidc": {**OIDC, "token_endpoint": "http://idp.example.org/t"}},
            True,
            "plain http",
        ),
        ({"enabled": True, "oidc": {**OIDC, "scopes": ["profile"]}}, True, "must include openid"),
        ({"enabled": True, "oidc": {**OIDC, "client_id": ""}}, True, "client_id"),
        ({"enabled": True, "oidc": OIDC, "session_minutes": 0}, True, "session_minutes"),
        ({"enabled": True, "oidc": {**OIDC, "extra": 1}}, True, "extra"),
    ],
)
def test_a_mistake_is_refused_saying_what_to_fix(console, enabled, says):
    with pytest.raises(ValidationError) as caught:
        _api(console, enabled=enabled)
    assert says in str(caught.value)


def test_http_is_accepted_for_this_machine_only():
    local = {**OIDC, "redirect_uri": "http://127.0.0.1:9091/console/callback"}
    api = _api({"enabled": True, "oidc": local})
    assert api.console.oidc is not None
    assert api.console.oidc.origin == "http://127.0.0.1:9091"


def _with_secret(path) -> ConsoleSettings:
    return ConsoleSettings.model_validate(
        {"enabled": True, "oidc": {**OIDC, "client_secret_file": str(path)}}
    )


def test_the_client_secret_file_is_read_once_and_must_be_private(tmp_path):
    secret = tmp_path / "console-secret"
    with pytest.raises(ConfigError, match="cannot be read"):
        read_client_secret(_with_secret(secret))
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        read_client_secret(_with_secret(secret))
    secret.write_text("s3cret-from-the-idp\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_client_secret(_with_secret(secret))
    secret.chmod(0o600)
    assert read_client_secret(_with_secret(secret)) == "s3cret-from-the-idp"
    assert read_client_secret(ConsoleSettings.model_validate({"oidc": OIDC})) is None
