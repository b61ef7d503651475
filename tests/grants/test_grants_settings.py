from datetime import timedelta

import pytest
from pydantic import ValidationError

from keys.config_file import load_section
from keys.errors import ConfigError
from proxy.grants import GrantSettings


class TestGrantSettings:
    def test_defaults(self):
        """Defaults: a grants.sqlite3 file, 90-day maximum grant, one error log per minute."""
        settings = GrantSettings()
        assert settings.max_ttl == timedelta(days=90)
        assert settings.error_log_interval_seconds == 60
        assert settings.sqlite_path.name == "grants.sqlite3"

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("30d", timedelta(days=30)), (3600, timedelta(hours=1)), ("12h", timedelta(hours=12))],
    )
    def test_max_ttl_forms(self, raw, expected):
        """max_ttl accepts a human duration or seconds."""
        assert GrantSettings(max_ttl=raw).max_ttl == expected

    @pytest.mark.parametrize("raw", ["400d", "0", "soon"])
    def test_max_ttl_bounds(self, raw):
        """max_ttl must be a positive duration of at most 366 days."""
        with pytest.raises(ValidationError, match="max_ttl"):
            GrantSettings(max_ttl=raw)

    @pytest.mark.parametrize("url", ["postgresql://db/grants", "postgres://db/g"])
    def test_postgres_reserved(self, url):
        """A PostgreSQL URL is refused for now with a clear message."""
        with pytest.raises(ValidationError, match="not supported yet"):
            GrantSettings(store=url)

    def test_relative_store_resolved_against_config_folder(self, tmp_path):
        """A relative store path is inside the config file's folder."""
        config = tmp_path / "proxy.yaml"
        config.write_text("grants:\n  store: data/grants.db\n  max_ttl: 30d\n")
        settings = load_section(config, "grants", GrantSettings)
        assert settings.sqlite_path == tmp_path.resolve() / "data" / "grants.db"
        assert settings.max_ttl == timedelta(days=30)

    def test_unknown_key_names_yaml_path(self, tmp_path):
        """A misspelt key is reported with its YAML path."""
        config = tmp_path / "proxy.yaml"
        config.write_text("grants:\n  max_tll: 30d\n")
        with pytest.raises(ConfigError, match=r"grants\.max_tll"):
            load_section(config, "grants", GrantSettings)
