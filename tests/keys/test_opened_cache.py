"""The keyring's cache of opened tokens: bounded, per keyring, never holding failures."""

from __future__ import annotations

import pytest

from keys._opened_cache import OpenedCache
from keys.errors import InvalidToken
from keys.testing import make_keyring


class TestOpenedCache:
    def test_entry_cap_evicts_oldest_first(self):
        """Past max_entries the oldest token goes first and the newest stay."""
        cache = OpenedCache(max_entries=3, max_bytes=1 << 20)
        for i in range(5):
            cache.put(f"t{i}", ("p", "c", f"v{i}"))
        assert len(cache) == 3
        assert cache.get("t0") is None
        assert cache.get("t1") is None
        assert cache.get("t4") == ("p", "c", "v4")

    def test_byte_cap_holds(self):
        """Characters held never exceed max_bytes, however many values are put."""
        cache = OpenedCache(max_entries=1000, max_bytes=1000)
        for i in range(100):
            cache.put(f"token-{i}", ("p", "c", "x" * 50))
            assert cache.size_bytes <= 1000
        assert 0 < len(cache) < 100

    def test_oversized_value_is_not_cached(self):
        """A single value larger than the byte cap is simply not remembered."""
        cache = OpenedCache(max_entries=10, max_bytes=100)
        cache.put("t", ("p", "c", "x" * 500))
        assert cache.get("t") is None
        assert cache.size_bytes == 0

    def test_zero_entries_disables(self):
        """max_entries=0 turns the cache off."""
        cache = OpenedCache(max_entries=0)
        cache.put("t", ("p", "c", "v"))
        assert len(cache) == 0

    def test_repr_shows_no_values(self):
        """The repr gives sizes only, never a token or a plaintext."""
        cache = OpenedCache()
        cache.put("phi1.secret-token", ("p", "c", "123-45-6789"))
        assert "123-45-6789" not in repr(cache)
        assert "secret-token" not in repr(cache)

    def test_clear_forgets_everything(self):
        """clear() empties entries and the byte count."""
        cache = OpenedCache()
        cache.put("t", ("p", "c", "v"))
        cache.clear()
        assert len(cache) == 0
        assert cache.size_bytes == 0


class TestKeyringCache:
    def test_open_fast_repeats_answer_from_cache(self):
        """A second open of the same token is answered from the keyring's cache."""
        keyring = make_keyring(["A"])
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        assert keyring.open_fast(token) == ("A", "ssn", "123-45-6789")
        assert len(keyring._cache) == 1
        assert keyring.open_fast(token) == ("A", "ssn", "123-45-6789")
        assert keyring.open(token).plaintext == "123-45-6789"

    def test_failures_are_never_cached(self):
        """A tampered token raises every time and leaves the cache empty."""
        keyring = make_keyring(["A"])
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        tampered = token[:-1] + ("A" if token[-1] != "A" else "Q")
        for _ in range(2):
            with pytest.raises(InvalidToken):
                keyring.open_fast(tampered)
        assert len(keyring._cache) == 0

    def test_new_keyring_starts_empty(self):
        """Another keyring (a reload, a rotation) has its own, empty cache."""
        first = make_keyring(["A"])
        token = first.encrypt("A", "ssn", "1")
        first.open_fast(token)
        second = make_keyring(["A"])
        assert len(second._cache) == 0
        with pytest.raises(InvalidToken):
            second.open_fast(token)  # a different key: the first keyring's memo is not shared
