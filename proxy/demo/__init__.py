"""`phi-proxy demo`: a fake legacy portal and a throwaway proxy setup. Demo only, not production.

Nothing here is used by `phi-proxy serve`. The portal is deliberately naive (it trusts whoever
reaches it, like the portal in the incident this product exists for) and every person, SSN and
diagnosis in it is synthetic: names are obviously made up and SSNs are in the 9xx range, which
the Social Security Administration never issues.

data.py       the synthetic practices, staff, patients and bookings
portal.py     the legacy portal: aiohttp + stdlib sqlite3, no access control worth the name
workspace.py  a temp folder with a KEK, keystore, signing key + JWKS, and a config
seed.py       patients written THROUGH the proxy (so the portal stores only tokens); grants
story.py      the text the demo prints: who is who, and curl commands to paste
run.py        starts portal + proxy + admin on one event loop; Ctrl-C removes everything
"""

from proxy.demo.run import DemoOptions, PortInUse, run_demo
from proxy.demo.seed import SeedError

__all__ = ["DemoOptions", "PortInUse", "SeedError", "run_demo"]
