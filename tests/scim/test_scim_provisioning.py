"""The IdP's SCIM calls decide, through the grant store, what the very next proxied request sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from scim_helpers import CLOCK, USER

SSN = "219-09-9999"


async def _script_patient(env) -> None:
    token = env.encrypt("practice-a", "ssn", SSN)
    env.portal.script("/api/patient", orjson.dumps({"practice_id": "practice-a", "ssn": token}))


async def _ssn_seen_by(env, sub: str) -> str:
    response = await env.get("/api/patient", sub=sub)
    return orjson.loads(await response.read())["ssn"]


class TestUserLifecycle:
    async def test_group_member_reads_and_deactivated_user_is_masked_at_once(self, scim_env):
        """Create user, add to mapped group: decrypts; PATCH active=false: the next read masks."""
        env, scim = scim_env
        await _script_patient(env)
        user = await scim.create_user("00u-alice", "alice@lakeside.example")
        assert await _ssn_seen_by(env, "00u-alice") == "***-**-9999"

        await scim.create_group("Lakeside staff", [user["id"]])
        grants = await env.grants.list(subject=env.subject("00u-alice"))
        assert [(g.practice, g.field_classes, g.created_by) for g in grants] == [
            ("practice-a", frozenset({"ssn"}), "scim")
        ]
        assert await _ssn_seen_by(env, "00u-alice") == SSN

        status, body = await scim.patch(
            "Users", user["id"], {"op": "replace", "value": {"active": False}}
        )
        assert (status, body["active"]) == (200, False)
        assert await _ssn_seen_by(env, "00u-alice") == "***-**-9999"
        assert all(g.revoked_at is not None for g in await env.grants.list())

    async def test_entra_style_patch_with_string_false_offboards(self, scim_env):
        """Entra ID's `{"op": "Replace", "path": "active", "value": "False"}` offboards too."""
        env, scim = scim_env
        user = await scim.create_user("00u-kim", "kim@lakeside.example")
        await scim.create_group("Lakeside staff", [user["id"]])
        status, body = await scim.patch(
            "Users", user["id"], {"op": "Replace", "path": "active", "value": "False"}
        )
        assert (status, body["active"]) == (200, False)
        assert [g.revoked_at is not None for g in await env.grants.list()] == [True]

    async def test_delete_offboards_every_practice(self, scim_env):
        """DELETE revokes the subject's grants everywhere, including ones not made by SCIM."""
        env, scim = scim_env
        user = await scim.create_user("00u-bob", "bob@lakeside.example")
        await env.grant("00u-bob", "practice-b")
        status, _ = await scim.call("DELETE", f"/Users/{user['id']}")
        assert status == 204
        now = datetime.now(UTC)
        assert [g for g in await env.grants.list() if g.is_active(now)] == []
        status, _ = await scim.call("GET", f"/Users/{user['id']}")
        assert status == 404

    async def test_filter_by_user_name_finds_the_user(self, scim_env):
        """GET /Users?filter=userName eq "…" answers the one user (what IdPs send before POST)."""
        _env, scim = scim_env
        user = await scim.create_user("00u-carol", "carol@lakeside.example")
        status, body = await scim.call("GET", '/Users?filter=userName eq "carol@lakeside.example"')
        assert status == 200
        assert (body["totalResults"], body["Resources"][0]["id"]) == (1, user["id"])
        status, body = await scim.call("GET", '/Users?filter=userName eq "nobody"')
        assert (status, body["totalResults"]) == (200, 0)

    async def test_changed_subject_offboards_the_old_and_grants_the_new(self, scim_env):
        """PUT with another externalId keeps the id; the old subject loses, the new one gains."""
        env, scim = scim_env
        user = await scim.create_user("00u-dan", "dan@lakeside.example")
        await scim.create_group("Lakeside staff", [user["id"]])
        replaced = {
            "schemas": [USER],
            "userName": "daniel@lakeside.example",
            "externalId": "00u-dn",
        }
        status, body = await scim.call("PUT", f"/Users/{user['id']}", replaced)
        assert (status, body["userName"], body["id"]) == (
            200,
            "daniel@lakeside.example",
            user["id"],
        )
        now = datetime.now(UTC)
        active = [g for g in await env.grants.list() if g.is_active(now)]
        assert [(g.subject, g.practice) for g in active] == [(env.subject("00u-dn"), "practice-a")]

    async def test_duplicate_user_is_a_conflict(self, scim_env):
        """A second POST for the same externalId answers 409 uniqueness."""
        _env, scim = scim_env
        await scim.create_user("00u-eve", "eve@lakeside.example")
        status, body = await scim.call(
            "POST", "/Users", {"schemas": [USER], "userName": "eve2", "externalId": "00u-eve"}
        )
        assert (status, body["scimType"]) == (409, "uniqueness")


