"""Table jobs fail closed: no PHI in errors, no rows skipped, no plaintext passed off as done.

Each test runs the real `phi-keys` and checks its exit status, its stderr (never a cell value)
and what the table holds afterwards.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from lifecycle_db import TestTable
from lifecycle_helpers import run_keys

from keys._file_ops import atomic_writer
from keys.cli_migrate_table import _db_message
from keys.token_format import TOKEN_PATTERN, kid_of

SSN = "900-12-3456"
SECRET = "HIV positive"


def _state(config, kid: str) -> str:
    """The state `phi-keys list --json` reports for `kid`."""
    infos = json.loads(run_keys("list", "--json", config=config, check=True).stdout)
    return next(i["state"] for i in infos if i["kid"] == kid)


def _job(dsn: str, table: str, key: str, *extra: str) -> list[str]:
    return ["--dsn", dsn, "--table", table, "--batch-size", "2", *extra, key]


class TestDatabaseErrorsShowNoValues:
    def test_undecodable_sqlite_text_names_the_column_not_the_value(self, env, tmp_path):
        """A Latin-1 cell makes sqlite3 quote it; stderr names the column and no cell content."""
        _folder, config, _ = env
        db = tmp_path / "legacy.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, practice_id TEXT, history TEXT)")
            conn.execute("INSERT INTO p VALUES (1, 'practice-a', 'Dr. Smith notes')")
            legacy = f"Jérôme Dupont: {SECRET}, SSN {SSN}".encode("latin-1")
            conn.execute("INSERT INTO p VALUES (2, 'practice-a', CAST(? AS TEXT))", (legacy,))
        commands = (
            [
                "encrypt-existing",
                "--practice-column",
                "practice_id",
                "--columns",
                "history:history",
            ],
            ["rewrap", "--columns", "history"],
        )
        for command in commands:
            done = run_keys(*command, "--dsn", f"sqlite:///{db}", "--table", "p", config=config)
            assert done.returncode == 1, done.stderr
            for leak in (SSN, SECRET, "Dupont", "Smith", "with text"):
                assert leak not in done.stderr + done.stdout
            assert "OperationalError: column history holds a value that is not valid UTF-8" in (
                done.stderr
            )
            assert "Traceback" not in done.stderr
        with sqlite3.connect(db) as conn:
            raw = conn.execute("SELECT CAST(history AS BLOB) FROM p WHERE id = 2").fetchone()[0]
        assert raw == legacy, "the undecodable row is left as it was"

    def test_other_database_errors_show_only_their_type(self):
        """Any other driver message (which may quote a value) is replaced by a fixed text."""
        exc = sqlite3.IntegrityError(f"UNIQUE constraint failed: p.ssn ({SSN})")
        message = _db_message(exc, ("ssn",))
        assert SSN not in message
        assert message.startswith("IntegrityError; its message is not shown")


class TestKeyColumnMustBeUnique:
    @pytest.mark.parametrize(
        ("keys", "problem"),
        [
            ((1, 2, None), "1 of 3 rows of {name} have NULL"),
            ((1, 2, 2), "1 rows of {name} repeat a value"),
        ],
    )
    def test_rewrap_and_retire_refuse_a_null_or_repeated_key(
        self, env, store, database, keys, problem
    ):
        """Keyset paging would skip these rows: exit 2 before any batch, keys and data untouched."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        ring = store.load()
        table = TestTable(kind, target, name)
        table.execute("CREATE TABLE {T} (mrn INTEGER, ssn TEXT)")
        rows = [
            (k, ring.encrypt("practice-a", "ssn", f"900-00-000{i}")) for i, k in enumerate(keys)
        ]
        table.execute("INSERT INTO {T} VALUES (?, ?)", *rows)
        old = kid_of(rows[0][1])
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        before = sorted(table.execute("SELECT ssn FROM {T}"))

        done = run_keys(
            "rewrap", "--columns", "ssn", *_job(dsn, name, "mrn", "--key"), config=config
        )
        assert done.returncode == 2, done.stderr
        problem = problem.format(name=name)
        assert f"key column mrn (--key; --row-key for retire): {problem}" in done.stderr
        assert problem in done.stderr
        assert "nothing was done" in done.stderr
        assert sorted(table.execute("SELECT ssn FROM {T}")) == before

        retire = run_keys(
            "retire",
            "--key",
            old,
            "--columns",
            "ssn",
            *_job(dsn, name, "mrn", "--row-key"),
            config=config,
        )
        assert retire.returncode == 2, retire.stderr
        assert problem in retire.stderr
        assert _state(config, old) == "decrypt-only", "a key still in use is not retired"


