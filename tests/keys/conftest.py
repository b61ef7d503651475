"""Fixtures for the keys tests: real KEK files and keystore files in a temp folder."""

from __future__ import annotations

import pytest
from keys_strategies import FIXED_NOW

from keys.kek import FileKek, generate_kek_file
from keys.keystore import KeystoreFile


@pytest.fixture
def kek_path(tmp_path):
    """A fresh KEK file (mode 0600) in the test's temp folder."""
    path = tmp_path / "kek.b64"
    generate_kek_file(path)
    return path


@pytest.fixture
def kek(kek_path):
    """The FileKek provider for `kek_path`."""
    return FileKek(kek_path)


@pytest.fixture
def store(tmp_path, kek):
    """A newly created, empty keystore file with a fixed clock."""
    keystore = KeystoreFile(tmp_path / "keystore.json", kek, clock=lambda: FIXED_NOW)
    keystore.create()
    return keystore


# The HSM and KMS back ends (real SoftHSM2, moto's server), shared with other test folders.
from kek_backends import (  # noqa: E402, F401
    aws_kms_kek,
    kms_endpoint,
    kms_env,
    pkcs11_kek,
    softhsm,
)
