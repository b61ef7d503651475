"""The portal URL: client text never reaches the authority; path and query stay byte for byte.

Also: an upstream TLS client key readable by group or others is refused at startup.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from proxy.forward.upstream import (
    BadRequestTarget,
    Upstream,
    refuse_odd_target,
    upstream_ssl_context,
)
from proxy.server_settings import TlsFileError, UpstreamSettings

if TYPE_CHECKING:
    from pathlib import Path

BASES = ["http://127.0.0.1:8000", "http://portal/app/", "https://[::1]:9443/x/y", "http://portal"]
TARGETS = [
    "/api/a%2Fb/./c/../d;x=1//e?q=%E2%82%AC&r=a+b&s=%zz&t=%2f",
    "/",
    "/a?",
    "/@evil.example/x",
    "/:80/x",
    "/\\evil.example/x",
    "/a?x=1?y=//z",
    "/%2F%2Fevil.example",
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("target", TARGETS)
def test_url_keeps_the_configured_authority_and_the_raw_path(base, target):
    configured = UpstreamSettings(url=base)
    url = Upstream(configured).url_for(target)
    expected_base = Upstream(configured).url_for("/")
    assert (url.scheme, url.raw_authority) == (expected_base.scheme, expected_base.raw_authority)
    prefix = expected_base.raw_path.rstrip("/")
    assert url.raw_path_qs == prefix + target.removesuffix("?")


@given(st.text(alphabet=st.characters(codec="ascii", exclude_characters="#"), max_size=40))
def test_no_target_changes_the_authority(suffix):
    upstream = Upstream(UpstreamSettings(url="http://portal:8000/base"))
    target = "/" + suffix
    try:
        url = upstream.url_for(target)
    except BadRequestTarget:
        assert target.startswith("//")
        return
    assert (url.host, url.port) == ("portal", 8000)
    assert url.raw_path.startswith("/base/")


@pytest.mark.parametrize("target", ["http://x/a", "host://x/a", "*", "//x/a", "", "a/b", "?q"])
def test_targets_without_a_single_leading_slash_are_refused(target):
    with pytest.raises(BadRequestTarget) as caught:
        refuse_odd_target(target)
    assert caught.value.status == 400
    assert caught.value.code == "bad_request_target"
    with pytest.raises(BadRequestTarget):
        Upstream(UpstreamSettings(url="http://portal")).url_for(target)


def _client_pair(folder: Path) -> tuple[Path, Path]:
    """A throwaway client certificate and key (generated per test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phi-proxy")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "client.crt", folder / "client-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _mtls_settings(cert: Path, key: Path) -> UpstreamSettings:
    return UpstreamSettings.model_validate(
        {
            "url": "https://127.0.0.1:8443",
            "tls": {"client_cert_file": str(cert), "client_key_file": str(key)},
        }
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
async def test_loose_upstream_client_key_is_refused_at_startup(tmp_path, mode):
    cert, key = _client_pair(tmp_path)
    key.chmod(mode)
    settings = _mtls_settings(cert, key)
    with pytest.raises(TlsFileError) as caught:
        upstream_ssl_context(settings)
    message = str(caught.value)
    assert message.startswith("upstream.tls.client_key_file: ")
    assert f"chmod 600 {key}" in message
    upstream = Upstream(settings)
    with pytest.raises(TlsFileError):
        await upstream.open()  # what the app's startup runs
    await upstream.close()


async def test_private_upstream_client_key_is_loaded(tmp_path):
    cert, key = _client_pair(tmp_path)
    key.chmod(0o600)
    context = upstream_ssl_context(_mtls_settings(cert, key))
    assert isinstance(context, ssl.SSLContext)
