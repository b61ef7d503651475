"""`phi-keys rewrap` and `encrypt-existing` on live tables: resumable, idempotent, exact."""

from __future__ import annotations

import signal
import subprocess

import pytest
from lifecycle_db import TestTable
from lifecycle_helpers import PHI_KEYS, PRACTICES, run_keys

from keys.table import TableSpec, Update
from keys.table_backends import open_table
from keys.token_format import TOKEN_PATTERN, kid_of

ROWS = 240


def _plain(i: int) -> tuple[str, str, str, str]:
    practice = PRACTICES[i % 2]  # practice-a and practice-b; practice-c has no rows
    return practice, f"{i:03d}-45-{i:04d}", f"MBR{i:06d}", f"history of patient {i}: asthma"


def _kill_after_batches(args: list[str], command: str, batches: int) -> str:
    """Start phi-keys, SIGKILL it once `batches` progress lines appeared; return its stderr."""
    seen = []
    with subprocess.Popen(
        [PHI_KEYS, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if sum(1 for s in seen if s.startswith(f"{command}: [")) >= batches:
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def _encrypted_rows(ring) -> list[tuple]:
    """ROWS rows of tokens under `ring`'s current keys; every 7th history is NULL."""
    rows = []
    for i in range(ROWS):
        practice, ssn, member, history = _plain(i)
        rows.append(
            (
                i,
                practice,
                ring.encrypt(practice, "ssn", ssn, deterministic=True),
                ring.encrypt(practice, "insurance_id", member),
                None if i % 7 == 0 else f"note: {ring.encrypt(practice, 'history', history)};",
            )
        )
    return rows


def _rotated_table(env, store, database, *, pause: str) -> tuple:
    """(config, table, rewrap args): ROWS token rows, then every practice's key rotated."""
    _folder, config, _ = env
    dsn, name, (kind, target) = database
    table = TestTable(kind, target, name)
    table.create(_encrypted_rows(store.load()))
    run_keys("rotate", "--all", config=config, check=True)
    args = ["-c", str(config), "rewrap", "--columns", "ssn,member_id,history"]
    return config, table, [*args, *_table_args(dsn, name, "--pause", pause)]


def _table_args(dsn: str, table: str, *extra: str) -> list[str]:
    return ["--dsn", dsn, "--table", table, "--key", "id", "--batch-size", "10", *extra]


class TestRewrapTable:
    def test_resumes_after_sigkill_without_loss_or_double_work(self, env, store, database):
        """Killed mid-way and re-run, rewrap leaves every token under the new key, same values."""
        config, table, args = _rotated_table(env, store, database, pause="0.05")
        _kill_after_batches(args, "rewrap", batches=4)
        assert len(table.progress()) == 1, "the interrupted run left its progress behind"
        halfway = table.rows()
        new_ring = store.load()
        primary = {p: new_ring.primary(p).kid for p in PRACTICES}
        moved = sum(1 for r in halfway.values() if kid_of(r[1]) == primary[r[0]])
        assert 0 < moved < ROWS

        again = run_keys(*args[2:], config=config)
        assert again.returncode == 0, again.stderr
        assert "resumed after" in again.stdout
        assert table.progress() == [], "a finished run clears its progress"
        after = table.rows()
        assert set(after) == set(range(ROWS)), "no row lost"
        for i, (practice, ssn_t, member_t, history_v) in after.items():
            _, ssn, member, history = _plain(i)
            assert kid_of(ssn_t) == primary[practice]
            assert new_ring.open(ssn_t).plaintext == ssn
            assert ssn_t.startswith("phi1.d."), "deterministic tokens stay deterministic"
            assert new_ring.open(member_t).plaintext == member
            if i % 7 == 0:
                assert history_v is None
            else:
                token = TOKEN_PATTERN.search(history_v).group()
                assert history_v == f"note: {token};", "text around a token is untouched"
                assert new_ring.open(token).plaintext == history

        third = run_keys(*args[2:], config=config)
        assert third.returncode == 0
        assert table.rows() == after, "a re-run changes nothing (idempotent)"
        assert "0 tokens were rewrapped" in third.stdout

    def test_a_rotation_between_runs_starts_over_instead_of_resuming(self, env, store, database):
        """Killed, rotated again, re-run: every row ends under the newest key (none skipped).

        Found in review: the re-run resumed past the rows the first run had moved to the key
        that the second rotation made decrypt-only, and said it was done.
        """
        config, table, args = _rotated_table(env, store, database, pause="0.05")
        _kill_after_batches(args, "rewrap", batches=2)
        run_keys("rotate", "--all", config=config, check=True)
        again = run_keys(*args[2:], config=config)
        assert again.returncode == 0, again.stderr
        assert "resumed after" not in again.stdout
        newest = store.load()
        primary = {p: newest.primary(p).kid for p in PRACTICES}
        after = table.rows()
        assert set(after) == set(range(ROWS))
        assert all(kid_of(ssn_t) == primary[practice] for practice, ssn_t, *_ in after.values())

    def test_a_database_error_mid_run_says_how_to_resume(self, env, store, database):
        """The table vanishes between batches: exit 1 naming the error; the same command resumes.

        Once the table is back, the re-run continues after the committed batches.
        """
        config, table, args = _rotated_table(env, store, database, pause="0.3")
        seen, batches = [], 0
        with subprocess.Popen(
            [PHI_KEYS, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        ) as process:
            assert process.stderr is not None
            for line in process.stderr:
                seen.append(line)
                if line.startswith("rewrap: ["):
                    batches += 1
                    if batches == 2:  # two batches committed, then the table vanishes
                        table.execute(f'ALTER TABLE {{T}} RENAME TO "{table.table}_moved"')
            process.wait(timeout=30)
        stderr = "".join(seen)
        assert process.returncode == 1, stderr
        assert "rewrap: database error (" in stderr
        assert "committed batches are kept; run the same command again to resume" in stderr
        assert "Traceback" not in stderr

        moved = TestTable(table.kind, table.target, f"{table.table}_moved")
        moved.execute(f'ALTER TABLE {{T}} RENAME TO "{table.table}"')
        again = run_keys(*args[2:-2], config=config)  # without --pause
        assert again.returncode == 0, again.stderr
        assert "resumed after" in again.stdout
        new_ring = store.load()
        primary = {p: new_ring.primary(p).kid for p in PRACTICES}
        after = table.rows()
        assert set(after) == set(range(ROWS)), "no row lost"
        assert all(kid_of(r[1]) == primary[r[0]] for r in after.values())

    def test_dry_run_counts_per_key_and_writes_nothing(self, env, store, database):
        """--dry-run prints per-key-version counts with state and leaves the table alone."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        ring = store.load()
        table = TestTable(kind, target, name)
        table.create(
            [
                (i, "practice-a", ring.encrypt("practice-a", "ssn", "x"), None, None)
                for i in range(5)
            ]
        )
        old_kid = ring.primary("practice-a").kid
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        before = table.rows()
        done = run_keys(
            "rewrap", "--dry-run", "--columns", "ssn", *_table_args(dsn, name), config=config
        )
        assert done.returncode == 0, done.stderr
        assert table.rows() == before
        line = next(x for x in done.stdout.splitlines() if old_kid in x)
        assert "practice-a v1 decrypt-only" in line
        assert line.split()[-1] == "5"
        assert "5 tokens would be rewrapped" in done.stdout


class TestEncryptExisting:
    def test_resumes_after_sigkill_and_never_encrypts_twice(self, env, store, database):
        """Plaintext rows end up encrypted exactly once, per column class, after a SIGKILL."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        ring = store.load()
        rows = []
        for i in range(ROWS):
            practice, ssn, member, history = _plain(i)
            already = ring.encrypt(practice, "insurance_id", member) if i % 5 == 0 else member
            rows.append((i, practice, ssn, already, None if i % 9 == 0 else history))
        table = TestTable(kind, target, name)
        table.create(rows)
        args = [
            "-c",
            str(config),
            "encrypt-existing",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn:ssn,member_id:insurance_id,history:history",
        ]
        args += _table_args(dsn, name, "--pause", "0.05")
        _kill_after_batches(args, "encrypt-existing", batches=4)
        halfway = table.rows()
        assert any(TOKEN_PATTERN.fullmatch(r[1] or "") for r in halfway.values())
        assert any(not TOKEN_PATTERN.fullmatch(r[1] or "") for r in halfway.values())

        again = run_keys(*args[2:], config=config)
        assert again.returncode == 0, again.stderr
        after = table.rows()
        assert set(after) == set(range(ROWS))
        for i, (_practice, ssn_t, member_t, history_t) in after.items():
            _, ssn, member, history = _plain(i)
            assert ring.open(ssn_t).plaintext == ssn, "encrypted once, not a token of a token"
            assert ring.open(ssn_t).field_class == "ssn"
            assert ssn_t.startswith("phi1.d."), "ssn is deterministic in the config"
            assert ring.open(member_t).plaintext == member
            assert member_t.startswith("phi1.r.")
            if i % 9 == 0:
                assert history_t is None
            else:
                assert ring.open(history_t).plaintext == history
                assert ring.open(history_t).field_class == "history"
        assert after[0][2] == rows[0][3], "a value that already was a token is left alone"
        rerun = run_keys(*args[2:], "--restart", config=config)
        assert rerun.returncode == 0
        assert table.rows() == after, "a full re-run changes nothing"
        assert "0 values were encrypted" in rerun.stdout

    def test_unknown_practice_rows_stay_and_exit_1(self, env, database):
        """Rows of a practice without keys stay plaintext and the exit status says so."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        table = TestTable(kind, target, name)
        table.create([(1, "practice-z", "123-45-6789", None, None)])
        done = run_keys(
            "encrypt-existing",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn",
            "--field",
            "ssn",
            *_table_args(dsn, name),
            config=config,
        )
        assert done.returncode == 1
        assert "still plaintext" in done.stderr
        assert "123-45-6789" not in done.stdout + done.stderr
        assert table.rows()[1][1] == "123-45-6789"

    def test_class_missing_from_config_is_refused(self, env, database):
        """A field class the config does not define is refused before anything is written."""
        _folder, config, _ = env
        dsn, name, (kind, target) = database
        TestTable(kind, target, name).create([(1, "practice-a", "x", None, None)])
        done = run_keys(
            "encrypt-existing",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn:passport",
            *_table_args(dsn, name),
            config=config,
        )
        assert done.returncode == 2
        assert "passport" in done.stderr


class TestCompareAndSet:
    def test_a_row_changed_meanwhile_is_not_overwritten(self, tmp_path):
        """An update whose old value no longer matches changes nothing and is not counted."""
        db = tmp_path / "t.db"
        table = TestTable("sqlite", db, "patients")
        table.create([(1, "practice-a", "old", None, None)])
        live = open_table(f"sqlite:///{db}", TableSpec("patients", "id", ("ssn",)))
        try:
            table.execute("UPDATE {T} SET ssn = 'written by the portal' WHERE id = 1")
            changed = live.commit_batch([Update(1, "ssn", "old", "new")], "job", 1, 1)
        finally:
            live.close()
        assert changed == 0
        assert table.rows()[1][1] == "written by the portal"

    def test_identifiers_are_checked(self):
        """Table and column names that are not plain identifiers are refused."""
        from keys.errors import ConfigError

        with pytest.raises(ConfigError):
            TableSpec('patients"; DROP TABLE x; --', "id", ("ssn",))
        with pytest.raises(ConfigError):
            TableSpec("patients", "id", ("ssn name",))
