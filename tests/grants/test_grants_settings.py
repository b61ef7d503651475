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

    @pytest.mark.parametrize("url", ["postgresql://phi@db/grants", "postgres://db:5433/g"])
    def test_postgres_url_selects_the_fleet_store(self, url):
        """A PostgreSQL URL is kept as given (not resolved as a path) and marks a fleet store."""
        settings = GrantSettings(store=url)
        assert settings.store == url
        assert settings.is_postgres

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("postgresql://phi:hunter2@db/grants", "must not contain a password"),
            ("postgresql://phi@db/grants?password=hunter2", "must not contain a password"),
            (
                "postgresql://phi@db/grants?sslmode=require&PASSWORD=x",
                "must not contain a password",
            ),
            ("postgresql://db", "needs a host and a database name"),
            ("postgresql://db:notaport/x", "not a valid PostgreSQL URL"),
            ("mysql://db/x", "file path .* or a postgresql:// URL"),
        ],
    )
    def test_bad_store_urls_refused(self, url, message):
        """Passwords in the URL, missing parts and other schemes are refused with the fix."""
        with pytest.raises(ValidationError, match=message):
            GrantSettings(store=url)

    def test_password_error_through_config_file_does_not_echo_it(self, tmp_path):
        """The config error for a password in the URL names the path, never the password."""
        config = tmp_path / "proxy.yaml"
        config.write_text("grants:\n  store: postgresql://phi:hunter2@db/grants\n")
        with pytest.raises(ConfigError, match=r"grants\.store") as caught:
            load_section(config, "grants", GrantSettings)
        assert "hunter2" not in str(caught.value)

    def test_repr_hides_user_and_options(self):
        """The settings repr shows host, port and database of a PostgreSQL store only."""
        settings = GrantSettings(store="postgresql://phi-user@db:5432/grants?sslmode=verify-full")
        assert "postgresql://db:5432/grants" in repr(settings)
        assert "phi-user" not in repr(settings)
        assert "sslmode" not in repr(settings)

    @pytest.mark.parametrize("schema", ["Public", "pg_catalog", "a-b", "x" * 64, ""])
    def test_pg_schema_must_be_a_plain_name(self, schema):
        """grants.pg_schema is a plain lower-case identifier, never a system schema."""
        with pytest.raises(ValidationError, match="pg_schema"):
            GrantSettings(pg_schema=schema)

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
