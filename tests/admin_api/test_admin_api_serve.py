"""`phi-proxy serve` with the admin API enabled, over mutual TLS, as a real process.

The admin API listens on its own port only; with admin_api.tls.client_ca_file a connection
without a client certificate from that CA fails in the handshake, before any token is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from admin_helpers import ADMIN_SUB, ROLE
from aiohttp.test_utils import TestServer
from blackbox_env import PLANTED, write_env_files
from blackbox_portal import RecordingPortal
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_blackbox_serve import free_port, wait_ready

from keys.settings import open_keyring
from tests.cli_process import start_cli

pytestmark = pytest.mark.slow
PHI_PROXY = Path(sys.executable).parent / "phi-proxy"
SSN = "900-77-2468"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _issue(ca, ca_key, common_name: str, *, server: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _pki(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and an admin client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("admin API test CA"))
        .issuer_name(_name("admin API test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    server_cert, server_key = _write(
        folder, "server", *_issue(ca, ca_key, "127.0.0.1", server=True)
    )
    client_cert, client_key = _write(folder, "admin", *_issue(ca, ca_key, "ada", server=False))
    return {
        "ca": ca_path,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def _client_context(pki: dict[str, Path], *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if with_certificate:
        context.load_cert_chain(pki["client_cert"], pki["client_key"])
    return context


class TestServedAdminApi:
    async def test_mtls_admin_api_grants_and_the_client_port_never_serves_it(self, tmp_path):
        """With a client cert and admin token a grant is added; without a cert, no handshake."""
        portal = RecordingPortal()
        portal_server = TestServer(portal.app(), host="127.0.0.1")
        await portal_server.start_server()
        upstream = str(portal_server.make_url("")).rstrip("/")
        pki = _pki(tmp_path)
        ports = {"listen": free_port(), "admin": free_port(), "api": free_port()}
        overrides = {
            "listen": {"host": "127.0.0.1", "port": ports["listen"]},
            "admin": {"host": "127.0.0.1", "port": ports["admin"]},
            "admin_api": {
                "enabled": True,
                "port": ports["api"],
                "role": ROLE,
                "tls": {
                    "cert_file": str(pki["server_cert"]),
                    "key_file": str(pki["server_key"]),
                    "client_ca_file": str(pki["ca"]),
                },
            },
        }
        config_path, settings, issuer = write_env_files(tmp_path, upstream, overrides=overrides)
        PLANTED.add(SSN)
        token = open_keyring(settings.keys).encrypt("practice-a", "ssn", SSN)
        portal.script("/api/p", orjson.dumps({"practice_id": "practice-a", "ssn": token}))
        now = datetime.now(UTC).timestamp()
        admin = {"Authorization": f"Bearer {issuer.mint(ADMIN_SUB, now=now, roles=[ROLE])}"}
        nurse = {"Authorization": f"Bearer {issuer.mint('nurse', now=now)}"}
        api = f"https://127.0.0.1:{ports['api']}/api/v1"
        stderr_path = tmp_path / "proxy.stderr"
        with stderr_path.open("wb") as stderr:
            process = await start_cli(
                [str(PHI_PROXY), "serve", "-c", str(config_path)],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", process)
            mtls = _client_context(pki, with_certificate=True)
            async with aiohttp.ClientSession() as http:
                body = {
                    "subject": f"{issuer.issuer}|nurse",
                    "practice": "practice-a",
                    "ttl": "8h",
                    "reason": "night shift",
                }
                async with http.post(f"{api}/grants", json=body, headers=admin, ssl=mtls) as r:
                    assert r.status == 201, await r.text()
                proxied = f"http://127.0.0.1:{ports['listen']}/api/p"
                async with http.get(proxied, headers=nurse) as r:
                    assert orjson.loads(await r.read())["ssn"] == SSN
                bare = _client_context(pki, with_certificate=False)
                with pytest.raises(aiohttp.ClientError):
                    async with http.get(f"{api}/whoami", headers=admin, ssl=bare) as r:
                        await r.read()
                client_port = f"http://127.0.0.1:{ports['listen']}/api/v1/whoami"
                async with http.get(client_port, headers=admin) as r:
                    assert b"role_claim" not in await r.read()  # the portal's answer
                assert portal.last().path_qs == "/api/v1/whoami"
        finally:
            process.terminate()
            await process.wait()
            await portal_server.close()
        changes = [
            orjson.loads(line)
            for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            if '"grant_change"' in line
        ]
        assert [(e["action"], e["actor"]) for e in changes] == [
            ("add", f"{issuer.issuer}|{ADMIN_SUB}")
        ]
