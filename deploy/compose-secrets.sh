#!/usr/bin/env bash
# Hand deploy/keystore.json to the proxy's user before `docker compose up` (run as root).
#
# Compose without swarm bind-mounts a `secrets: file:` as it is on the host: same owner, same
# mode. The proxy runs as UID 10001 (the image's `phi` user; `user:` in docker-compose.yaml), so a
# keystore.json made by you with mode 0600 is one it cannot read, and it stops at start. This
# gives the file to 10001 with mode 0400: the proxy can read it, no other user on the host can.
#
# Run it again after every phi-keys change on the host (rotate, retire, rotate-kek): phi-keys
# writes a new file, owned by whoever ran it. Usage: sudo deploy/compose-secrets.sh [KEYSTORE]
set -euo pipefail

uid=10001   # docker-compose.yaml: services.phi-proxy.user
gid=10001
keystore="${1:-$(dirname "$0")/keystore.json}"

if [ ! -f "$keystore" ]; then
    echo "compose-secrets: $keystore does not exist: create it with phi-keys first (docs/deploy.md, \"Docker Compose\")" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "compose-secrets: only root can give $keystore to UID $uid; run: sudo $0 $*" >&2
    exit 1
fi
chown "$uid:$gid" "$keystore"
chmod 0400 "$keystore"
echo "compose-secrets: $keystore now belongs to UID $uid (phi-proxy in the container), mode 0400"
