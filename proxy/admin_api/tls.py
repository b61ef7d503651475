"""The admin API's TLS context: the listener's own rules, plus client certificates (mTLS).

With `admin_api.tls.client_ca_file` a connection without a certificate signed by that CA is
refused during the handshake, before any HTTP is read; the bearer token is still required, so
a stolen token is useless away from a machine holding an admin certificate.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from proxy.server_settings import TlsFileError, listener_ssl_context

if TYPE_CHECKING:
    from proxy.admin_api.settings import AdminApiTls

__all__ = ["admin_api_ssl_context"]


def admin_api_ssl_context(tls: AdminApiTls) -> ssl.SSLContext:
    """TLS 1.2+ with the configured certificate; client certificates required when a CA is set."""
    context = listener_ssl_context(tls)
    if tls.client_ca_file is None:
        return context
    try:
        context.load_verify_locations(cafile=str(tls.client_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError(
            f"admin_api.tls.client_ca_file: {tls.client_ca_file} cannot be loaded as PEM CA "
            f"certificates ({exc}); it must hold the CA that signs administrators' client "
            "certificates"
        ) from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context
