"""A deliberately weak RSA signing key with the ROCA structure, made at test time (never stored).

Infineon's RSALib chose primes p = k·M + (65537^a mod M) with M a primorial; the product of two
such primes has the fingerprint the proxy refuses. Here M is the product of the primes up to
167 (the detector's primes, and 2). Whether a candidate is prime is decided by OpenSSL, through
`cryptography`'s RSA key check when a key is built from it, not by code of ours; a Fermat test
only skips the candidates that are certainly composite (most of them) before that slower check.
"""

from __future__ import annotations

import functools
import math
import random

from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.identity.weak_keys import ROCA_PRIMES

_M = math.prod((2, *ROCA_PRIMES))
_E = 65537


def _private_key(p: int, q: int) -> rsa.RSAPrivateKey:
    """The RSA key with primes p and q; ValueError from OpenSSL unless both are prime."""
    d = pow(_E, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(_E, p * q),
    )
    return numbers.private_key()


def _structured_prime(rng: random.Random, partner: int) -> int:
    """A 1024-bit prime k·M + (65537^a mod M), its top two bits set (so n has 2048 bits)."""
    while True:
        residue = pow(_E, rng.randrange(1, _M), _M)
        p = rng.randrange((3 << 1022) // _M + 1, (1 << 1024) // _M) * _M + residue
        if pow(2, p - 1, p) != 1:  # composite for certain; a prime always passes
            continue
        try:
            _private_key(p, partner)  # OpenSSL checks that p is prime
        except ValueError:
            continue
        return p


@functools.cache
def roca_private_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key whose modulus has the ROCA fingerprint (about a second to make)."""
    rng = random.Random(2017_15361)
    partner = rsa.generate_private_key(_E, 2048).private_numbers().p  # a known prime
    p = _structured_prime(rng, partner)
    q = _structured_prime(rng, partner)
    return _private_key(p, q)
