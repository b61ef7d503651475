import logging

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from identity_helpers import AUDIENCE, ISSUER
from jwt.algorithms import RSAAlgorithm
from multidict import CIMultiDict

from proxy.identity import AuthenticationError, DemoIssuer, JwtAuthenticator
from proxy.identity.weak_keys import ROCA_MASKS, ROCA_PRIMES, has_roca_fingerprint, jwk_weakness

#: The published detector's table (crocs-muni/roca, `RocaFingerprinter.prints`): bit r of the
#: i-th number is set when r is a power of 65537 modulo the i-th prime.
PUBLISHED_PRINTS = (
    6, 30, 126, 1026, 5658, 107286, 199410, 8388606, 536870910, 2147483646, 67109890,
    2199023255550, 8796093022206, 140737488355326, 5310023542746834, 576460752303423486,
    1455791217086302986, 147573952589676412926, 20052041432995567486,
    6041388139249378920330, 207530445072488465666, 9671406556917033397649406,
    618970019642690137449562110, 79228162521181866724264247298,
    2535301200456458802993406410750, 1760368345969468176824550810518,
    50079290986288516948354744811034, 473022961816146413042658758988474,
    10384593717069655257060992658440190, 144390480366845522447407333004847678774,
    2722258935367507707706996859454145691646, 174224571863520493293247799005065324265470,
    696898287454081973172991196020261297061886,
    713623846352979940529142984724747568191373310,
    1800793591454480341970779146165214289059119882,
    126304807362733370595828809000324029340048915994,
    11692013098647223345629478661730264157247460343806,
    187072209578355573530071658587684226515959365500926,
)  # fmt: skip

#: A 2048-bit public modulus the detector's authors list as vulnerable (its tests, mod03.txt).
ROCA_MODULUS = int(
    "9dcd7420e420c270a68060eb8b5aa7457a9f6648f86fafed2775cc1f79ae962f1e63f1b9e51c55f9ea6fdc73"
    "32e9b0058c9ff2eb1fc89855029cf6aafe21e689feb38ac9ffb12f1ce371bb5d0e9aae64161abce74b4244bf"
    "68f1edb4411f756a097c8929c14740245ea355f8332d1aa36bb50c7dcb4505da8de02e4e53d38f8df06097da"
    "7524df0df93db48eac8cc4af2d3a16257eb2b2adca6ba464e5974fa92550d31b1babf161e7692d00b86e3dd8"
    "86ecab4abfbe1a8f8cc263ff4af55cdb45f4249a5193925f5e983d762f0b6800943eb0267b08f42ed311ce1f"
    "5c86eacbc8ce4d3cb7a2fee1ef5641423a1cf4114e5ecf50034a60a412523af9e6f4aa11",
    16,
)


def roca_jwk(kid="weak-1"):
    """The vulnerable public key as a JWK (public numbers only: nobody here can sign with it)."""
    key = rsa.RSAPublicNumbers(65537, ROCA_MODULUS).public_key()
    return {**RSAAlgorithm.to_jwk(key, as_dict=True), "kid": kid, "use": "sig", "alg": "RS256"}


class TestRocaFingerprint:
    def test_subgroup_table_equals_the_published_one(self):
        """The masks computed from 65537 and the 38 primes are the detector's published table."""
        assert tuple(prime for prime, _ in ROCA_MASKS) == ROCA_PRIMES
        assert tuple(mask for _, mask in ROCA_MASKS) == PUBLISHED_PRINTS

    def test_published_vulnerable_modulus_is_detected(self):
        """A modulus from the published positive samples has the fingerprint."""
        assert has_roca_fingerprint(ROCA_MODULUS)

    @pytest.mark.parametrize("delta", [2, 4, 6])
    def test_nearby_numbers_do_not_have_it(self, delta):
        """The test is on the residues: changing the modulus a little loses the structure."""
        assert not has_roca_fingerprint(ROCA_MODULUS + delta)

    def test_keys_from_a_sound_generator_pass(self, rs_issuer):
        """OpenSSL's RSA keys are not flagged (a random modulus passes with p ~ 2^-27.8)."""
        for key in (rs_issuer.public_key, rsa.generate_private_key(65537, 2048).public_key()):
            assert not has_roca_fingerprint(key.public_numbers().n)


class TestJwkWeakness:
    def test_roca_rsa_jwk_is_weak(self):
        """An RSA JWK with the fingerprint is named weak, with the fixed code `roca`."""
        assert jwk_weakness(roca_jwk()) == "roca"

    def test_other_keys_are_not_weak(self, es_issuer, rs_issuer, ed_issuer):
        """EC, OKP and sound RSA keys pass; an unreadable RSA entry is left to the usual checks."""
        for issuer in (es_issuer, rs_issuer, ed_issuer):
            assert jwk_weakness(issuer.public_jwk()) is None
        assert jwk_weakness({"kty": "RSA", "n": "!!", "e": "AQAB"}) is None


class TestWeakKeyInJwks:
    async def test_token_naming_a_roca_key_is_refused_as_weak_key(
        self, make_settings, es_issuer, now, caplog
    ):
        """A kid whose only key is weak gets `weak_key`, and the key is logged once by kid."""
        path = make_settings().jwks_file
        es_issuer.write_jwks(path, {"keys": [es_issuer.public_jwk(), roca_jwk("weak-1")]})
        auth = JwtAuthenticator(make_settings())
        signer = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="RS256", kid="weak-1")
        caplog.set_level(logging.WARNING, logger="proxy.identity.jwks")
        for _ in range(3):
            with pytest.raises(AuthenticationError) as info:
                await auth.verify_token(signer.mint("u", now=now), now=now)
            assert info.value.reason == "weak_key"
        warnings = [r for r in caplog.records if r.name == "proxy.identity.jwks"]
        assert len(warnings) == 1
        assert "'weak-1' refused" in warnings[0].getMessage()
        assert "ROCA" in warnings[0].getMessage()
        assert warnings[0].fields == {"kid": "weak-1", "weakness": "roca"}
        token = es_issuer.mint("u", now=now)
        assert await auth.authenticate(CIMultiDict(Authorization=f"Bearer {token}"), now=now)

    async def test_weak_key_is_never_tried_for_tokens_without_kid(
        self, make_settings, es_issuer, now
    ):
        """Without a kid every fitting key is tried: the weak one is not among them."""
        path = make_settings().jwks_file
        es_issuer.write_jwks(path, {"keys": [roca_jwk("weak-1")]})
        auth = JwtAuthenticator(make_settings())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": int(now), "exp": now + 60}
        token = jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256")
        with pytest.raises(AuthenticationError) as info:
            await auth.verify_token(token, now=now)
        assert info.value.reason == "weak_key"
