"""Canary patients end to end: a real proxy, a real portal stand-in, a real keystore and register.

The canary is issued with `phi-keys canary` against the proxy's own config, planted in the
portal's answers (or written through the proxy), and the running proxy learns of it by a reload,
as in production. Each test asserts on the bytes a caller gets, the alert lines and the audit
trail. Runs on both transform cores (`make test` runs this folder with PHI_PROXY_PURE=1 too).
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from blackbox_env import PLANTED, running_proxy_env, written

from keys.cli import main as phi_keys
from proxy import metrics
from proxy.audit.cli import main as phi_audit
from proxy.cli import main as phi_proxy
from proxy.logs import ALERT_LOGGER
from proxy.reload import Reloader

CANARY_SSN = "402-17-5530"
CANARY_MEMBER = "MBR-5530-KX"
OTHER_SSN = "517-33-5530"  # same last four: the masks of canary and control look alike
OTHER_MEMBER = "MBR-5530-QQ"
AUDIT = {"flush_interval": 20, "fsync": False, "checkpoint_every": 50}
#: Response headers that differ between any two responses.
PER_RESPONSE = {"date", "x-request-id"}

PLANTED.update({CANARY_SSN, CANARY_MEMBER, OTHER_SSN, OTHER_MEMBER})


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path, overrides={"audit": AUDIT}) as env:
        await env.grant("alice", "practice-a")
        yield env


def issue_canary(env, capsys, *fields, practice="practice-a"):
    """`phi-keys canary` against the proxy's config; returns (canary id, class → token)."""
    capsys.readouterr()
    args = ["-c", str(env.config_path), "canary", "--practice", practice, "--label", "test"]
    for spec in fields:
        args += ["--field", spec]
    assert phi_keys(args) == 0
    out = capsys.readouterr().out
    tokens = dict(line.split() for line in out.splitlines() if line.startswith("  "))
    return out.split()[2], tokens


