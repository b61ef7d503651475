"""Real KEK back ends for tests and benchmarks: throwaway SoftHSM2 tokens, a loopback KMS server.

Not mocks: `create_softhsm_token` initializes a real SoftHSM2 token (the Debian package
`softhsm2`) in a folder of its own, and `kms_server` runs moto's KMS server as a separate
process on 127.0.0.1, so the providers are tested through the same library calls and network
requests as in production. Both are for throwaway test material only: the token's PIN is passed
to `softhsm2-util` on its command line, and moto accepts any credentials.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "SOFTHSM_MODULES",
    "SoftHsmToken",
    "create_softhsm_token",
    "find_softhsm",
    "kms_client_env",
    "kms_server",
]

#: Where Debian, Ubuntu and source builds put SoftHSM2's PKCS#11 library.
SOFTHSM_MODULES: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSM2 token: SOFTHSM2_CONF must point at `conf` before SoftHSM2 starts.

    `directory` holds this token's files alone (moving it away is how tests pull the token).
    """

    conf: Path
    module: Path
    label: str
    pin: str
    directory: Path

    def env(self) -> dict[str, str]:
        """The environment variable that selects this token folder."""
        return {"SOFTHSM2_CONF": str(self.conf)}


def find_softhsm() -> tuple[Path, Path] | str:
    """(PKCS#11 module, softhsm2-util) of an installed SoftHSM2, or why there is none."""
    util = shutil.which("softhsm2-util")
    wanted = os.environ.get("PHI_TEST_SOFTHSM_MODULE")
    modules = (wanted,) if wanted else SOFTHSM_MODULES
    module = next((Path(m) for m in modules if Path(m).is_file()), None)
    if util is None or module is None:
        return (
            "SoftHSM2 is not installed (no softhsm2-util or libsofthsm2.so); "
            "`apt-get install softhsm2` or `make softhsm`"
        )
    try:
        import pkcs11  # noqa: F401, PLC0415 - only whether it is there
    except ImportError:
        return "python-pkcs11 is not installed: pip install -e '.[dev]'"
    return module, Path(util)


def create_softhsm_token(
    folder: Path, *, label: str, pin: str, so_pin: str = "so-pin-for-tests"
) -> SoftHsmToken:
    """Initialize a new token labelled `label` in the SoftHSM2 set-up under `folder`.

    Tokens made with the same `folder` share one SOFTHSM2_CONF, so one process can use them
    all (SoftHSM2 reads the variable once, when the library starts).
    """
    found = find_softhsm()
    if isinstance(found, str):
        raise RuntimeError(found)  # noqa: TRY004 - a missing install, not a wrong type
    module, util = found
    tokens = folder / "tokens"
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
    before = set(tokens.iterdir())
    subprocess.run(  # noqa: S603 - a fixed program and our own arguments
        [str(util), "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        env=os.environ | {"SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    (directory,) = set(tokens.iterdir()) - before
    return SoftHsmToken(
        conf=conf, module=Path(os.path.realpath(module)), label=label, pin=pin, directory=directory
    )


def kms_client_env() -> dict[str, str]:
    """Environment for boto3 against the test server: fake keys, no profile, no metadata."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy value
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@contextlib.contextmanager
def kms_server(*, start_timeout: float = 60.0) -> Iterator[str]:
    """Run moto's server (KMS and the rest) on a free loopback port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 - our interpreter, moto's module
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"moto's server exited at start (status {server.returncode})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not listen on {url} within {start_timeout}s")
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
