"""Bytes in = bytes out through the real proxy: a FHIR bundle written, stored, read back."""

from __future__ import annotations

from pathlib import Path

from blackbox_env import PLANTED

FHIR_BUNDLE = Path(__file__).parents[1] / "fixtures" / "fhir-patient-bundle.json"
FHIR = "application/fhir+json"
SSN = b"999-80-9771"


async def _store(proxy_env) -> tuple[bytes, bytes]:
    """POST the bundle on a write route; (what was written, what the portal stored)."""
    PLANTED.add(SSN.decode())
    written = FHIR_BUNDLE.read_bytes()
    await proxy_env.grant("writer", "practice-a")  # staff: the SSN class is deterministic
    response = await proxy_env.get(
        "/api/practices/practice-a/patients",
        method="POST",
        data=written,
        headers={"Content-Type": FHIR},
        sub="writer",
    )
    assert response.status == 200
    stored = proxy_env.portal.last().body
    proxy_env.portal.script("/api/practices/practice-a/bundles/1", stored, content_type=FHIR)
    return written, stored


class TestFhirBundleRoundTrip:
    async def test_portal_stores_the_bundle_as_sent_but_for_the_ssn(self, proxy_env):
        """Only the SSN identifier's value differs between what was sent and what is stored."""
        written, stored = await _store(proxy_env)
        assert SSN not in stored
        before, _token, after = stored.partition(b'"phi1.d.')
        assert written.startswith(before)
        assert written.endswith(after.partition(b'"')[2])
        assert b'"value": 8E+1,' in stored

    async def test_grantee_reads_back_exactly_the_bytes_written(self, proxy_env):
        """Pretty-printing, `8E+1`, `1.1E+2` and escapes come back byte-identical."""
        await proxy_env.grant("alice", "practice-a")
        written, _ = await _store(proxy_env)
        response = await proxy_env.get("/api/practices/practice-a/bundles/1", sub="alice")
        assert response.status == 200
        assert await response.read() == written

    async def test_stranger_reads_the_same_bytes_with_the_ssn_masked(self, proxy_env):
        """A caller without a grant gets every byte but the SSN, which is masked in place."""
        written, _ = await _store(proxy_env)
        response = await proxy_env.get("/api/practices/practice-a/bundles/1", sub="mallory")
        assert response.status == 200
        assert await response.read() == written.replace(b'"' + SSN + b'"', b'"***-**-9771"')
