"""Hot reload: a running proxy picks up new keys and config, and refuses broken files."""

from __future__ import annotations

import logging
import sqlite3

from lifecycle_helpers import grant, run_keys

from keys.settings import keystore_file
from keys.usage import UsageCounter, read_usage, usage_path
from proxy.identity import DemoIssuer
from proxy.settings import load_settings
from proxy.transform.policy import FieldPolicy

SSN = "123-45-6789"


def _record(pid: str, ssn: str = SSN) -> dict:
    return {"patient_id": pid, "ssn": ssn, "member_id": f"M-{pid}", "medical_history": "flu"}


def _stored(db, pid: str) -> tuple:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT ssn, member_id, history FROM patients WHERE id = ?", (pid,)
        ).fetchone()


class TestKeystoreReload:
    async def test_rotation_is_picked_up_and_old_tokens_still_open(self, live):
        """After rotate + reload, writes use the new key and earlier records still decrypt."""
        assert await live.post_patient("practice-a", _record("p1")) == 201
        first_kid = _stored(live.db, "p1")[0].split(".")[2]
        run_keys("rotate", "--practice", "practice-a", config=live.config, check=True)
        await live.reloader.tick()
        assert live.reloader.reloads == 1
        new_kid = live.runtime.keyring().primary("practice-a").kid
        assert new_kid != first_kid
        assert await live.post_patient("practice-a", _record("p2")) == 201
        assert _stored(live.db, "p2")[0].split(".")[2] == new_kid
        for pid in ("p1", "p2"):
            status, body = await live.get_patient(pid)
            assert status == 200
            assert body["ssn"] == SSN

    async def test_a_broken_keystore_is_refused_and_the_old_keys_stay(self, live, caplog):
        """A corrupt keystore logs one error; the proxy keeps serving with what it had."""
        caplog.set_level(logging.INFO)
        assert await live.post_patient("practice-a", _record("p1")) == 201
        before = live.runtime.keyring()
        path = load_settings(live.config).keys.keystore
        tmp = path.with_name("broken.tmp")
        tmp.write_text('{"format": "phi-proxy-keystore", "version": 1, "keys": [')
        tmp.replace(path)
        await live.reloader.tick()
        assert live.reloader.failures == 1
        assert live.runtime.keyring() is before
        status, body = await live.get_patient("p1")
        assert (status, body["ssn"]) == (200, SSN)
        refused = [r for r in caplog.records if "reload refused" in r.getMessage()]
        assert len(refused) == 1
        assert "not valid JSON" in str(refused[0].__dict__["fields"]["error"])
        assert SSN not in str([r.__dict__ for r in caplog.records])

    async def test_an_unexpected_error_is_refused_naming_where_not_what(
        self, live, caplog, monkeypatch
    ):
        """A bug while rebuilding: old state kept; the log says type and place, not the message."""
        caplog.set_level(logging.INFO)
        before = live.runtime.keyring()

        def broken_compile(_fields):
            raise RuntimeError(f"quoted from a file: {SSN}")

        monkeypatch.setattr(FieldPolicy, "compile", broken_compile)
        await live.reloader.reload(reason="test")
        assert live.reloader.failures == 1
        assert live.runtime.keyring() is before
        refused = [r for r in caplog.records if "reload refused" in r.getMessage()]
        assert len(refused) == 1
        error = refused[0].__dict__["fields"]["error"]
        assert error.startswith("RuntimeError at test_reload.py:")
        assert error.endswith(" in broken_compile()")
        assert SSN not in str([r.__dict__ for r in caplog.records])

    async def test_a_shred_landing_while_a_reload_builds_is_picked_up(self, live, monkeypatch):
        """The keystore changes between the reload's read and its swap: the next poll sees it.

        Found in review: the reload recorded the files' state after building, so the shred
        was never applied and the shredded practice kept decrypting.
        """
        import proxy.reload as reload_module  # the seam being timed

        assert await live.post_patient("practice-b", _record("b1")) == 201
        real_open = reload_module.open_counting_keyring
        shredded = []

        def open_then_shred(keys, usage):
            ring = real_open(keys, usage)  # the keystore as it is now...
            if not shredded:  # ...then an operator shreds practice-b
                shredded.append(True)
                run_keys(
                    "shred", "--practice", "practice-b", "--confirm", "practice-b",
                    config=live.config, check=True,
                )  # fmt: skip
            return ring

        monkeypatch.setattr(reload_module, "open_counting_keyring", open_then_shred)
        # Called directly: request_reload() would also wake the background loop, racing this test.
        assert await live.reloader.reload(reason="test")
        await live.reloader.tick()  # the next poll
        assert "practice-b" not in {
            i.practice for i in live.runtime.keyring().infos() if i.state.value != "destroyed"
        }
        status, body = await live.get_patient("b1")
        assert status == 200
        assert body["ssn"] != SSN

    async def test_a_signing_key_removed_from_the_jwks_file_stops_at_the_next_poll(self, live):
        """The JWKS file is watched: after the IdP's key is removed, its tokens get 401.

        Found in review: neither the file nor a SIGHUP made the proxy drop a removed key.
        """
        assert await live.post_patient("practice-a", _record("p1")) == 201
        status, body = await live.get_patient("p1")
        assert (status, body["ssn"]) == (200, SSN)
        replacement = DemoIssuer(issuer=live.issuer.issuer, audience=live.issuer.audience)
        replacement.write_jwks(live.config.parent / "jwks.json")  # the old key is gone
        await live.reloader.tick()
        status, body = await live.get_patient("p1")
        assert status == 401
        assert SSN not in str(body)

    async def test_a_new_practice_and_a_shred_take_effect(self, live):
        """add-practice enables writes for it; shred makes its tokens mask for everyone."""
        assert await live.post_patient("practice-b", _record("b1")) == 201
        run_keys("add-practice", "practice-d", config=live.config, check=True)
        run_keys(
            "shred",
            "--practice",
            "practice-b",
            "--confirm",
            "practice-b",
            config=live.config,
            check=True,
        )
        await live.reloader.tick()
        assert "practice-d" in live.runtime.keyring().practices()
        await grant(live.config.parent, "alice", "practice-d")  # its staff write SSNs
        assert await live.post_patient("practice-d", _record("d1")) == 201
        status, body = await live.get_patient("b1")
        assert status == 200
        assert SSN not in str(body)
        assert body["medical_history"] is None, "the history mask is null"
        assert await live.post_patient("practice-b", _record("b2")) >= 400, (
            "no key left to encrypt a shredded practice's new data: refused, not plaintext"
        )


