"""What `phi-proxy demo` prints: where things run, who is who, and commands to paste.

The commands only use shell variables ($PROXY, $ALICE, …) defined by the `export` lines printed
above them, so the same commands work whatever ports were chosen; the README shows them and a
test runs them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.demo.data import ISSUER, STAFF

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.demo.workspace import DemoPorts, Workspace

__all__ = ["READY_LINE", "STEPS", "Step", "grants_command", "render_story"]

READY_LINE = "Ready. Press Ctrl-C to stop the demo and delete its folder."
_JSON = " | python3 -m json.tool"
_AUTH = '-H "Authorization: Bearer ${}"'


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to try: what it shows, and the shell command."""

    says: str
    command: str


def _get(who: str | None, path: str, *, base: str = "$PROXY", pretty: bool = True) -> str:
    auth = f"{_AUTH.format(who)} " if who else ""
    return f"curl -s {auth}{base}{path}" + (_JSON if pretty else "")


STEPS: tuple[Step, ...] = (
    Step(
        "alice has an active grant for practice-a: she sees plaintext",
        _get("ALICE", "/api/practices/practice-a/patients/1"),
    ),
    Step(
        "mallory left practice-a; her login still works but her grant was revoked: masks",
        _get("MALLORY", "/api/practices/practice-a/patients/1"),
    ),
    Step(
        "bob (practice-b) asks practice-b's URL for patient 1; the portal's bug hands him "
        "practice-a's patient, but the ciphertext says practice-a, so bob sees masks",
        _get("BOB", "/api/practices/practice-b/patients/1"),
    ),
    Step(
        "bob sees his own practice's patients in plaintext",
        _get("BOB", "/api/practices/practice-b/patients/7"),
    ),
    Step(
        "no token at all: a list of masks",
        _get(None, "/api/practices/practice-a/patients"),
    ),
    Step(
        "search by SSN: the proxy encrypts it deterministically, the portal matches ciphertext",
        "curl -s " + _AUTH.format("ALICE") + " -H 'Content-Type: application/json' "
        '-d \'{"ssn": "900-02-1222"}\' $PROXY/api/practices/practice-a/patients/search' + _JSON,
    ),
    Step(
        "CSV export: tokens inside text bodies are masked too",
        _get("MALLORY", "/api/practices/practice-a/export.csv", pretty=False),
    ),
    Step(
        "what the portal itself holds (bypassing the proxy): ciphertext tokens only",
        _get(None, "/api/practices/practice-a/patients/1", base="$PORTAL"),
    ),
    Step(
        "the same, straight from the portal's database",
        "sqlite3 \"$DEMO_DIR/portal.sqlite3\" 'SELECT id, name, ssn FROM patients LIMIT 2'",
    ),
)


def grants_command() -> str:
    """How to run phi-grants from here: a path relative to the cwd when that is shorter."""
    script = Path(sys.executable).parent / "phi-grants"
    try:
        relative = os.path.relpath(script)
    except ValueError:  # another drive (Windows)
        return str(script)
    return relative if not relative.startswith("..") else str(script)


def render_story(
    *,
    workspace: Workspace,
    ports: DemoPorts,
    tokens: dict[str, str],
    token_hours: int,
    grants_expire: datetime,
    seeded: tuple[int, int],
) -> str:
    """The whole text printed once everything is up."""
    until = f"{grants_expire:%Y-%m-%d %H:%M} UTC"
    lines = [
        "phi-proxy demo: a naive legacy portal behind phi-proxy, synthetic patients only.",
        "",
        f"  phi-proxy  http://127.0.0.1:{ports.proxy}   (clients talk to this)",
        f"  portal     http://127.0.0.1:{ports.portal}   (in production only the proxy reaches it)",
        f"  admin      http://127.0.0.1:{ports.admin}/readyz",
        (
            f"  files      {workspace.folder}   (KEK, keystore, JWKS, grants, portal DB; "
            "deleted on exit)"
        ),
        "",
        (
            f"Seeded {seeded[0]} patients and {seeded[1]} bookings through the proxy; "
            "the portal stored ciphertext only."
        ),
        "Grants:",
    ]
    for person in STAFF:
        state = "revoked" if person.sub == "mallory" else f"active until {until}"
        lines.append(f"  {person.sub:<8} {person.practice}  {state:<34} {person.story}")
    lines += [
        "",
        f"In another terminal, paste these (tokens are valid for {token_hours} hours):",
        "",
        f"export PROXY=http://127.0.0.1:{ports.proxy}",
        f"export PORTAL=http://127.0.0.1:{ports.portal}",
        f"export DEMO_DIR={workspace.folder}",
        f"export PHI_PROXY_CONFIG={workspace.config_path}",
    ]
    lines += [f"export {name.upper()}={token}" for name, token in tokens.items()]
    for step in STEPS:
        lines += ["", f"# {step.says}", step.command]
    lines += [
        "",
        "# revoke alice's grant, then repeat the first command: masks on the very next request",
        (
            f"{grants_command()} revoke --subject '{ISSUER}|alice' --practice practice-a "
            "--reason 'demo: offboarding'"
        ),
        "",
        (
            "# the periodic access review: grants in effect, their last use, and who kept asking "
            "after their grant ended (exit 1: findings)"
        ),
        f"{grants_command()} review",
        "",
        READY_LINE,
    ]
    return "\n".join(lines)
