"""A tiny SCIM client for the tests: the requests an IdP sends, with the bearer secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

SECRET = "s3cret-for-tests-only-0123456789abcdefghijkl"
GROUPS = {"Lakeside staff": {"practice": "practice-a", "classes": ["ssn"], "ttl": "30d"}}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class ScimClient:
    http: aiohttp.ClientSession
    base: str
    secret: str | None = SECRET

    async def call(
        self, method: str, path: str, body: Any = None, *, headers: dict | None = None
    ) -> tuple[int, Any]:
        sent = {"Content-Type": "application/scim+json"}
        if self.secret is not None:
            sent["Authorization"] = f"Bearer {self.secret}"
        sent.update(headers or {})
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(method, self.base + path, data=data, headers=sent) as r:
            raw = await r.read()
            return r.status, orjson.loads(raw) if raw else None

    async def create_user(self, sub: str, user_name: str, *, active: bool = True) -> dict:
        status, body = await self.call(
            "POST",
            "/Users",
            {"schemas": [USER], "userName": user_name, "externalId": sub, "active": active},
        )
        assert status == 201, body
        return body

    async def create_group(self, name: str, members: list[str] = ()) -> dict:
        status, body = await self.call(
            "POST",
            "/Groups",
            {"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members]},
        )
        assert status == 201, body
        return body

    async def patch(self, kind: str, resource_id: str, *operations: dict) -> tuple[int, Any]:
        return await self.call(
            "PATCH", f"/{kind}/{resource_id}", {"schemas": [PATCH], "Operations": list(operations)}
        )


class Clock:
    """The SCIM app's clock: real time, moved forward by `advance` for one test."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


CLOCK = Clock()


def scim_overrides(folder: Path, subject_from: str = "externalId") -> dict:
    secret_file = folder / "scim.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    return {
        "scim": {
            "enabled": True,
            "port": 0,
            "secret_file": "./scim.secret",
            "issuer": "https://idp.test.invalid",
            "subject_from": subject_from,
            "groups": GROUPS,
        }
    }
