"""`phi-proxy healthcheck`: ask the admin listener the config names whether the proxy is up.

The image's HEALTHCHECK used to probe a hard-coded 127.0.0.1:9090, so a config with another
`admin.port` made a healthy container "unhealthy" (and a restart policy kill it). This reads
`admin.host` and `admin.port` from the same config as `serve` (`-c FILE` or PHI_PROXY_CONFIG,
which the image sets). Standard library only, and no environment proxy: the probe never leaves
the host.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import ipaddress
import sys
import urllib.error
import urllib.request

from keys.config_file import load_section, resolve_config_path
from proxy.server_settings import AdminSettings

__all__ = ["admin_url", "healthcheck"]

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped to loopback here
_HEALTHY = 200


def admin_url(admin: AdminSettings, path: str) -> str:
    """The URL of `path` on the admin listener; a wildcard address is probed on loopback."""
    host = _WILDCARDS.get(admin.host, admin.host)
    try:
        if ipaddress.ip_address(host).version == 6:  # noqa: PLR2004
            host = f"[{host}]"
    except ValueError:
        pass  # a name, e.g. localhost
    return f"http://{host}:{admin.port}{path}"


def healthcheck(config: str | None, *, ready: bool, timeout: float) -> int:
    """0 when the admin listener answers 200, else 1 with one line on stderr saying why."""
    path = resolve_config_path(config)
    admin = load_section(path, "admin", AdminSettings)
    if admin.port == 0:
        print(
            f"phi-proxy healthcheck: admin.port is 0 in {path}, so there is no admin listener "
            "to ask; set admin.port, or run the container without a health check",
            file=sys.stderr,
        )
        return 1
    url = admin_url(admin, "/readyz" if ready else "/healthz")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            status = response.status
            body = response.read(4096)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(4096)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"phi-proxy healthcheck: {url}: no answer ({reason})", file=sys.stderr)
        return 1
    if status == _HEALTHY:
        print(f"{url}: {status}")
        return 0
    text = body.decode("utf-8", "replace").strip()
    print(f"phi-proxy healthcheck: {url} answered {status}: {text}", file=sys.stderr)
    return 1
