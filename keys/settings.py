"""The `keys:` section of the YAML config, and the one call that turns it into a Keyring.

    keys:
      keystore: ./keystore.json      # relative paths are resolved against the config file
      kek:
        provider: file               # file | env | pkcs11 | aws-kms
        path: ./kek.b64              # provider: file
        # env_var: PHI_PROXY_KEK     # provider: env

`kek` is a discriminated union on `provider`: each provider is one model here and one
`KekProvider` class, and no caller changes. The HSM (pkcs11) and KMS (aws-kms) providers are
imported only when configured, so their libraries stay optional extras. Secrets (a PIN, cloud
credentials) are never settings: the models name where they come from, and refuse them inline.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keys.config_file import ConfigPath
from keys.errors import KekError, KekUnavailable
from keys.kek import CheckedKek, EnvKek, FileKek, KekProvider
from keys.keystore import KeystoreFile

if TYPE_CHECKING:
    from keys.keyring import Keyring

__all__ = [
    "DEFAULT_PIN_ENV",
    "DEFAULT_USAGE_LIMIT",
    "AwsKmsKekSettings",
    "EnvKekSettings",
    "FileKekSettings",
    "KekSettings",
    "KeySettings",
    "Pkcs11KekSettings",
    "check_kek",
    "describe_kek",
    "kek_provider",
    "keystore_file",
    "open_keyring",
]


#: 2^31 encryptions per key version: half of the 2^32 bound NIST SP 800-38D sets for random
#: 96-bit GCM nonces, leaving a wide margin for counts lost in a crash before a flush.
DEFAULT_USAGE_LIMIT: Final = 1 << 31
#: Where the PKCS#11 user PIN is read from when neither pin_env nor pin_file is set.
DEFAULT_PIN_ENV: Final = "PHI_PROXY_PKCS11_PIN"
_ENV_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"


class FileKekSettings(BaseModel):
    """The KEK is read from a file (base64 of 32 bytes, mode 0600)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["file"] = Field(description="KEK kept in a local file.")
    path: ConfigPath = Field(
        description="KEK file: base64 of 32 random bytes, mode 0600. Relative to the config "
        "file. Create it with `phi-keys init --generate-kek PATH`."
    )


class EnvKekSettings(BaseModel):
    """The KEK is read from an environment variable (base64 of 32 bytes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["env"] = Field(description="KEK passed in an environment variable.")
    env_var: str = Field(
        default="PHI_PROXY_KEK",
        min_length=1,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the KEK as base64 of 32 bytes.",
    )


def _refuse_inline(data: Any, names: tuple[str, ...], fix: str) -> Any:  # noqa: ANN401 - raw YAML
    """Refuse a secret written into the YAML, with the fix (before the generic extra-key error)."""
    if isinstance(data, dict):
        for name in names:
            if name in data:
                raise ValueError(f"`{name}` must not be in the config file: {fix}")
    return data


class Pkcs11KekSettings(BaseModel):
    """The KEK is an AES-256 key inside a PKCS#11 token (an HSM; SoftHSM2 for tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["pkcs11"] = Field(description="KEK inside a PKCS#11 token (HSM).")
    module: ConfigPath = Field(
        description="The token's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so or the "
        "HSM vendor's. It runs inside the proxy: it must not be writable by group or others."
    )
    token_label: str = Field(
        min_length=1, max_length=32, description="Label of the token that holds the KEK."
    )
    key_label: str = Field(
        min_length=1,
        max_length=128,
        description="Label of the AES-256 key (unique in the token). `phi-keys init "
        "--kek-provider pkcs11` creates it non-extractable.",
    )
    pin_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Environment variable holding the token's user PIN (default "
        f"{DEFAULT_PIN_ENV} when pin_file is not set). The PIN is never written in this file.",
    )
    pin_file: ConfigPath | None = Field(
        default=None,
        description="Instead of pin_env: a file (mode 0600) holding the user PIN. Relative to "
        "the config file.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_pin(cls, data: Any) -> Any:  # noqa: ANN401 - raw YAML
        return _refuse_inline(
            data,
            ("pin", "user_pin", "so_pin"),
            f"set pin_env (an environment variable, default {DEFAULT_PIN_ENV}) or pin_file "
            "(a 0600 file) instead",
        )

    @model_validator(mode="after")
    def _one_pin_source(self) -> Pkcs11KekSettings:
        if self.pin_env is not None and self.pin_file is not None:
            raise ValueError("set pin_env or pin_file, not both")
        return self


class AwsKmsKekSettings(BaseModel):
    """The KEK is an AWS KMS symmetric key; credentials come from the standard AWS chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["aws-kms"] = Field(description="KEK inside AWS KMS.")
    key_id: str = Field(
        min_length=1,
        max_length=2048,
        description="The KMS key: key id, key ARN, alias name (alias/...) or alias ARN.",
    )
    region: str = Field(
        pattern=r"^[a-z0-9-]+$", description="AWS region of the key, e.g. eu-central-1."
    )
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Optional KMS endpoint (a VPC endpoint's URL; a local test server).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_credentials(cls, data: Any) -> Any:  # noqa: ANN401 - raw YAML
        return _refuse_inline(
            data,
            (
                "access_key_id",
                "secret_access_key",
                "aws_access_key_id",
                "aws_secret_access_key",
                "session_token",
            ),
            "give the proxy an AWS role (instance profile, pod identity, IRSA) or set the "
            "standard AWS_* environment variables",
        )


KekSettings = Annotated[
    FileKekSettings | EnvKekSettings | Pkcs11KekSettings | AwsKmsKekSettings,
    Field(discriminator="provider"),
]


class KeySettings(BaseModel):
    """Where the keystore file is and where its key-encryption key comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keystore: ConfigPath = Field(
        description="Keystore JSON file holding the wrapped per-practice data keys. Relative to "
        "the config file. Create it with `phi-keys init`."
    )
    kek: KekSettings = Field(
        description="Key-encryption key provider: `file` (path), `env` (env_var), `pkcs11` "
        "(an HSM) or `aws-kms`."
    )
    usage_limit: int = Field(
        default=DEFAULT_USAGE_LIMIT,
        ge=1,
        le=1 << 48,
        description="Encryptions one key version may perform. AES-GCM with random 96-bit nonces "
        "must stay well below 2^32 per key; `phi-keys list` warns from 80% of this limit.",
    )
    auto_rotate_after: int | None = Field(
        default=None,
        ge=1,
        description="If set, the proxy rotates a practice's key by itself once its active "
        "version has performed this many encryptions (must not exceed usage_limit).",
    )
    watch_interval: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Seconds between checks of the config, keystore and KEK files for changes "
        "(hot reload) and between flushes of the usage counters; 0 turns the watcher off "
        "(SIGHUP still reloads).",
    )
    usage_flush_every: int = Field(
        default=1000,
        ge=1,
        description="Flush the per-key encryption counters to the usage file after this many "
        "encryptions, even before watch_interval has passed.",
    )
    usage_file: ConfigPath | None = Field(
        default=None,
        description="File the per-key encryption counters are kept in. Relative to the config "
        "file. Default: `<keystore>.usage.json` beside the keystore. Set it when the keystore's "
        "folder is read-only (a Kubernetes Secret), to a file on a writable, persistent volume.",
    )
    canaries_file: ConfigPath | None = Field(
        default=None,
        description="The canary register (`phi-keys canary`): sealed tokens of made-up patients "
        "planted as tripwires. Relative to the config file. Default: `<keystore>.canaries.json` "
        "beside the keystore. No file means no canaries.",
    )

    @model_validator(mode="after")
    def _rotate_before_limit(self) -> KeySettings:
        if self.auto_rotate_after is not None and self.auto_rotate_after > self.usage_limit:
            raise ValueError("auto_rotate_after must not exceed usage_limit")
        return self


