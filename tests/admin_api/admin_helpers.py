"""A small admin API client for the tests: requests with an admin (or any) bearer token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import aiohttp

ADMIN_SUB = "admin-ada"
ROLE = "phi-admin"
#: `token=` default: a fresh admin token.
ADMIN = "<admin token>"


def admin_overrides() -> dict:
    return {"admin_api": {"enabled": True, "port": 0, "role_claim": "roles", "role": ROLE}}


@dataclass
class AdminClient:
    env: Any
    http: aiohttp.ClientSession
    base: str

    def admin_token(self, sub: str = ADMIN_SUB, **claims: Any) -> str:
        claims.setdefault("roles", [ROLE])
        return self.env.issuer.mint(sub, now=datetime.now(UTC).timestamp(), **claims)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = ADMIN,
        params: dict | None = None,
    ) -> tuple[int, Any, Any]:
        headers = {}
        if token is ADMIN:
            token = self.admin_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base + path, data=data, headers=headers, params=params
        ) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None, response.headers
