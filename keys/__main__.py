"""`python -m keys` runs `phi-keys`."""

from __future__ import annotations

import sys

from keys.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
