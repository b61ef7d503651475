"""A KEK that never leaves AWS KMS: each DEK is wrapped by KMS Encrypt and opened by KMS Decrypt.

The keystore's associated data becomes the KMS *encryption context*, which KMS binds to the
ciphertext exactly as AES-GCM binds AAD, and which appears in every CloudTrail record:

    a DEK          {"phi-proxy": "keystore-dek-v1", "kid": …, "practice": …, "version": "3"}
    the file seal  {"phi-proxy": "keystore-integrity-v1"}
    the probe      {"phi-proxy": "probe-v1"}

so a wrapped DEK copied to another practice, kid or version does not decrypt, and an IAM policy
can allow kms:Encrypt/kms:Decrypt on one key only with `kms:EncryptionContext:phi-proxy` set
(docs/keys.md gives the policy). Any other AAD maps to `{"phi-proxy": "aad-v1", "aad": base64url}`.

- Credentials come from boto3's standard chain (environment, shared files, an instance or pod
  role), never from the YAML.
- Constructing the provider encrypts and decrypts a random probe: it proves the credentials,
  the key and both permissions at `check-config`/`serve`, and yields the key's ARN, whose
  fingerprint is the `kek_id` (an alias that moves to another key is caught as the wrong KEK).
- `check()` decrypts the probe again; the proxy runs it every watch tick, so disabling the key
  or revoking the role stops decryption everywhere within `keys.watch_interval`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from typing import TYPE_CHECKING, Final, TypeVar

from keys._keystore_doc import describe_wrap_aad
from keys.errors import KekError, KekUnavailable
from keys.token_format import b64url_encode

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
except ImportError:  # the optional extra is missing: `_client_for` says which one to install
    boto3 = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_kms import KMSClient

__all__ = ["AwsKmsKek", "encryption_context"]

_R = TypeVar("_R")
_ID_DOMAIN: Final = b"phi-proxy kek id v1 aws-kms\0"
_PROBE_CONTEXT: Final = {"phi-proxy": "probe-v1"}
#: Error codes that mean "this ciphertext does not open under this key with this context".
_DOES_NOT_OPEN: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
_CLIENTS: dict[tuple[str, str | None], KMSClient] = {}
_CLIENTS_LOCK = threading.Lock()


def encryption_context(aad: bytes) -> dict[str, str]:
    """The KMS encryption context that stands for the keystore's associated data `aad`."""
    fields = describe_wrap_aad(aad)
    if fields is None:
        return {"phi-proxy": "aad-v1", "aad": b64url_encode(aad)}
    purpose = fields.pop("purpose")
    return {"phi-proxy": f"keystore-{purpose}-v1", **fields}


