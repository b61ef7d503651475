"""The `keys:` section of the YAML config, and the one call that turns it into a Keyring.

    keys:
      keystore: ./keystore.json      # relative paths are resolved against the config file
      kek:
        provider: file               # file | env  (room for pkcs11 / kms later)
        path: ./kek.b64              # provider: file
        # env_var: PHI_PROXY_KEK     # provider: env

`kek` is a discriminated union on `provider`, so a future HSM or KMS provider is one more model
here and one more `KekProvider` class, without touching any caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keys.config_file import ConfigPath
from keys.kek import EnvKek, FileKek, KekProvider
from keys.keystore import KeystoreFile

if TYPE_CHECKING:
    from keys.keyring import Keyring

__all__ = [
    "DEFAULT_USAGE_LIMIT",
    "EnvKekSettings",
    "FileKekSettings",
    "KekSettings",
    "KeySettings",
    "kek_provider",
    "keystore_file",
    "open_keyring",
]


#: 2^31 encryptions per key version: half of the 2^32 bound NIST SP 800-38D sets for random
#: 96-bit GCM nonces, leaving a wide margin for counts lost in a crash before a flush.
DEFAULT_USAGE_LIMIT: Final = 1 << 31


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


KekSettings = Annotated[FileKekSettings | EnvKekSettings, Field(discriminator="provider")]


class KeySettings(BaseModel):
    """Where the keystore file is and where its key-encryption key comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keystore: ConfigPath = Field(
        description="Keystore JSON file holding the wrapped per-practice data keys. Relative to "
        "the config file. Create it with `phi-keys init`."
    )
    kek: KekSettings = Field(
        description="Key-encryption key provider: `file` (path) or `env` (env_var)."
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

    @model_validator(mode="after")
    def _rotate_before_limit(self) -> KeySettings:
        if self.auto_rotate_after is not None and self.auto_rotate_after > self.usage_limit:
            raise ValueError("auto_rotate_after must not exceed usage_limit")
        return self


def kek_provider(settings: FileKekSettings | EnvKekSettings) -> KekProvider:
    """Load the configured KEK (raises KekError naming the file or variable if it cannot)."""
    if isinstance(settings, FileKekSettings):
        return FileKek(settings.path)
    return EnvKek(settings.env_var)


def keystore_file(settings: KeySettings) -> KeystoreFile:
    """The configured keystore file, opened with the configured KEK."""
    return KeystoreFile(settings.keystore, kek_provider(settings.kek))


def open_keyring(settings: KeySettings) -> Keyring:
    """Load the KEK and the keystore and return a ready Keyring (KekError / KeystoreError)."""
    return keystore_file(settings).load()
