# phi-proxy sidecar image.
# Core stage: build the compiled transform core (Rust, core/) into an abi3 wheel. Build stage:
# make the proxy's wheel. Final stage: install both into a clean venv, no compilers, non-root.
# Config, keystore and KEK are mounted at run time (never baked into the image).
FROM rust:1.95.0-slim-bookworm AS core
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/maturin \
 && /opt/maturin/bin/pip install --no-cache-dir 'maturin>=1.5,<2'
WORKDIR /src/core
COPY core/Cargo.toml core/Cargo.lock core/pyproject.toml ./
COPY core/src ./src
RUN /opt/maturin/bin/maturin build --release --locked --compatibility linux --out /dist

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY keys ./keys
RUN python -m pip install --no-cache-dir --upgrade pip build \
 && python -m build --wheel --outdir /dist

FROM python:3.11.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 phi \
 && useradd --system --uid 10001 --gid phi --home-dir /nonexistent --shell /usr/sbin/nologin phi
COPY --from=build /dist/*.whl /tmp/
COPY --from=core /dist/*.whl /tmp/
RUN python -m venv /opt/phi-proxy \
 && /opt/phi-proxy/bin/pip install --no-cache-dir /tmp/*.whl \
 && rm -f /tmp/*.whl
ENV PATH="/opt/phi-proxy/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PHI_PROXY_CONFIG=/etc/phi-proxy/config.yaml
# The state volume's mount point, owned by the proxy user and private (0700). A named volume
# (compose) copies this ownership and mode on first use, so UID 10001 can create
# grants.sqlite3, audit.jsonl and the usage counts there and no other user can read them;
# without it the volume starts root-owned and the proxy cannot start.
RUN install -d -o phi -g phi -m 0700 /var/lib/phi-proxy
USER phi:phi
EXPOSE 8080 9090
VOLUME ["/etc/phi-proxy", "/var/lib/phi-proxy"]
# Asks /healthz on the admin.host and admin.port of the config in $PHI_PROXY_CONFIG (a
# wildcard host is probed on loopback), so another admin port does not make a healthy
# container "unhealthy". If you run `serve -c OTHER`, set PHI_PROXY_CONFIG=OTHER too.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["phi-proxy", "healthcheck"]
ENTRYPOINT ["phi-proxy"]
CMD ["serve", "-c", "/etc/phi-proxy/config.yaml"]
