"""Package namespaces that import their modules on first use, so a CLI's --help stays fast.

`keys`, `proxy.grants`, `proxy.identity` and `proxy.audit` re-export their API. Importing all of
it eagerly made every `import keys.errors` (and so every CLI, before parsing its arguments) load
cryptography, pydantic, aiohttp and PyJWT. The names are the same; each loads when first read.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, tuple[str, ...]]) -> Callable[[str], object]:
    """A module `__getattr__` for `package`: each name in `where[module]` loads from module."""
    owner = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str) -> object:  # noqa: N807 - the module-level hook's own name
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # read once; later reads are plain
        return value

    return __getattr__