async def check_config(env):
    """`phi-proxy check-config` on the env's config (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(phi_proxy, ["check-config", "-c", str(env.config_path)])


async def reload(env):
    assert await Reloader(env.runtime, env.config_path).reload(reason="test")


def patient(pid, ssn, member):
    return {
        "patient_id": pid,
        "practice_id": "practice-a",
        "name": "Pat Example",
        "ssn": ssn,
        "insurance": {"member_id": member},
    }


def canary_alerts(caplog):
    return [
        r.fields for r in caplog.records if r.name == ALERT_LOGGER and r.msg == "canary_touched"
    ]


def canary_counts():
    """(masked ssn touches of practice-a, canary_touched alerts) as /metrics reports them."""
    registry = metrics.current().registry
    touches = registry.get_sample_value(
        "phi_proxy_canary_touches_total",
        {"practice": "practice-a", "field_class": "ssn", "how": "masked"},
    )
    alerts = registry.get_sample_value("phi_proxy_alerts_total", {"alert": "canary_touched"})
    return touches or 0.0, alerts or 0.0


def events(env):
    lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e["type"] == "request"]


def event_of(env, request_id):
    (event,) = [e for e in events(env) if e["request_id"] == request_id]
    return event


def shown(response):
    """What a caller can observe of a response: status, headers (but per-response ones), body."""
    headers = sorted((k.lower(), v) for k, v in response.headers.items())
    return response.status, [(k, v) for k, v in headers if k not in PER_RESPONSE]


class TestReads:
    @pytest.mark.parametrize(("sub", "how"), [("alice", "disclosed"), ("mallory", "masked")])
    async def test_a_canary_reads_exactly_like_it_did_before_it_was_registered(
        self, env, capsys, caplog, sub, how
    ):
        """Same status, headers and bytes as before registration; the alert and audit flag it."""
        canary_id, tokens = issue_canary(
            env, capsys, f"ssn={CANARY_SSN}", f"insurance_id={CANARY_MEMBER}"
        )
        env.portal.script(
            "/api/patients/c1",
            orjson.dumps(patient("c1", tokens["ssn"], tokens["insurance_id"])),
        )
        # The proxy started before the canary was issued: it does not know it yet.
        before = await env.get("/api/patients/c1", sub=sub)
        assert canary_alerts(caplog) == []
        await reload(env)
        after = await env.get("/api/patients/c1", sub=sub)

        assert shown(after) == shown(before)
        assert await after.read() == await before.read()
        body = orjson.loads(await after.read())
        if how == "disclosed":
            assert body["ssn"] == CANARY_SSN
        else:
            assert body["ssn"] == "***-**-5530"
            assert body["insurance"]["member_id"] == "[redacted]"

        (alert,) = canary_alerts(caplog)
        request_id = after.headers["X-Request-Id"]
        assert alert["request_id"] == request_id
        assert alert["subject"] == str(env.subject(sub))
        assert alert["touches"] == [
            {"canary": canary_id, "practice": "practice-a", "field_class": c, "how": how}
            for c in ("insurance_id", "ssn")
        ]
        for token in tokens.values():
            assert token not in json.dumps(alert)
        await written(env)
        assert "canary" not in event_of(env, before.headers["X-Request-Id"])
        assert event_of(env, request_id)["canary"] == alert["touches"]

    @pytest.mark.parametrize("sub", ["alice", "mallory"])
    async def test_canary_and_ordinary_patient_answers_have_the_same_shape(
        self, env, capsys, caplog, sub
    ):
        """Side by side with a real patient of equal-looking values: same headers, same masks."""
        _, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}", f"insurance_id={CANARY_MEMBER}")
        await reload(env)
        env.portal.script(
            "/api/patients/c1",
            orjson.dumps(patient("p1", tokens["ssn"], tokens["insurance_id"])),
        )
        ordinary = patient(
            "p1",
            env.encrypt("practice-a", "ssn", OTHER_SSN, deterministic=True),
            env.encrypt("practice-a", "insurance_id", OTHER_MEMBER),
        )
        env.portal.script("/api/patients/p1", orjson.dumps(ordinary))
        canary = await env.get("/api/patients/c1", sub=sub)
        plain = await env.get("/api/patients/p1", sub=sub)
        assert shown(canary) == shown(plain)
        canary_body, plain_body = await canary.read(), await plain.read()
        if sub == "mallory":  # the masks keep the same last four digits: identical bytes
            assert canary_body == plain_body
        else:
            swapped = canary_body.replace(CANARY_SSN.encode(), OTHER_SSN.encode())
            assert swapped.replace(CANARY_MEMBER.encode(), OTHER_MEMBER.encode()) == plain_body
        assert len(canary_alerts(caplog)) == 1  # the ordinary patient raised nothing

    async def test_a_canary_in_a_page_of_100_is_found_and_reported(self, env, capsys, caplog):
        """One canary among 100 records: one touch; `phi-audit report --canaries` lists it."""
        canary_id, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        records = [
            patient(f"p{i}", env.encrypt("practice-a", "ssn", f"517-33-{i:04d}"), None)
            for i in range(100)
        ]
        records[57]["ssn"] = tokens["ssn"]
        env.portal.script("/api/patients", orjson.dumps({"patients": records}))
        touches, alerts = canary_counts()
        response = await env.get("/api/patients", sub="mallory")
        assert response.status == 200
        (alert,) = canary_alerts(caplog)
        assert alert["touch_count"] == 1
        assert canary_counts() == (touches + 1, alerts + 1)  # what Prometheus scrapes
        await written(env)

        capsys.readouterr()
        assert (
            phi_audit(["report", "-c", str(env.config_path), "--canaries", "--format", "json"]) == 0
        )
        (row,) = json.loads(capsys.readouterr().out)
        assert row == {
            "ts": row["ts"],
            "subject": str(env.subject("mallory")),
            "practice": "practice-a",
            "field_class": "ssn",
            "how": "masked",
            "canary": canary_id,
            "request_id": response.headers["X-Request-Id"],
        }

    async def test_a_json_escaped_spelling_is_found(self, env, capsys, caplog):
        """A token the portal spells with JSON escapes is the same token to a JSON client."""
        _, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        escaped = tokens["ssn"].replace("phi1.", "\\u0070hi1\\u002e", 1)
        env.portal.script(
            "/api/patients/e1", b'{"patient_id": "e1", "ssn": "%s"}' % escaped.encode()
        )
        response = await env.get("/api/patients/e1", sub="alice")
        assert orjson.loads(await response.read())["ssn"] == CANARY_SSN
        (alert,) = canary_alerts(caplog)
        assert alert["touches"][0]["how"] == "disclosed"

    async def test_a_withheld_answer_still_counts_as_a_masked_touch(self, env, capsys, caplog):
        """The transform refuses the canary's page (502): nothing shown, the touch recorded."""
        canary_id, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        doc = patient("c1", tokens["ssn"], None) | {"link": "/p?t=phi1%2Ed%2E0123"}
        env.portal.script("/api/patients/c1", orjson.dumps(doc))
        response = await env.get("/api/patients/c1", sub="alice")
        assert response.status == 502
        assert CANARY_SSN.encode() not in await response.read()
        (alert,) = canary_alerts(caplog)
        assert alert["touches"] == [
            {"canary": canary_id, "practice": "practice-a", "field_class": "ssn", "how": "masked"}
        ]
        await written(env)
        assert event_of(env, response.headers["X-Request-Id"])["status"] == 502

    async def test_repeated_touches_by_one_subject_alert_once_and_audit_each(
        self, env, capsys, caplog
    ):
        """A caller looping on a canary gets one alert line per interval; each touch is audited."""
        _, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        env.portal.script("/api/patients/c1", orjson.dumps(patient("c1", tokens["ssn"], None)))
        ids = [
            (await env.get("/api/patients/c1", sub="mallory")).headers["X-Request-Id"]
            for _ in range(3)
        ]
        assert len(canary_alerts(caplog)) == 1
        await written(env)
        assert all("canary" in event_of(env, i) for i in ids)

    async def test_a_removed_canary_no_longer_alerts(self, env, capsys, caplog):
        """After `--remove ID --force` and a reload, its tokens are ordinary tokens again."""
        canary_id, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        assert (
            phi_keys(["-c", str(env.config_path), "canary", "--remove", canary_id, "--force"]) == 0
        )
        await reload(env)
        env.portal.script("/api/patients/c1", orjson.dumps(patient("c1", tokens["ssn"], None)))
        assert (await env.get("/api/patients/c1", sub="alice")).status == 200
        assert canary_alerts(caplog) == []