AnyKekSettings = FileKekSettings | EnvKekSettings | Pkcs11KekSettings | AwsKmsKekSettings


def kek_provider(settings: AnyKekSettings) -> KekProvider:
    """Load the configured KEK (raises KekError naming the file, variable, token or key)."""
    if isinstance(settings, FileKekSettings):
        return FileKek(settings.path)
    if isinstance(settings, EnvKekSettings):
        return EnvKek(settings.env_var)
    if isinstance(settings, Pkcs11KekSettings):
        from keys.kek_pkcs11 import Pkcs11Kek, read_pin  # noqa: PLC0415 - optional extra

        return Pkcs11Kek(
            module=settings.module,
            token_label=settings.token_label,
            key_label=settings.key_label,
            pin=read_pin(
                pin_env=settings.pin_env,
                pin_file=settings.pin_file,
                token_label=settings.token_label,
            ),
        )
    from keys.kek_aws_kms import AwsKmsKek  # noqa: PLC0415 - optional extra

    return AwsKmsKek(
        key_id=settings.key_id, region=settings.region, endpoint_url=settings.endpoint_url
    )


def describe_kek(settings: AnyKekSettings) -> str:
    """Where the KEK lives, in one line for `check-config` and messages (nothing secret)."""
    if isinstance(settings, FileKekSettings):
        return f"file {settings.path}"
    if isinstance(settings, EnvKekSettings):
        return f"environment variable {settings.env_var}"
    if isinstance(settings, Pkcs11KekSettings):
        return (
            f"pkcs11 key {settings.key_label!r} in token {settings.token_label!r} "
            f"({settings.module})"
        )
    where = f" at {settings.endpoint_url}" if settings.endpoint_url else ""
    return f"aws-kms key {settings.key_id} in {settings.region}{where}"


#: One provider per device/service setting, kept for `check_kek` (rebuilt after a failure).
_CHECKED: dict[Pkcs11KekSettings | AwsKmsKekSettings, CheckedKek] = {}
_CHECKED_LOCK = threading.Lock()
_CHECKED_MAX: Final = 4


def check_kek(settings: AnyKekSettings) -> None:
    """Prove that a KEK in a device or service still works, now; KekUnavailable if not.

    The proxy calls this every `keys.watch_interval` seconds and stops decrypting while it
    fails. File and environment KEKs have nothing to ask (their files are watched instead).
    """
    if not isinstance(settings, Pkcs11KekSettings | AwsKmsKekSettings):
        return
    with _CHECKED_LOCK:
        checker = _CHECKED.get(settings)
    try:
        if checker is None:
            provider = kek_provider(settings)
            if not isinstance(provider, CheckedKek):  # pragma: no cover - both kinds are
                return
            checker = provider
            with _CHECKED_LOCK:
                if len(_CHECKED) >= _CHECKED_MAX:
                    _CHECKED.clear()
                _CHECKED[settings] = checker
        checker.check()
    except KekError as exc:
        with _CHECKED_LOCK:
            _CHECKED.pop(settings, None)
        if isinstance(exc, KekUnavailable):
            raise
        raise KekUnavailable(str(exc)) from None


def keystore_file(settings: KeySettings) -> KeystoreFile:
    """The configured keystore file, opened with the configured KEK."""
    return KeystoreFile(settings.keystore, kek_provider(settings.kek))


def open_keyring(settings: KeySettings) -> Keyring:
    """Load the KEK and the keystore and return a ready Keyring (KekError / KeystoreError)."""
    return keystore_file(settings).load()
