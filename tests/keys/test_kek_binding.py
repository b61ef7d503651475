"""Every KEK provider keeps the keystore's binding of a wrapped DEK to its entry.

A wrapped DEK moved to another practice, kid or version does not open, even in a file re-sealed
with the right KEK: the per-key associated data (AAD for the file and PKCS#11 KEKs, the
encryption context for KMS) is what refuses it.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from keys._keystore_doc import canonical_json
from keys.errors import KeystoreError
from keys.keystore import KeystoreFile
from keys.token_format import b64url_encode

PROVIDERS = ["kek", "pkcs11_kek", "aws_kms_kek"]


@pytest.fixture(params=PROVIDERS)
def any_kek(request):
    """The file KEK, a SoftHSM2 token's key, and a KMS key (moto's server), in turn."""
    value = request.getfixturevalue(request.param)
    return value[1] if isinstance(value, tuple) else value


@pytest.fixture
def filled(tmp_path, any_kek):
    """p1 (v1 decrypt-only, v2 active) and p2 (v1), wrapped by `any_kek`."""
    store = KeystoreFile(tmp_path / "keystore.json", any_kek)
    store.create()
    store.add_practices(["p1", "p2"])
    store.rotate("p1")
    return store


def _reseal(store, kek, change):
    """Apply `change` to the document and seal it again with the right KEK."""
    doc = json.loads(store.path.read_bytes())
    change({(k["practice"], k["version"]): k for k in doc["keys"]})
    digest = hashlib.sha256(canonical_json(doc)).digest()
    doc["integrity"] = b64url_encode(kek.wrap(digest, b"phi-proxy keystore v1 integrity"))
    store.path.write_text(json.dumps(doc, indent=2))


def _copy(source, target):
    def change(keys):
        keys[target]["wrapped"] = keys[source]["wrapped"]

    return change


def _edit(where, field, value):
    def change(keys):
        keys[where][field] = value

    return change


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (_copy(("p1", 1), ("p2", 1)), "copied to another practice"),
        (_copy(("p1", 1), ("p1", 2)), "copied to another version of its practice"),
        (_edit(("p2", 1), "kid", "fedcba9876543210"), "given another kid"),
        (_edit(("p2", 1), "version", 7), "given another version"),
        (_edit(("p2", 1), "practice", "p3"), "given another practice"),
    ],
)
def test_moved_or_relabelled_dek_does_not_open(filled, any_kek, change, what):
    """A wrapped DEK whose entry changed (practice, kid or version) is refused by name."""
    _reseal(filled, any_kek, change)
    with pytest.raises(KeystoreError, match="does not open as practice") as caught:
        filled.load()
    assert str(filled.path) in str(caught.value), what


def test_unchanged_reseal_still_loads(filled, any_kek):
    """The re-sealing above is sound: with nothing changed the file loads."""
    _reseal(filled, any_kek, lambda _keys: None)
    assert filled.load().practices() == {"p1", "p2"}
