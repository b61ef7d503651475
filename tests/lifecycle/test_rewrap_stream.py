"""`phi-keys rewrap --in/--out`: only tokens change, everything else is byte-identical."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from lifecycle_helpers import run_keys

from keys.rewrap import TokenCensus, rewrite_stream
from keys.token_format import TOKEN_PATTERN_BYTES, kid_of


def _mixed(ring) -> tuple[bytes, dict[str, str]]:
    """A SQL dump + CSV + JSON lines + Latin-1 bytes, with tokens and near-misses."""
    values = {}

    def tok(practice, cls, value, **kw):
        token = ring.encrypt(practice, cls, value, **kw)
        values[token] = value
        return token

    a1 = tok("practice-a", "ssn", "123-45-6789", deterministic=True)
    b1 = tok("practice-b", "history", "diabetes, type 2")
    c1 = tok("practice-c", "insurance_id", "MBR-77")
    text = (
        "-- dump\nINSERT INTO patients VALUES (1,'" + a1 + "','caf\xe9');\n"
        "id,ssn,notes\n2," + b1 + ',"x ' + c1 + ' y"\n'
        '{"ssn": "' + a1 + '", "n": 3}\n'
        "not tokens: x" + a1 + " a." + c1 + " phi1.r.zz\n"
    )
    return text.encode("latin-1") + b"\xff\xfe raw\n", values


def _non_token_parts(data: bytes) -> list[bytes]:
    return TOKEN_PATTERN_BYTES.split(data)


class TestRewrapFile:
    def test_only_tokens_change_and_a_second_run_is_identical(self, env, store):
        """After a rotation, rewrap moves every token to the new key; all other bytes stay."""
        folder, config, _ = env
        ring = store.load()
        data, values = _mixed(ring)
        (folder / "dump.sql").write_bytes(data)
        run_keys("rotate", "--all", config=config, check=True)
        done = run_keys("rewrap", "--in", "dump.sql", "--out", "new.sql", config=config, cwd=folder)
        assert done.returncode == 0, done.stderr
        out = (folder / "new.sql").read_bytes()
        assert _non_token_parts(out) == _non_token_parts(data)
        new_ring = store.load()
        tokens = [m.group().decode() for m in TOKEN_PATTERN_BYTES.finditer(out)]
        assert len(tokens) == 4
        for token in tokens:
            opened = new_ring.open(token)
            assert kid_of(token) == new_ring.primary(opened.practice).kid
            assert opened.plaintext in values.values()
        assert b"x" + tokens[0].encode() not in out, "a glued near-miss is not a token"
        assert (folder / "new.sql").stat().st_mode & 0o077 == 0

        second = run_keys(
            "rewrap", "--in", "new.sql", "--out", "newer.sql", config=config, cwd=folder
        )
        assert second.returncode == 0
        assert (folder / "newer.sql").read_bytes() == out, "idempotent"

    def test_stdin_to_stdout(self, env, store):
        """`--in - --out -` streams through a pipe."""
        _folder, config, _ = env
        ring = store.load()
        token = ring.encrypt("practice-a", "ssn", "123-45-6789")
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        done = run_keys("rewrap", "--in", "-", "--out", "-", config=config, input=f"a,{token},b\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 1, "the summary goes to stderr, not into the data"
        assert "tokens per key version" in done.stderr
        line = done.stdout.splitlines()[0]
        new_token = line.split(",")[1]
        assert line.startswith("a,")
        assert line.endswith(",b")
        assert new_token != token
        assert store.load().open(new_token).plaintext == "123-45-6789"

    def test_unopenable_tokens_are_kept_and_reported(self, env, store):
        """A token under a retired key stays as it was, and the exit status is 1."""
        folder, config, _ = env
        ring = store.load()
        token = ring.encrypt("practice-a", "ssn", "1")
        old = ring.primary("practice-a").kid
        store.rotate("practice-a")
        from keys.keyring import KeyState

        store.set_state(old, KeyState.RETIRED)
        (folder / "in.txt").write_text(token + "\n")
        done = run_keys("rewrap", "--in", "in.txt", "--out", "out.txt", config=config, cwd=folder)
        assert done.returncode == 1
        assert "key-retired: 1" in done.stdout
        assert (folder / "out.txt").read_text() == token + "\n"

    def test_dry_run_counts_and_same_file_is_refused(self, env, store):
        """--dry-run counts per key version; --out equal to --in is refused."""
        folder, config, _ = env
        ring = store.load()
        (folder / "in.txt").write_text(
            " ".join(ring.encrypt("practice-b", "ssn", "v") for _ in range(3))
        )
        done = run_keys("rewrap", "--in", "in.txt", "--dry-run", config=config, cwd=folder)
        assert done.returncode == 0
        assert "practice-b v1 active" in done.stdout
        assert done.stdout.rstrip().endswith("3")
        same = run_keys("rewrap", "--in", "in.txt", "--out", "in.txt", config=config, cwd=folder)
        assert same.returncode == 2


_ALPHABET = st.sampled_from([*"abc.-_ ,\n\"'x", "\u00e9"])


class TestRewriteStreamChunking:
    @settings(max_examples=60, deadline=None)
    @given(
        parts=st.lists(
            st.one_of(st.text(_ALPHABET, max_size=20), st.just("phi1."), st.just("<T>")),
            max_size=12,
        ),
        chunk=st.integers(min_value=1, max_value=64),
    )
    def test_chunking_never_changes_the_result(self, parts, chunk):
        """Any chunk size gives exactly what one whole-buffer substitution gives."""
        tokens = iter(f"phi1.r.{i:016x}.ssn.{'A' * (22 + i % 5)}" for i in range(100))
        data = "".join(next(tokens) if p == "<T>" else p for p in parts).encode()

        def mark(token: str) -> str:
            return f"[{kid_of(token)}]"

        expected = TOKEN_PATTERN_BYTES.sub(lambda m: mark(m.group().decode()).encode(), data)
        sink = io.BytesIO()
        rewrite_stream(io.BytesIO(data), sink, mark, chunk_size=chunk)
        assert sink.getvalue() == expected

    def test_read_only_mode_writes_nothing(self):
        """With no sink, rewrite_stream only calls the replace function (a scan)."""
        seen = TokenCensus()

        def count(token: str) -> str:
            seen.before[kid_of(token)] += 1
            return token

        data = f"x phi1.r.{'0' * 16}.ssn.{'A' * 24} y".encode()
        rewrite_stream(io.BytesIO(data), None, count, chunk_size=3)
        assert seen.before == {"0" * 16: 1}
