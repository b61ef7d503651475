"""The JWKS file vanishes under a running proxy: it keeps its last good keys and is not ready.

Before, the watcher's reload built an authenticator with no keys, so every token got 401 at
once while /readyz still answered ready.
"""

from __future__ import annotations

SSN = "123-45-6789"


async def test_a_deleted_jwks_file_keeps_the_last_keys_and_readiness_names_it(live):
    """After the reload the file's removal causes, alice still reads; /readyz says jwks false."""
    record = {"patient_id": "p1", "ssn": SSN, "member_id": "M-1", "medical_history": "flu"}
    assert await live.post_patient("practice-a", record) == 201
    assert (await live.runtime.readiness())["jwks"] is True
    jwks = live.config.parent / "jwks.json"
    jwks.unlink()
    await live.reloader.tick()
    assert live.reloader.reloads == 1
    status, body = await live.get_patient("p1")
    assert (status, body["ssn"]) == (200, SSN)
    checks = await live.runtime.readiness()
    assert checks["jwks"] is False
    (problem,) = live.runtime.problems()
    assert problem.startswith(f"identity.jwks_file {jwks}: cannot be read")
    assert "still verifying with the keys read" in problem
