"""SCIM 2.0 service provider (RFC 7643/7644): access follows the identity provider.

ScimSettings     the `scim:` config section (off by default)
ScimSecret       the bearer secret's digest; constant-time check
Directory        SCIM bookkeeping (users, groups, members) in its own SQLite file
Provisioner      users -> subjects, active:false/DELETE -> offboard, group members -> grants
build_scim_app   the aiohttp application of the SCIM listener (proxy.scim.app)
"""

from __future__ import annotations

from proxy.scim.settings import ScimGroup, ScimSettings

__all__ = ["ScimGroup", "ScimSettings"]
