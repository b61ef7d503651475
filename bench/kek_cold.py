"""Cold start per KEK provider: a keystore of 100 practices x 3 versions loaded by a new process.

What a proxy worker pays at start (and at every reload): build the KEK provider (read the file;
load the PKCS#11 module and log in; KMS: encrypt+decrypt a probe), verify the keystore's seal and
unwrap its 300 DEKs (one token operation or one KMS request each). Each figure is the best of
three fresh processes, timed inside the process from provider construction to ready keyring
(interpreter start and imports excluded). SoftHSM2 is the `softhsm2` package; KMS is moto's
server on loopback, so a real KMS adds one network round trip per DEK. A provider whose back end
is missing here is left out (and said so on stderr).

    python kek_cold.py            # all providers, JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from keys.kek import generate_kek_file
from keys.settings import KeySettings, keystore_file
from keys.testing_kek import create_softhsm_token, find_softhsm, kms_client_env, kms_server

PRACTICES = 100
VERSIONS = 3
RUNS = 3


def _child(settings_json: str) -> None:
    """In the measured process: construct the provider, load the keystore, print seconds."""
    settings = KeySettings.model_validate(json.loads(settings_json))
    start = time.perf_counter()
    ring = keystore_file(settings).load()
    took = time.perf_counter() - start
    if len(ring.infos()) != PRACTICES * VERSIONS:
        raise SystemExit("the keystore does not hold 100 x 3 keys")
    print(took)


def _make_keystore(settings: dict) -> None:
    store = keystore_file(KeySettings.model_validate(settings))
    store.create()
    store.add_practices(f"practice-{i:03d}" for i in range(PRACTICES))
    for _ in range(VERSIONS - 1):
        store.rotate_all()


def _best(settings: dict, env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(settings)],
            capture_output=True,
            text=True,
            env=os.environ | env,
            check=True,
            timeout=600,
        )
        times.append(float(done.stdout.strip()))
    return min(times)


def run() -> dict[str, float]:
    """µs per cold start, per provider available here."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="phi-kek-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        generate_kek_file(folder / "kek.b64")
        cases: list[tuple[str, dict, dict[str, str]]] = [
            ("file", {"provider": "file", "path": str(folder / "kek.b64")}, {})
        ]
        found = find_softhsm()
        if isinstance(found, str):
            print(f"kek_cold: pkcs11 left out: {found}", file=sys.stderr)
        else:
            token = create_softhsm_token(folder / "softhsm", label="bench", pin="bench-pin")
            env = token.env() | {"PHI_PROXY_PKCS11_PIN": token.pin}
            os.environ.update(env)  # this process creates the key and the keystore
            from keys.kek_pkcs11 import generate_pkcs11_kek, read_pin  # noqa: PLC0415 - extra

            label = token.label
            pin = read_pin(pin_env=None, pin_file=None, token_label=label)
            generate_pkcs11_kek(module=token.module, token_label=label, key_label="kek", pin=pin)
            kek = {
                "provider": "pkcs11",
                "module": str(token.module),
                "token_label": label,
                "key_label": "kek",
            }
            cases.append(("pkcs11", kek, env))
        try:
            import boto3  # noqa: PLC0415 - optional: the aws/dev extras
            import moto.server  # noqa: F401, PLC0415
        except ImportError:
            print("kek_cold: aws-kms left out: boto3 or moto[server] missing", file=sys.stderr)
        else:
            url = stack.enter_context(kms_server())
            os.environ.update(kms_client_env())
            client = boto3.client("kms", region_name="eu-central-1", endpoint_url=url)
            arn = client.create_key()["KeyMetadata"]["Arn"]
            kek = {"provider": "aws-kms", "key_id": arn, "region": "eu-central-1"}
            cases.append(("aws_kms", kek | {"endpoint_url": url}, kms_client_env()))
        for name, kek, env in cases:
            settings = {"keystore": str(folder / f"keystore-{name}.json"), "kek": kek}
            _make_keystore(settings)
            out[f"kek_cold_start_{PRACTICES}x{VERSIONS}_{name}_us"] = 1e6 * _best(settings, env)
    return {k: round(v, 1) for k, v in out.items()}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        print(json.dumps(run(), indent=1))
