"""`phi-keys rotate-kek` and the KEK half of `phi-keys init`: make a KEK, move a keystore to one.

A keystore moves between any two KEKs — a file, an environment variable, a key in an HSM
(pkcs11), a key in AWS KMS — in one atomic rewrap (`KeystoreFile.rekek`): every DEK is unwrapped
by the old KEK and wrapped by the new one, so DEKs and tokens stay as they are, and the previous
file is kept as `<keystore>.bak-<old kek id>`, which only the old KEK opens.

The new KEK is named the way the proxies will read it: `--new-kek PATH` for a KEK file (as
before), or `--new-config FILE`, a copy of the config whose `keys.kek` names the new KEK. The
command prints the `keys.kek` block to put into the config every proxy reads.

`--generate` (and `init --generate-kek` / `--kek-provider pkcs11`) creates the new KEK first and
never replaces one: a new file is created exclusively, a token key whose label is taken is
refused. A KMS key or an environment variable is made by the operator's own tooling.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from keys.config_file import load_section
from keys.errors import ConfigError
from keys.kek import generate_kek_file
from keys.settings import (
    AnyKekSettings,
    AwsKmsKekSettings,
    EnvKekSettings,
    FileKekSettings,
    KeySettings,
    Pkcs11KekSettings,
    describe_kek,
    kek_provider,
    keystore_file,
)

if TYPE_CHECKING:
    import argparse

__all__ = ["announce_new_kek", "cmd_rotate_kek", "generate_configured_kek"]


def generate_configured_kek(kek: AnyKekSettings, *, flag: str) -> str:
    """Create the KEK that `kek` names (never replacing one); returns its kek id.

    `flag` is the option that asked for it, for the messages of the kinds that cannot.
    """
    if isinstance(kek, FileKekSettings):
        return generate_kek_file(kek.path)
    if isinstance(kek, Pkcs11KekSettings):
        from keys.kek_pkcs11 import generate_pkcs11_kek, read_pin  # noqa: PLC0415 - extra

        pin = read_pin(pin_env=kek.pin_env, pin_file=kek.pin_file, token_label=kek.token_label)
        return generate_pkcs11_kek(
            module=kek.module, token_label=kek.token_label, key_label=kek.key_label, pin=pin
        )
    if isinstance(kek, EnvKekSettings):
        raise ConfigError(
            f"{flag} cannot create an environment variable's KEK: generate 32 random bytes "
            "into your secret manager (e.g. `head -c 32 /dev/urandom | base64`), set "
            f"{kek.env_var} from it, and run again without {flag}"
        )
    raise ConfigError(
        f"{flag} does not create KMS keys (that needs kms:CreateKey, which phi-proxy should "
        "not hold): create a symmetric key with your infrastructure tooling, name it in "
        "keys.kek.key_id, and run again without it"
    )


def announce_new_kek(kek: AnyKekSettings, kek_id: str) -> str:
    """The line printed after `generate_configured_kek`: what was made, and its safe keeping."""
    if isinstance(kek, Pkcs11KekSettings):
        return (
            f"created KEK {kek.key_label!r} in token {kek.token_label!r} (AES-256, sensitive, "
            f"never extractable; kek id {kek_id}); it exists only inside the token: back the "
            "token up or replicate it with the HSM's own tools"
        )
    return (
        f"wrote new KEK to {describe_kek(kek).removeprefix('file ')} (mode 0600, kek id "
        f"{kek_id}); back it up somewhere safe and separate: without it the keystore cannot be "
        "opened"
    )


def _kek_yaml(kek: AnyKekSettings) -> str:
    """The `keys.kek` block (indented under `keys:`) that names `kek`, paths absolute."""
    block: dict[str, Any] = {
        name: str(value) if isinstance(value, Path) else value
        for name, value in kek.model_dump().items()
        if value is not None
    }
    body = yaml.safe_dump({"kek": block}, sort_keys=False, default_flow_style=False)
    return "keys:\n" + "".join(f"  {line}\n" for line in body.splitlines())


def _new_kek(args: argparse.Namespace, settings: KeySettings) -> AnyKekSettings:
    """The new KEK's settings, from --new-config or --new-kek."""
    if args.new_config is not None:
        new_config: Path = Path(args.new_config).expanduser().resolve()
        args.new_config = new_config
        target = load_section(new_config, "keys", KeySettings)
        if os.path.realpath(target.keystore) != os.path.realpath(settings.keystore):
            raise ConfigError(
                f"--new-config {new_config} names the keystore {target.keystore}, but this "
                f"config names {settings.keystore}: rotate-kek moves one keystore to another "
                "KEK, so both must name the same file. Nothing was changed."
            )
        return target.kek
    # Relative to the shell's folder, as typed; printed (and audited) absolute, because the
    # config resolves relative paths against its own folder, not the shell's.
    new_path: Path = args.new_kek.expanduser().resolve()
    args.new_kek = new_path
    return FileKekSettings(provider="file", path=new_path)


def cmd_rotate_kek(args: argparse.Namespace, settings: KeySettings) -> int:
    """`phi-keys rotate-kek`: rewrap every key under a new KEK in one atomic write."""
    store = keystore_file(settings)
    target = _new_kek(args, settings)
    args.new_kek_provider = target.provider
    if args.generate:
        kek_id = generate_configured_kek(target, flag="--generate")
        print(announce_new_kek(target, kek_id))
    new_kek = kek_provider(target)
    old_id = store.kek_id
    args.old_kek_id, args.new_kek_id = old_id, new_kek.kek_id
    count = len(store.infos())
    backup = store.rekek(new_kek, backup=not args.no_backup)
    print(
        f"rewrapped {count} keys of {store.path} under the new KEK ({describe_kek(target)}, "
        f"kek id {new_kek.kek_id}) in one atomic write"
    )
    if backup is not None:
        print(f"the previous file is kept as {backup}: only the old KEK (kek id {old_id}) opens it")
    _note_moved_file(settings.kek, target)
    where = (
        f"replace the config every proxy reads with {args.new_config}, or set its keys.kek to"
        if args.new_config is not None
        else "in the config, set keys.kek to the new file (keep the other keys: settings)"
    )
    print(
        f"next: {where}:\n{_kek_yaml(target)}"
        "Running proxies pick it up within keys.watch_interval, or on SIGHUP; until then they "
        "keep their loaded keys. When every proxy runs on the new KEK and a new backup exists, "
        f"{_retire_old(settings.kek)}" + (" and the .bak file." if backup is not None else ".")
    )
    return 0


def _note_moved_file(old: AnyKekSettings, new: AnyKekSettings) -> None:
    if not isinstance(old, FileKekSettings) or not isinstance(new, FileKekSettings):
        return
    if new.path.resolve().parent != old.path.resolve().parent:
        print(
            f"note: the new KEK is in {new.path.resolve().parent}, not beside the old one "
            f"({old.path.resolve().parent}); make sure every proxy can read it there, or move "
            "it (keeping mode 0600) and use the moved path below",
        )


def _retire_old(old: AnyKekSettings) -> str:
    """What 'destroy the old KEK' means for its kind (phi-keys never destroys it itself)."""
    if isinstance(old, Pkcs11KekSettings):
        return (
            f"destroy the old KEK ({old.key_label!r} in token {old.token_label!r}) with the "
            "HSM's tools"
        )
    if isinstance(old, AwsKmsKekSettings):
        return f"schedule the deletion of the old KMS key ({old.key_id})"
    return "destroy the old KEK"
