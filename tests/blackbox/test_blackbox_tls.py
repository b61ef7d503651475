"""TLS on both hops: the client listener (TLS 1.2+) and a verified connection to the portal."""

from __future__ import annotations

import asyncio
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from blackbox_env import write_env_files
from blackbox_portal import RecordingPortal
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_blackbox_serve import free_port, wait_ready

from proxy.app import build_app
from proxy.runtime import Runtime
from proxy.serve import _listener_ssl
from proxy.settings import load_settings
from tests.cli_process import start_cli

pytestmark = pytest.mark.slow


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (generated per test, never committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
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


class TestUpstreamTls:
    async def test_portal_over_verified_tls(self, tmp_path):
        """With upstream.tls.ca_file the proxy talks HTTPS to the portal and verifies it."""
        cert, key = self_signed(tmp_path, "portal")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        portal = RecordingPortal()
        runner = web.AppRunner(portal.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        try:
            for ca_file, expected in ((str(cert), 200), (None, 502)):
                folder = tmp_path / f"case-{expected}"
                folder.mkdir()
                tls = {"ca_file": ca_file} if ca_file else {}
                _config, settings, _issuer = write_env_files(
                    folder,
                    f"https://127.0.0.1:{port}",
                    overrides={
                        "upstream": {"url": f"https://127.0.0.1:{port}", "tls": tls, "timeout": 5}
                    },
                )
                proxy = TestServer(build_app(Runtime(settings)), host="127.0.0.1")
                await proxy.start_server()
                try:
                    async with (
                        aiohttp.ClientSession() as http,
                        http.get(proxy.make_url("/x")) as response,
                    ):
                        assert response.status == expected
                finally:
                    await proxy.close()
        finally:
            await runner.cleanup()


class TestListenerTls:
    async def test_listener_serves_tls_12_or_newer_only(self, tmp_path):
        """listen.tls serves HTTPS with the configured certificate and refuses TLS 1.1."""
        cert, key = self_signed(tmp_path, "proxy")
        portal = RecordingPortal()
        portal_server = TestServer(portal.app(), host="127.0.0.1")
        await portal_server.start_server()
        port, admin = free_port(), free_port()
        config, _settings, _issuer = write_env_files(
            tmp_path,
            str(portal_server.make_url("")).rstrip("/"),
            overrides={
                "listen": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": {"cert_file": str(cert), "key_file": str(key)},
                },
                "admin": {"host": "127.0.0.1", "port": admin},
            },
        )
        process = await start_cli(
            [str(Path(sys.executable).parent / "phi-proxy"), "serve", "-c", str(config)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_ready(f"http://127.0.0.1:{admin}/readyz", process)
            trusting = ssl.create_default_context(cafile=str(cert))
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"https://127.0.0.1:{port}/x", ssl=trusting) as response,
            ):
                assert response.status == 200
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusting)
            assert writer.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}
            writer.close()
            await writer.wait_closed()
            assert _listener_ssl(load_settings(config)).minimum_version == ssl.TLSVersion.TLSv1_2
        finally:
            process.terminate()
            await process.wait()
            await portal_server.close()
