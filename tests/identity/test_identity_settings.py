import pytest
from pydantic import ValidationError

from keys.config_file import load_section
from keys.errors import ConfigError
from proxy.identity import IdentitySettings

BASE = {"issuers": ["https://login.example.test"], "audience": "phi-proxy"}


class TestIdentitySettings:
    def test_defaults(self, tmp_path):
        """Defaults: jwt mode, all three asymmetric algorithms, 30 s leeway, anonymous allowed."""
        settings = IdentitySettings.model_validate({**BASE, "jwks_file": str(tmp_path / "k")})
        assert settings.mode == "jwt"
        assert settings.algorithms == ("RS256", "ES256", "EdDSA")
        assert settings.leeway_seconds == 30
        assert settings.jwks_refresh_min_interval == 60
        assert settings.require is False
        assert settings.max_token_bytes == 8192

    @pytest.mark.parametrize("alg", ["HS256", "HS512", "none"])
    def test_symmetric_and_none_refused(self, tmp_path, alg):
        """HMAC algorithms and 'none' can never be configured."""
        with pytest.raises(ValidationError, match="refused"):
            IdentitySettings.model_validate(
                {**BASE, "jwks_file": str(tmp_path / "k"), "algorithms": ["ES256", alg]}
            )

    @pytest.mark.parametrize(
        "sources",
        [{}, {"jwks_file": "k.json", "jwks_url": "https://idp.test/jwks"}],
    )
    def test_exactly_one_jwks_source(self, sources):
        """Neither or both of jwks_file and jwks_url is a configuration error."""
        with pytest.raises(ValidationError, match="exactly one"):
            IdentitySettings.model_validate({**BASE, **sources})

    @pytest.mark.parametrize(
        ("url", "ok"),
        [
            ("https://idp.test/jwks", True),
            ("http://127.0.0.1:8080/jwks", True),
            ("http://localhost/jwks", True),
            ("http://idp.test/jwks", False),
            ("ftp://idp.test/jwks", False),
        ],
    )
    def test_jwks_url_must_be_https_except_localhost(self, url, ok):
        """Keys are downloaded over https only; plain http only from this machine."""
        if ok:
            assert IdentitySettings.model_validate({**BASE, "jwks_url": url}).jwks_url == url
        else:
            with pytest.raises(ValidationError, match="https"):
                IdentitySettings.model_validate({**BASE, "jwks_url": url})

    def test_leeway_capped_at_300(self):
        """Leeway above five minutes is refused."""
        with pytest.raises(ValidationError, match="leeway_seconds"):
            IdentitySettings.model_validate(
                {**BASE, "jwks_url": "https://idp.test/j", "leeway_seconds": 301}
            )

    def test_relative_jwks_file_resolved_against_config_folder(self, tmp_path):
        """A relative jwks_file is read from the config file's folder, not the working dir."""
        config = tmp_path / "proxy.yaml"
        config.write_text(
            "identity:\n  issuers: [https://login.example.test]\n  audience: phi-proxy\n"
            "  jwks_file: keys/jwks.json\n"
        )
        settings = load_section(config, "identity", IdentitySettings)
        assert settings.jwks_file == tmp_path.resolve() / "keys" / "jwks.json"

    def test_missing_issuers_names_yaml_path(self, tmp_path):
        """A missing identity.issuers is reported with its YAML path."""
        config = tmp_path / "proxy.yaml"
        config.write_text("identity:\n  audience: phi-proxy\n  jwks_file: j.json\n")
        with pytest.raises(ConfigError, match=r"identity\.issuers"):
            load_section(config, "identity", IdentitySettings)
