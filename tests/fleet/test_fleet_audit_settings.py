"""`audit.sink: postgres` settings: what is refused, and why (no database needed)."""

import sys

import pytest
import yaml

from keys.config_file import load_section
from keys.errors import ConfigError
from proxy.audit.errors import AuditError
from proxy.audit.factory import open_chain
from proxy.audit.settings import AuditSettings
from tests.cli_process import run_cli


def load(tmp_path, **audit):
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump({"audit": audit}))
    return load_section(path, "audit", AuditSettings)


class TestPostgresAuditSettings:
    def test_a_password_in_the_dsn_is_refused_without_echoing_it(self, tmp_path):
        """A DSN carrying a password is refused, and the error does not repeat the password."""
        with pytest.raises(ConfigError, match="must not contain a password") as refused:
            load(tmp_path, sink="postgres", dsn="postgresql://phi:hunter2@db.internal/phi")
        assert "hunter2" not in str(refused.value)

    def test_postgres_needs_a_dsn_and_a_dsn_needs_postgres(self, tmp_path):
        """A postgres sink without dsn, or a dsn the file sink would ignore, is refused."""
        with pytest.raises(ConfigError, match=r"audit\.dsn is not set"):
            load(tmp_path, sink="postgres")
        with pytest.raises(ConfigError, match=r"audit\.sink is file"):
            load(tmp_path, dsn="postgresql://phi@db.internal/phi")

    @pytest.mark.parametrize(
        ("dsn", "message"),
        [
            ("mysql://phi@db/phi", "must be a postgresql:// URL"),
            ("postgresql://phi@db.internal", "needs a host and a database name"),
            ("postgresql://phi@db.internal:port/phi", "not a valid PostgreSQL URL"),
        ],
    )
    def test_malformed_dsns_are_refused(self, tmp_path, dsn, message):
        """Each malformed DSN gets a message saying what a valid one looks like."""
        with pytest.raises(ConfigError, match=message):
            load(tmp_path, sink="postgres", dsn=dsn)

    def test_schema_names_are_plain_identifiers(self, tmp_path):
        """pg_schema is interpolated into SQL, so only plain lower-case identifiers pass."""
        for bad in ("Audit", 'a"; DROP', "pg_audit", ""):
            with pytest.raises(ConfigError, match="pg_schema"):
                load(tmp_path, sink="postgres", dsn="postgresql://phi@db/phi", pg_schema=bad)

    def test_repr_shows_no_user(self, tmp_path):
        """The settings' repr names host, port and database only."""
        settings = load(tmp_path, sink="postgres", dsn="postgresql://auditor@db.internal:5433/phi")
        assert "auditor" not in repr(settings)
        assert "db.internal:5433/phi" in repr(settings)

    def test_the_shared_key_is_never_created(self, tmp_path):
        """With sink postgres a missing key file is an error, not a fresh key for one replica."""
        settings = load(tmp_path, sink="postgres", dsn="postgresql://phi@db/phi")
        with pytest.raises(AuditError, match="never created automatically"):
            open_chain(settings)
        assert not settings.key_file.exists()

    def test_phi_audit_names_the_missing_key(self, tmp_path):
        """`phi-audit verify` (subprocess) stops before connecting and says which key is missing."""
        load(tmp_path, sink="postgres", dsn="postgresql://phi@127.0.0.1:9/phi")
        done = run_cli(
            [sys.executable, "-m", "proxy.audit", "-c", str(tmp_path / "proxy.yaml"), "verify"],
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1
        assert "audit.key: the audit key is missing" in done.stderr
