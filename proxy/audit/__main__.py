"""`python -m proxy.audit` runs `phi-audit`."""

from __future__ import annotations

import sys

from proxy.audit.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
