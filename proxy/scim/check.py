"""What `phi-proxy check-config` says about the `scim:` section before the listener starts.

Errors stop a start (no models installed, an unusable secret); warnings name IdP groups that no
scim.groups mapping covers, whose members therefore get no grant: usually a renamed group or a
mapping typed with a different spelling than the IdP's displayName.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from typing import TYPE_CHECKING

from proxy.scim.directory import unmapped_group_names
from proxy.scim.secret import ScimSecretError, load_secret

if TYPE_CHECKING:
    from proxy.scim.settings import ScimSettings

__all__ = ["check_scim"]


def check_scim(settings: ScimSettings) -> tuple[list[str], str | None]:
    """(warnings, error) for an enabled scim section; ([], None) when it is off."""
    if not settings.enabled:
        return [], None
    if importlib.util.find_spec("scim2_models") is None:
        return [], (
            "scim.enabled is true but scim2-models is not installed; install phi-proxy with "
            "the scim extra (pip install 'phi-proxy[scim]') or set scim.enabled: false"
        )
    try:
        load_secret(settings)
    except ScimSecretError as exc:
        return [], str(exc)
    try:
        unmapped = unmapped_group_names(settings.directory)
    except sqlite3.Error as exc:
        return [f"{settings.directory} (scim.directory) cannot be read: {exc}"], None
    if not unmapped:
        return [], None
    names = ", ".join(repr(name) for name in unmapped)
    warning = (
        f"the identity provider sent SCIM group(s) {names} that scim.groups does not map, so "
        "their members get no grant from them; if one should, add it under scim.groups with "
        "the IdP's displayName spelled exactly"
    )
    return [warning], None
