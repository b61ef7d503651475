"""A tiny token issuer for tests, the demo and benchmarks. NOT for production.

It keeps its private key in memory and signs whatever it is asked to. Real deployments use their
identity provider (Keycloak, Entra ID, Okta, …); phi-proxy only ever needs the public JWKS.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DemoIssuer"]

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DemoIssuer:
    """Generates a signing key, publishes its JWKS, and mints tokens. Not for production.

    Args:
        issuer: the `iss` claim of minted tokens.
        audience: the default `aud` claim.
        algorithm: ES256 (P-256), RS256 (RSA 2048) or EdDSA (Ed25519).
        kid: key id; a random one when omitted.
    """

    def __init__(
        self,
        *,
        issuer: str = "https://issuer.demo.invalid",
        audience: str = "phi-proxy",
        algorithm: Literal["ES256", "RS256", "EdDSA"] = "ES256",
        kid: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.kid = kid or uuid.uuid4().hex[:16]
        self._key: _PrivateKey
        public_jwk: dict[str, Any]
        if algorithm == "ES256":
            self._key = ec.generate_private_key(ec.SECP256R1())
            public_jwk = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        elif algorithm == "RS256":
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public_jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        else:
            self._key = ed25519.Ed25519PrivateKey.generate()
            public_jwk = OKPAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self._public_jwk = {**public_jwk, "kid": self.kid, "use": "sig", "alg": algorithm}

    def __repr__(self) -> str:
        return f"DemoIssuer(issuer={self.issuer!r}, algorithm={self.algorithm!r}, kid={self.kid!r})"

    @property
    def public_key(self) -> Any:  # noqa: ANN401 - a cryptography public key of the chosen type
        """The public half of the signing key."""
        return self._key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """A fresh copy of the public key as a JWK (with kid, use=sig and alg)."""
        return dict(self._public_jwk)

    def jwks(self) -> dict[str, Any]:
        """A fresh JWKS document holding only the public key."""
        return {"keys": [self.public_jwk()]}

    def write_jwks(self, path: Path, jwks: Mapping[str, Any] | None = None) -> Path:
        """Atomically write `jwks` (default: this issuer's public JWKS) to `path`."""
        data = json.dumps(jwks if jwks is not None else self.jwks(), indent=2).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def mint(
        self,
        sub: str,
        *,
        now: float,
        ttl: float = 300,
        audience: str | None = None,
        issuer: str | None = None,
        kid: str | None = None,
        omit: tuple[str, ...] = (),
        headers: Mapping[str, Any] | None = None,
        **extra_claims: Any,  # noqa: ANN401 - claims are arbitrary JSON
    ) -> str:
        """Sign a token for `sub` issued at `now` and valid for `ttl` seconds.

        `omit` drops standard claims (to test their absence); `extra_claims` add or override.
        """
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "sub": sub,
            "aud": audience or self.audience,
            "iat": int(now),
            "exp": int(now + ttl),
            "jti": uuid.uuid4().hex,
        }
        claims.update(extra_claims)
        for name in omit:
            claims.pop(name, None)
        header = {"kid": kid or self.kid, **(headers or {})}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=header)