class AwsKmsKek:
    """KEK provider backed by one AWS KMS symmetric key; see the module docstring."""

    __slots__ = ("_client", "_kek_id", "_key_arn", "_key_id", "_probe", "_random_bytes", "_where")

    def __init__(
        self,
        *,
        key_id: str,
        region: str,
        endpoint_url: str | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._client = _client_for(region, endpoint_url)
        self._key_id = key_id
        self._where = f"KMS key {key_id} in {region}" + (
            f" at {endpoint_url}" if endpoint_url else ""
        )
        self._random_bytes = random_bytes
        probe = random_bytes(32)
        answer = self._call(
            "Encrypt",
            lambda: self._client.encrypt(
                KeyId=key_id, Plaintext=probe, EncryptionContext=_PROBE_CONTEXT
            ),
        )
        self._key_arn = answer["KeyId"]
        self._probe = (answer["CiphertextBlob"], probe)
        self.check()  # kms:Decrypt too, now rather than at the first unwrap
        self._kek_id = hashlib.sha256(_ID_DOMAIN + self._key_arn.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<AwsKmsKek {self._key_arn} kek_id={self._kek_id}>"

    @property
    def kek_id(self) -> str:
        """Non-secret fingerprint of the key's ARN (16 hex chars)."""
        return self._kek_id

    @property
    def source(self) -> str:
        """`KMS key … in REGION`, for messages."""
        return self._where

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """KMS Encrypt under the key with the context for `aad`: the ciphertext blob."""
        context = encryption_context(aad)
        answer = self._call(
            "Encrypt",
            lambda: self._client.encrypt(
                KeyId=self._key_arn, Plaintext=plaintext, EncryptionContext=context
            ),
        )
        return answer["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """KMS Decrypt, pinned to this key; KekError if it does not open with this context."""
        context = encryption_context(aad)
        answer = self._call(
            "Decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=wrapped, EncryptionContext=context, KeyId=self._key_arn
            ),
            opening=True,
        )
        return answer["Plaintext"]

    def check(self) -> None:
        """Decrypt the probe made at start (KekUnavailable if KMS cannot or will not)."""
        blob, expected = self._probe
        try:
            answer = self._call(
                "Decrypt",
                lambda: self._client.decrypt(
                    CiphertextBlob=blob, EncryptionContext=_PROBE_CONTEXT, KeyId=self._key_arn
                ),
                opening=True,
            )
        except KekUnavailable:
            raise
        except KekError:
            raise KekUnavailable(f"{self._where}: KMS no longer opens what it wrapped") from None
        if not hmac.compare_digest(answer["Plaintext"], expected):
            raise KekUnavailable(f"{self._where}: KMS returned the wrong plaintext for the probe")

    def _call(self, operation: str, request: Callable[[], _R], *, opening: bool = False) -> _R:
        """Run one KMS request; translate boto errors at this one boundary."""
        try:
            return request()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if opening and code in _DOES_NOT_OPEN:
                raise KekError(
                    f"{self._where}: the KEK does not open this keystore ({code}): wrong key, "
                    "or an entry moved or altered"
                ) from None
            raise KekUnavailable(f"{self._where}: {operation} failed: {_advice(code)}") from None
        except NoCredentialsError:
            raise KekUnavailable(
                f"{self._where}: no AWS credentials found; give the proxy a role (instance "
                "profile, EKS pod identity or IRSA) or set AWS_PROFILE / AWS_ACCESS_KEY_ID in its "
                "environment — never in the YAML"
            ) from None
        except BotoCoreError as exc:
            raise KekUnavailable(
                f"{self._where}: {operation} failed: KMS cannot be reached "
                f"({type(exc).__name__}); check the network path to KMS (VPC endpoint, proxy, "
                "keys.kek.endpoint_url) and retry"
            ) from None


def _advice(code: str) -> str:
    """What an operator does about a KMS error code (the code itself is always named)."""
    if code == "AccessDeniedException":
        return (
            f"{code}: the proxy's role may not use this key; it needs kms:Encrypt and "
            "kms:Decrypt on it with the kms:EncryptionContext:phi-proxy condition in "
            "docs/keys.md"
        )
    if code == "NotFoundException":
        return f"{code}: no such key or alias; check keys.kek.key_id and keys.kek.region"
    if code in {"DisabledException", "KMSInvalidStateException"}:
        return (
            f"{code}: the key is disabled or pending deletion; enable it (or cancel the "
            "deletion): it is the only key that opens this keystore"
        )
    if code in {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredToken"}:
        return f"{code}: the AWS credentials are invalid or expired; renew them"
    if code in {
        "KeyUnavailableException",
        "DependencyTimeoutException",
        "KMSInternalException",
        "ThrottlingException",
        "LimitExceededException",
    }:
        return f"{code}: KMS is unavailable or throttling for now; retry shortly"
    return f"{code}: see the KMS documentation for this error"


def _client_for(region: str, endpoint_url: str | None) -> KMSClient:
    """The process's one KMS client per (region, endpoint): thread-safe, reused by reloads."""
    if boto3 is None:
        raise KekUnavailable(
            "keys.kek.provider is aws-kms, but boto3 is missing; install it with "
            "`pip install 'phi-proxy[aws]'`"
        )
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((region, endpoint_url))
        if client is None:
            config = Config(
                connect_timeout=5,
                read_timeout=10,
                retries={"mode": "standard", "max_attempts": 3},
                user_agent_extra="phi-proxy",
            )
            client = boto3.session.Session().client(
                "kms", region_name=region, endpoint_url=endpoint_url, config=config
            )
            _CLIENTS[region, endpoint_url] = client
        return client
