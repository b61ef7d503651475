"""The AWS KMS KEK against moto's KMS server (a real process on loopback): binding and failures."""

from __future__ import annotations

import secrets

import pytest
from kek_backends import REGION, new_kms_key

from keys._keystore_doc import dek_wrap_aad
from keys.errors import KekError, KekUnavailable
from keys.kek_aws_kms import AwsKmsKek, encryption_context
from keys.keystore import KeystoreFile
from keys.settings import KeySettings, check_kek, kek_provider
from keys.testing_kek import kms_server

AAD = dek_wrap_aad("0123456789abcdef", "p1", 1)


class TestEncryptionContext:
    def test_dek_aad_becomes_named_fields(self):
        """A DEK's AAD is a readable context: purpose, kid, practice, version."""
        assert encryption_context(AAD) == {
            "phi-proxy": "keystore-dek-v1",
            "kid": "0123456789abcdef",
            "practice": "p1",
            "version": "1",
        }

    def test_integrity_and_other_aad(self):
        """The file seal has its own purpose; any other AAD is carried whole (base64url)."""
        assert encryption_context(b"phi-proxy keystore v1 integrity") == {
            "phi-proxy": "keystore-integrity-v1"
        }
        assert encryption_context(b"x\x00y") == {"phi-proxy": "aad-v1", "aad": "eAB5"}

    def test_near_miss_aad_is_not_parsed_as_a_dek(self):
        """Bytes that only look like a DEK AAD (leading zero, extra field) stay opaque."""
        for aad in (
            b"phi-proxy keystore v1\x00k\x00p1\x0001",
            b"phi-proxy keystore v1\x00k\x00p1\x001\x00x",
        ):
            assert encryption_context(aad)["phi-proxy"] == "aad-v1"


class TestWrapInKms:
    def test_round_trip_and_fresh_ciphertexts(self, aws_kms_kek):
        """wrap/unwrap through KMS returns the secret; two wraps differ."""
        _, kek = aws_kms_kek
        secret = secrets.token_bytes(32)
        wrapped = kek.wrap(secret, AAD)
        assert kek.unwrap(wrapped, AAD) == secret
        assert kek.wrap(secret, AAD) != wrapped

    @pytest.mark.parametrize(
        "other",
        [
            dek_wrap_aad("0123456789abcdef", "p2", 1),  # another practice
            dek_wrap_aad("fedcba9876543210", "p1", 1),  # another kid
            dek_wrap_aad("0123456789abcdef", "p1", 2),  # another version
        ],
    )
    def test_other_context_does_not_open(self, aws_kms_kek, other):
        """KMS binds the context: another practice, kid or version is a KekError, not an outage."""
        _, kek = aws_kms_kek
        wrapped = kek.wrap(b"d" * 32, AAD)
        with pytest.raises(KekError, match="does not open") as caught:
            kek.unwrap(wrapped, other)
        assert not isinstance(caught.value, KekUnavailable)

    def test_kek_id_is_the_key_not_its_spelling(self, kms_endpoint, aws_kms_kek):
        """Key ARN, key id and alias of one key share a kek_id; another key has another."""
        config, kek = aws_kms_kek
        alias = f"alias/phi-{secrets.token_hex(3)}"
        import boto3

        boto3.client("kms", region_name=REGION, endpoint_url=kms_endpoint).create_alias(
            AliasName=alias, TargetKeyId=config["key_id"]
        )
        for spelling in (config["key_id"], config["key_id"].rsplit("/", 1)[1], alias):
            again = AwsKmsKek(key_id=spelling, region=REGION, endpoint_url=kms_endpoint)
            assert again.kek_id == kek.kek_id
        other = AwsKmsKek(
            key_id=new_kms_key(kms_endpoint), region=REGION, endpoint_url=kms_endpoint
        )
        assert other.kek_id != kek.kek_id
        with pytest.raises(KekError):
            other.unwrap(kek.wrap(b"d" * 32, AAD), AAD)

    def test_keystore_round_trip_through_kms(self, tmp_path, aws_kms_kek):
        """A keystore wrapped by KMS loads through the settings and opens its tokens."""
        config, kek = aws_kms_kek
        store = KeystoreFile(tmp_path / "keystore.json", kek)
        store.create()
        store.add_practices(["p1"])
        token = store.load().encrypt("p1", "history", "synthetic")
        settings = KeySettings.model_validate({"keystore": str(store.path), "kek": config})
        assert KeystoreFile(store.path, kek_provider(settings.kek)).load().open(
            token
        ).plaintext == ("synthetic")


class TestFailures:
    def test_unknown_key_names_the_settings_to_check(self, kms_env):
        """A key id KMS does not know is one line naming key_id and region."""
        kms_endpoint = kms_env
        with pytest.raises(KekUnavailable, match=r"NotFoundException.*keys\.kek\.key_id"):
            AwsKmsKek(key_id="alias/absent", region=REGION, endpoint_url=kms_endpoint)

    @pytest.mark.usefixtures("kms_env")
    def test_unreachable_kms_is_unavailable_and_check_fails(self):
        """With the server gone, check() and unwrap() are KekUnavailable ("cannot be reached")."""
        with kms_server() as url:
            arn = new_kms_key(url)
            kek = AwsKmsKek(key_id=arn, region=REGION, endpoint_url=url)
            wrapped = kek.wrap(b"w" * 32, AAD)
            settings = KeySettings.model_validate(
                {
                    "keystore": "/x",
                    "kek": {
                        "provider": "aws-kms",
                        "key_id": arn,
                        "region": REGION,
                        "endpoint_url": url,
                    },
                }
            )
            check_kek(settings.kek)
        with pytest.raises(KekUnavailable, match="cannot be reached"):
            kek.check()
        with pytest.raises(KekUnavailable, match="cannot be reached"):
            kek.unwrap(wrapped, AAD)
        with pytest.raises(KekUnavailable):
            check_kek(settings.kek)

    def test_no_credentials_says_where_they_come_from(self, kms_endpoint, monkeypatch):
        """Without credentials in the standard chain the error says how to give the proxy some."""
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        with pytest.raises(KekUnavailable, match=r"no AWS credentials found.*never in the YAML"):
            # another region: a fresh client, which resolves credentials afresh
            AwsKmsKek(key_id="alias/x", region="eu-north-1", endpoint_url=kms_endpoint)

    def test_missing_boto3_names_the_extra(self, monkeypatch):
        """Without boto3 the error names `pip install 'phi-proxy[aws]'`."""
        import keys.kek_aws_kms as module

        monkeypatch.setattr(module, "boto3", None)
        with pytest.raises(KekUnavailable, match=r"phi-proxy\[aws\]"):
            AwsKmsKek(key_id="k", region="eu-west-3", endpoint_url="http://127.0.0.1:9")

    def test_credentials_in_the_yaml_are_refused(self):
        """Access keys in keys.kek are refused, pointing to the standard credential chain."""
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match="must not be in the config file: give the"):
            KeySettings.model_validate(
                {
                    "keystore": "/x",
                    "kek": {
                        "provider": "aws-kms",
                        "key_id": "k",
                        "region": REGION,
                        "secret_access_key": "s",
                    },
                }
            )