class TestRequests:
    @pytest.mark.parametrize("rotated", [False, True], ids=["issued-key", "after-rotation"])
    async def test_writing_the_canary_value_through_the_proxy_is_a_touch(
        self, env, capsys, caplog, rotated
    ):
        """The write is flagged as `sent`, with the issued token or, after a rotation, another.

        After a key rotation the portal stores the token the new key gives: never issued, and
        still the canary.
        """
        canary_id, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        if rotated:
            rotate = ["-c", str(env.config_path), "rotate", "--practice", "practice-a"]
            assert phi_keys(rotate) == 0
        await reload(env)
        response = await env.get(
            "/api/practices/practice-a/patients",
            sub="alice",
            method="POST",
            data=orjson.dumps({"name": "Pat Example", "ssn": CANARY_SSN}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200
        stored = orjson.loads(env.portal.last().body)["ssn"]
        assert (stored == tokens["ssn"]) is not rotated
        (alert,) = canary_alerts(caplog)
        assert alert["touches"] == [
            {"canary": canary_id, "practice": "practice-a", "field_class": "ssn", "how": "sent"}
        ]
        await written(env)
        assert event_of(env, response.headers["X-Request-Id"])["canary"] == alert["touches"]

    async def test_a_canary_token_in_the_query_string_is_a_touch(self, env, capsys, caplog):
        """A lookup carrying the token in its URL is `sent`; the portal's echo of it `masked`."""
        _, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        response = await env.get(f"/api/lookup?ssn={tokens['ssn']}", sub="mallory")
        assert response.status == 200
        (alert,) = canary_alerts(caplog)
        assert [t["how"] for t in alert["touches"]] == ["masked", "sent"]

    async def test_ordinary_writes_and_reads_raise_nothing(self, env, capsys, caplog):
        """With a canary registered, other patients' traffic leaves no canary trace."""
        issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        response = await env.get(
            "/api/practices/practice-a/patients",
            sub="alice",
            method="POST",
            data=orjson.dumps({"ssn": OTHER_SSN}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200
        stored = orjson.loads(env.portal.last().body)["ssn"]
        env.portal.script("/api/patients/p1", orjson.dumps(patient("p1", stored, None)))
        assert (await env.get("/api/patients/p1", sub="alice")).status == 200
        assert canary_alerts(caplog) == []
        await written(env)
        assert all("canary" not in e for e in events(env))


class TestRegister:
    async def test_check_config_counts_the_canary_tokens(self, env, capsys):
        """check-config opens the register as serve does and says how many tokens it watches."""
        issue_canary(env, capsys, f"ssn={CANARY_SSN}", f"insurance_id={CANARY_MEMBER}")
        assert await check_config(env) == 0
        assert "keystore.json.canaries.json (2 token(s) watched)" in capsys.readouterr().out

    async def test_a_register_others_may_write_is_refused_and_the_old_canaries_stay(
        self, env, capsys, caplog
    ):
        """check-config fails naming the chmod; a reload is refused and the tripwire stays armed."""
        _, tokens = issue_canary(env, capsys, f"ssn={CANARY_SSN}")
        await reload(env)
        (env.folder / "keystore.json.canaries.json").chmod(0o666)
        assert await check_config(env) != 0
        assert "chmod 600" in capsys.readouterr().err
        assert not await Reloader(env.runtime, env.config_path).reload(reason="test")
        env.portal.script("/api/patients/c1", orjson.dumps(patient("c1", tokens["ssn"], None)))
        assert (await env.get("/api/patients/c1", sub="alice")).status == 200
        assert len(canary_alerts(caplog)) == 1
