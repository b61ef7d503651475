"""phi-proxy: a sidecar that decrypts PHI only for callers with an active grant, else masks it."""
