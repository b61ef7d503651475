"""The compiled core (`phi_proxy_core`, built from `core/` with Rust), if this process may use it.

One switch for the whole process: the compiled core is used when it is installed and
`PHI_PROXY_PURE` is not set to 1; otherwise the pure-Python twin runs everything (same bytes,
same decisions, slower). `core_description()` is what `check-config` and the startup line print,
so an operator can always tell which one is serving.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["PURE_ENV", "core_description", "native_module"]

PURE_ENV: Final = "PHI_PROXY_PURE"
#: The compiled core's interface version this code speaks.
_ABI: Final = 1


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(PURE_ENV) == "1":
        return None, f"pure-Python core ({PURE_ENV}=1)"
    try:
        import phi_proxy_core  # noqa: PLC0415 - optional, compiled
    except ImportError:
        return None, "pure-Python core (the compiled core phi_proxy_core is not installed)"
    if getattr(phi_proxy_core, "ABI", None) != _ABI:
        return None, "pure-Python core (phi_proxy_core is installed but speaks another ABI)"
    return phi_proxy_core, "compiled core (phi_proxy_core, Rust)"


_MODULE, _DESCRIPTION = _load()


def native_module() -> ModuleType | None:
    """The compiled core's module, or None when the pure-Python core runs."""
    return _MODULE


def core_description() -> str:
    """Which transform core this process runs, in words for an operator."""
    return _DESCRIPTION