class TestEncryptExistingLeavesNoPlaintextUnreported:
    def test_text_merely_containing_the_prefix_is_reported_not_skipped(self, env, store, database):
        """Only a whole token counts as encrypted; "sophi1.…" text fails the run with status 1."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        ring = store.load()
        token = ring.encrypt("practice-a", "ssn", SSN, deterministic=True)
        email = "contact sophi1.jones@example.com"
        table = TestTable(kind, target, name)
        table.create(
            [
                (1, "practice-a", "111-22-3333", None, email),
                (2, "practice-a", token, None, "plain history"),
                (3, "practice-a", "phi1. typed by a clerk", None, None),
            ]
        )
        done = run_keys(
            "encrypt-existing",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn:ssn,history:history",
            *_job(dsn, name, "id", "--key"),
            config=config,
        )
        assert done.returncode == 1, done.stderr
        assert "2 values still hold what may be plaintext PHI" in done.stderr
        assert 'column history: 1 values contain "phi1." but are not one whole token' in (
            done.stderr
        )
        assert 'column ssn: 1 values contain "phi1."' in done.stderr
        assert "sophi1" not in done.stderr
        assert "clerk" not in done.stderr
        rows = table.rows()
        assert rows[1][3] == email, "left as it was"
        assert rows[3][1] == "phi1. typed by a clerk", "left as it was"
        assert rows[2][1] == token, "a whole token is left alone"
        assert TOKEN_PATTERN.fullmatch(rows[1][1]), "plaintext was encrypted"
        assert TOKEN_PATTERN.fullmatch(rows[2][3]), "plaintext was encrypted"

    def test_a_number_in_a_phi_column_fails_the_run(self, env, database):
        """A non-text SSN is not encrypted and not silently passed: exit 1 naming the column."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        table = TestTable(kind, target, name)
        table.execute("CREATE TABLE {T} (id INTEGER PRIMARY KEY, practice_id TEXT, ssn BIGINT)")
        table.execute("INSERT INTO {T} VALUES (?, ?, ?)", (1, "practice-a", 900123456))
        done = run_keys(
            "encrypt-existing",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn:ssn",
            *_job(dsn, name, "id", "--key"),
            config=config,
        )
        assert done.returncode == 1, done.stderr
        assert "column ssn: 1 values are not text" in done.stderr
        assert "900123456" not in done.stderr + done.stdout
        assert table.execute("SELECT ssn FROM {T}") == [(900123456,)]


class TestBlobTokensAreSeen:
    def test_retire_sees_a_blob_token_and_rewrap_moves_it_keeping_bytes(self, env, store, database):
        """A BLOB/BYTEA token blocks retire; rewrap rewrites it as bytes; then retire passes."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        ring = store.load()
        token = ring.encrypt("practice-a", "history", "asthma")
        body = b"\xff\x00note: " + token.encode() + b";\xe9"
        blob = "BLOB" if kind == "sqlite" else "BYTEA"
        table = TestTable(kind, target, name)
        table.execute(f"CREATE TABLE {{T}} (id INTEGER PRIMARY KEY, body {blob})")
        table.execute("INSERT INTO {T} VALUES (?, ?)", (1, body))
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        old = kid_of(token)
        scan = ["--columns", "body", *_job(dsn, name, "id", "--row-key")]

        refused = run_keys("retire", "--key", old, *scan, config=config)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert _state(config, old) == "decrypt-only"

        done = run_keys(
            "rewrap", "--columns", "body", *_job(dsn, name, "id", "--key"), config=config
        )
        assert done.returncode == 0, done.stderr
        assert "1 tokens were rewrapped" in done.stdout
        (stored,) = table.execute("SELECT body FROM {T}")[0]
        assert isinstance(stored, bytes), "a BLOB stays a BLOB"
        new = TOKEN_PATTERN.search(stored.decode("latin-1")).group()
        assert stored == b"\xff\x00note: " + new.encode() + b";\xe9", "other bytes untouched"
        assert kid_of(new) != old
        assert store.load().open(new).plaintext == "asthma"

        assert run_keys("retire", "--key", old, *scan, config=config).returncode == 0
        assert _state(config, old) == "retired"


class TestRewrapOutFile:
    def test_out_never_follows_a_planted_partial_file(self, env, store, tmp_path):
        """Old fixed `.out.partial` names (symlink, open spy file) get nothing; --out is 0600."""
        _folder, config, _ = env
        dump = tmp_path / "dump.sql"
        dump.write_text(f"x '{store.load().encrypt('practice-a', 'ssn', SSN)}';\n")
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        exports = tmp_path / "exports"
        exports.mkdir()
        victim = tmp_path / "victim.conf"
        victim.write_text("precious\n")
        (exports / ".out.sql.partial").symlink_to(victim)
        spy = exports / ".out2.sql.partial"
        spy.write_text("")
        for out in ("out.sql", "out2.sql"):
            done = run_keys("rewrap", "--in", str(dump), "--out", str(exports / out), config=config)
            assert done.returncode == 0, done.stderr
            assert (exports / out).stat().st_mode & 0o777 == 0o600
            assert TOKEN_PATTERN.search((exports / out).read_text())
        assert victim.read_text() == "precious\n"
        assert spy.read_text() == ""
        assert sorted(p.name for p in exports.iterdir()) == [
            ".out.sql.partial",
            ".out2.sql.partial",
            "out.sql",
            "out2.sql",
        ], "no temp file left behind"

    def test_atomic_writer_failure_keeps_target_and_leaves_no_temp(self, tmp_path):
        """An error mid-write removes the temp file and leaves the old content in place."""
        target = tmp_path / "out.txt"
        target.write_text("old")

        def fail_mid_write() -> None:
            with atomic_writer(target) as sink:
                sink.write(b"half")
                raise RuntimeError

        with pytest.raises(RuntimeError):
            fail_mid_write()
        assert target.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
