"""`python -m proxy.grants` runs `phi-grants`."""

import sys

from proxy.grants.cli import main

sys.exit(main())