class TestConfigReload:
    async def test_read_routes_reload_live(self, live):
        """A read route added to the config names its practice from the next request on."""
        assert live.runtime.pipeline().read_routes.match_route("GET", "/fhir/practice-a/x") is None
        live.rewrite_config(
            read_routes=[
                {
                    "method": "GET",
                    "path": "/fhir/{practice_id}/x",
                    "practice_from": {"path_param": "practice_id"},
                }
            ]
        )
        await live.reloader.tick()
        match = live.runtime.pipeline().read_routes.match_route("GET", "/fhir/practice-a/x")
        assert match is not None
        assert match.path_practice() == "practice-a"

    async def test_field_masks_reload_live_and_listener_changes_need_a_restart(self, live, caplog):
        """A new mask applies to the next request; a new listen port is only logged."""
        caplog.set_level(logging.INFO)
        assert await live.post_patient("practice-a", _record("p1")) == 201
        live.rewrite_config(
            fields={"classes": {"insurance_id": {"mask": {"text": "[hidden]"}}}},
            listen={"port": 18099},
        )
        await live.reloader.tick()
        assert live.reloader.reloads == 1
        _, body = await live.get_patient("p1", sub=None)
        assert body["member_id"] == "[hidden]"
        assert live.runtime.settings.listen.port == 0
        warned = [r for r in caplog.records if "restart required" in r.getMessage()]
        assert warned
        assert warned[0].__dict__["fields"]["sections"] == ["listen"]

    async def test_an_invalid_config_is_refused(self, live):
        """Unparseable YAML leaves the running config in place (and the same keys)."""
        before = live.runtime.settings
        kids = {i.kid for i in live.runtime.keyring().infos()}
        live.config.write_text("keys: [unclosed\n")
        await live.reloader.tick()
        assert live.reloader.failures == 1
        assert live.runtime.settings == before
        assert {i.kid for i in live.runtime.keyring().infos()} == kids
        assert await live.post_patient("practice-a", _record("p9")) == 201

    async def test_a_shred_applies_even_while_the_config_file_is_broken(self, live, caplog):
        """A half-edited YAML must not keep a shredded practice decrypting.

        Found in review: the whole reload was refused, so the old keyring kept serving it.
        """
        caplog.set_level(logging.INFO)
        assert await live.post_patient("practice-b", _record("b1")) == 201
        run_keys("shred", "--practice", "practice-b", "--confirm", "practice-b",
                 config=live.config, check=True)  # fmt: skip
        live.config.write_text("keys: [unclosed\n")  # someone is mid-edit when the poll comes
        await live.reloader.tick()
        assert live.reloader.failures == 1
        status, body = await live.get_patient("b1")
        assert status == 200
        assert body["ssn"] != SSN
        assert any("keystore and KEK were reloaded" in r.getMessage() for r in caplog.records)

    async def test_sighup_style_request_reloads_without_file_changes(self, live):
        """request_reload (the SIGHUP handler) forces a reload on the next turn."""
        live.reloader.request_reload()
        await live.reloader.tick()
        assert live.reloader.reloads == 1