class TestGroups:
    async def test_a_deleted_user_left_in_a_group_sync_gets_no_grant(self, scim_env):
        """A stale member list naming a deleted user grants nothing (fail closed)."""
        env, scim = scim_env
        user = await scim.create_user("00u-jon", "jon@lakeside.example")
        status, _ = await scim.call("DELETE", f"/Users/{user['id']}")
        assert status == 204
        await scim.create_group("Lakeside staff", [user["id"]])
        assert await env.grants.list() == []

    async def test_member_removed_by_patch_loses_only_that_groups_grant(self, scim_env):
        """PATCH remove member revokes the group's grant; a grant from phi-grants stays."""
        env, scim = scim_env
        await _script_patient(env)
        user = await scim.create_user("00u-fay", "fay@lakeside.example")
        group = await scim.create_group("Lakeside staff")
        status, _ = await scim.patch(
            "Groups",
            group["id"],
            {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
        )
        assert status == 200
        assert await _ssn_seen_by(env, "00u-fay") == SSN
        manual = await env.grant("00u-fay", "practice-b")
        status, body = await scim.patch(
            "Groups", group["id"], {"op": "remove", "path": f'members[value eq "{user["id"]}"]'}
        )
        assert (status, body.get("members", [])) == (200, [])
        assert await _ssn_seen_by(env, "00u-fay") == "***-**-9999"
        now = datetime.now(UTC)
        assert [g.id for g in await env.grants.list() if g.is_active(now)] == [manual.id]

    async def test_put_without_a_member_revokes_and_unknown_groups_grant_nothing(self, scim_env):
        """PUT replaces the member list; a group no mapping names is kept but grants nothing."""
        env, scim = scim_env
        user = await scim.create_user("00u-gus", "gus@lakeside.example")
        other = await scim.create_group("Cafeteria", [user["id"]])
        assert other["members"][0]["value"] == user["id"]
        assert await env.grants.list() == []
        group = await scim.create_group("Lakeside staff", [user["id"]])
        assert len(await env.grants.list()) == 1
        status, _ = await scim.call(
            "PUT",
            f"/Groups/{group['id']}",
            {"schemas": [group["schemas"][0]], "displayName": "Lakeside staff"},
        )
        assert status == 200
        now = datetime.now(UTC)
        assert [g for g in await env.grants.list() if g.is_active(now)] == []


class TestAuthentication:
    async def test_missing_or_wrong_bearer_is_401(self, scim_env):
        """Without the secret, or with another one, every endpoint answers 401; nothing changes."""
        env, scim = scim_env
        for secret in (None, "wrong-secret-wrong-secret-wrong-secret"):
            scim.secret = secret
            for method, path in (("GET", "/Users"), ("GET", "/ServiceProviderConfig")):
                status, body = await scim.call(method, path)
                assert (status, body["status"]) == (401, "401")
            status, _ = await scim.call(
                "POST", "/Users", {"schemas": [USER], "userName": "mallory", "externalId": "m"}
            )
            assert status == 401
        assert await env.grants.list() == []


class TestDiscovery:
    async def test_discovery_documents_are_served(self, scim_env):
        """ServiceProviderConfig claims PATCH and filtering; User and Group types and schemas."""
        _env, scim = scim_env
        status, config = await scim.call("GET", "/ServiceProviderConfig")
        assert (status, config["patch"]["supported"], config["bulk"]["supported"]) == (
            200,
            True,
            False,
        )
        _status, types = await scim.call("GET", "/ResourceTypes")
        assert sorted(t["id"] for t in types["Resources"]) == ["Group", "User"]
        _status, schemas = await scim.call("GET", "/Schemas")
        assert len(schemas["Resources"]) == 2


class TestRenewal:
    async def test_a_sync_renews_a_grant_past_half_its_ttl(self, scim_env):
        """The IdP sending the member again after 20 of 30 days adds a grant to day 50."""
        env, scim = scim_env
        user = await scim.create_user("00u-hal", "hal@lakeside.example")
        group = await scim.create_group("Lakeside staff", [user["id"]])
        body = {"schemas": group["schemas"], "displayName": "Lakeside staff"}
        body["members"] = [{"value": user["id"]}]
        status, _ = await scim.call("PUT", f"/Groups/{group['id']}", body)
        assert (status, len(await env.grants.list())) == (200, 1)  # fresh: nothing to renew
        CLOCK.advance(timedelta(days=20))
        status, _ = await scim.call("PUT", f"/Groups/{group['id']}", body)
        grants = sorted(await env.grants.list(), key=lambda g: g.expires_at)
        assert status == 200
        days = [(g.expires_at - grants[0].created_at).total_seconds() / 86400 for g in grants]
        assert [round(d) for d in days] == [30, 50]

    async def test_a_sync_never_undoes_an_operators_offboard(self, scim_env):
        """After `phi-grants offboard`, the IdP re-sending the group grants nothing again."""
        env, scim = scim_env
        user = await scim.create_user("00u-ivy", "ivy@lakeside.example")
        group = await scim.create_group("Lakeside staff", [user["id"]])
        await env.grants.offboard(
            env.subject("00u-ivy"), by="oncall", reason="incident", now=datetime.now(UTC)
        )
        CLOCK.advance(timedelta(days=20))
        body = {"schemas": group["schemas"], "displayName": "Lakeside staff"}
        body["members"] = [{"value": user["id"]}]
        status, _ = await scim.call("PUT", f"/Groups/{group['id']}", body)
        assert status == 200
        assert [g.revoked_at is not None for g in await env.grants.list()] == [True]
