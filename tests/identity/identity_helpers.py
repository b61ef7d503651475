"""Constants shared by the identity tests (a uniquely named module: tests/ is not a package)."""

ISSUER = "https://login.example.test"
AUDIENCE = "phi-proxy"