class TestUsage:
    async def test_encryptions_are_counted_per_key_and_shown_by_list(self, live):
        """Writes through the proxy count per key version; `phi-keys list` prints the counts."""
        for i in range(3):
            assert await live.post_patient("practice-a", _record(f"p{i}")) == 201
        await live.reloader.tick()
        kid = live.runtime.keyring().primary("practice-a").kid
        counts = read_usage(usage_path(load_settings(live.config).keys))
        assert counts == {kid: 9}, "three fields per record"
        listed = run_keys("list", "--json", "--usage", config=live.config, check=True)
        assert f'"kid": "{kid}"' in listed.stdout
        assert '"encryptions": 9' in listed.stdout

    async def test_auto_rotate_after_rotates_once_the_limit_is_reached(self, live):
        """With keys.auto_rotate_after, the proxy rotates the practice by itself and reloads."""
        live.rewrite_config(keys={"auto_rotate_after": 6})
        await live.reloader.tick()
        old = live.runtime.keyring().primary("practice-a").kid
        for i in range(2):
            assert await live.post_patient("practice-a", _record(f"p{i}")) == 201
        await live.reloader.tick()
        new = live.runtime.keyring().primary("practice-a").kid
        assert new != old
        assert live.runtime.keyring().primary("practice-b").kid != new
        infos = keystore_file(load_settings(live.config).keys).infos()
        assert sum(1 for i in infos if i.practice == "practice-a") == 2
        status, body = await live.get_patient("p0")
        assert (status, body["ssn"]) == (200, SSN)

    async def test_a_key_near_its_usage_limit_raises_one_alert(self, live, caplog):
        """At 80% of keys.usage_limit the proxy alerts once per key, naming the command to run."""
        live.rewrite_config(keys={"usage_limit": 10})
        await live.reloader.tick()
        kid = live.runtime.keyring().primary("practice-a").kid
        caplog.set_level(logging.WARNING, logger="phi_proxy.alert")
        assert await live.post_patient("practice-a", _record("p0")) == 201  # 3 encryptions
        await live.reloader.tick()
        assert not [r for r in caplog.records if r.getMessage() == "key_usage_high"]
        for i in (1, 2):  # 9 encryptions: 90% of 10
            assert await live.post_patient("practice-a", _record(f"p{i}")) == 201
        await live.reloader.tick()
        assert await live.post_patient("practice-a", _record("p3")) == 201
        await live.reloader.tick()  # past the limit: still one alert for this key
        alerts = [r.fields for r in caplog.records if r.getMessage() == "key_usage_high"]
        assert alerts == [
            {
                "practice": "practice-a",
                "kid": kid,
                "encryptions": 9,
                "usage_limit": 10,
                "action": "phi-keys rotate --practice practice-a",
            }
        ]


class TestUsageCounter:
    def test_two_processes_add_up(self, tmp_path):
        """Two counters on one file merge their counts instead of overwriting each other."""
        path = tmp_path / "k.usage.json"
        first, second = UsageCounter(path), UsageCounter(path)
        first.record("a" * 16, 5)
        second.record("a" * 16, 7)
        second.record("b" * 16)
        assert first.flush() == {"a" * 16: 5}
        assert second.flush() == {"a" * 16: 12, "b" * 16: 1}
        assert read_usage(path) == {"a" * 16: 12, "b" * 16: 1}

    def test_a_failed_flush_keeps_the_counts(self, tmp_path, caplog):
        """When the file is unreadable the batch stays pending and a warning is logged."""
        path = tmp_path / "k.usage.json"
        path.write_text("garbage")
        counter = UsageCounter(path)
        counter.record("c" * 16, 3)
        assert counter.flush() is None
        assert counter.pending == 3
        assert any("cannot be saved" in r.getMessage() for r in caplog.records)

    def test_due_callback_fires_at_the_batch_size(self, tmp_path):
        """on_due is called once flush_every encryptions are pending."""
        calls = []
        counter = UsageCounter(tmp_path / "u.json", flush_every=3, on_due=lambda: calls.append(1))
        counter.record("d" * 16)
        counter.record("d" * 16)
        assert calls == []
        counter.record("d" * 16)
        assert calls == [1]


class TestListWarning:
    def test_list_warns_near_the_usage_limit(self, env):
        """`phi-keys list` warns on stderr when an active key nears keys.usage_limit."""
        folder, config, _ = env
        text = config.read_text().replace(
            "usage_flush_every: 50", "usage_flush_every: 50\n  usage_limit: 10"
        )
        config.write_text(text)
        settings = load_settings(config).keys
        kid = keystore_file(settings).load().primary("practice-a").kid
        counter = UsageCounter(usage_path(settings))
        counter.record(kid, 9)
        counter.flush()
        done = run_keys("list", config=config, check=True)
        assert "90% of keys.usage_limit" in done.stderr
        assert "rotate --practice practice-a" in done.stderr
        row = next(line for line in done.stdout.splitlines() if kid in line)
        assert row.split()[-1] == "9"
        assert folder.exists()
