"""`phi-proxy demo` as a user runs it: a real process, its printed commands, Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from demo_helpers import BIN, REPO, TOKEN_RE, fetch, free_ports, parse_curl, start_demo

from proxy.demo.data import patients

pytestmark = pytest.mark.slow

ADA = patients()[0]
BEN = patients()[1]
GUS = patients()[6]


def run_step(demo, fragment):
    """Run the printed curl command whose comment contains `fragment`; (status, body text)."""
    env = demo.exports()
    commands = [cmd for says, cmd in demo.steps() if fragment in says]
    assert len(commands) == 1, fragment
    return fetch(parse_curl(commands[0], env))


def assert_masked(detail, patient):
    assert detail["ssn"] == "***-**-" + patient.ssn[-4:]
    assert detail["date_of_birth"] == "****-**-**"
    assert detail["insurance"]["member_id"] == "[redacted]"
    assert detail["medical_history"] is None
    assert all(visit["visit_reason"] is None for visit in detail["appointments"])


class TestDemoStory:
    def test_each_person_sees_what_the_story_promises(self):
        """Alice: plaintext; mallory, bob (via the portal's bug), anonymous: masks; bob: his own."""
        demo = start_demo(free_ports(3))
        try:
            status, body = run_step(demo, "alice has an active grant")
            alice = json.loads(body)
            assert status == 200
            assert alice["ssn"] == ADA.ssn
            assert alice["date_of_birth"] == ADA.date_of_birth
            assert alice["insurance"]["member_id"] == ADA.member_id
            assert alice["medical_history"] == ADA.medical_history
            assert alice["appointments"][0]["visit_reason"] == "Allergy follow-up"

            _, body = run_step(demo, "mallory left practice-a")
            assert_masked(json.loads(body), ADA)

            _, body = run_step(demo, "the portal's bug hands him")
            bob_on_a = json.loads(body)
            assert bob_on_a["practice_id"] == "practice-b"  # what the buggy portal claims
            assert_masked(bob_on_a, ADA)

            _, body = run_step(demo, "bob sees his own")
            assert json.loads(body)["ssn"] == GUS.ssn

            _, body = run_step(demo, "no token at all")
            listed = json.loads(body)["patients"]
            assert len(listed) == 6
            assert all(row["ssn"].startswith("***-**-") for row in listed)

            _, body = run_step(demo, "search by SSN")
            found = json.loads(body)["patients"]
            assert [(row["name"], row["ssn"]) for row in found] == [(BEN.name, BEN.ssn)]

            _, body = run_step(demo, "CSV export")
            assert body.splitlines()[1] == (
                "1,Ada Sample,****-**-**,***-**-1111,Sample Mutual,[redacted],[redacted]"
            )
            assert "phi1." not in body

            _, body = run_step(demo, "what the portal itself holds")
            raw = json.loads(body)
            assert TOKEN_RE.fullmatch(raw["ssn"])
            assert TOKEN_RE.fullmatch(raw["insurance"]["member_id"])
            assert ADA.ssn not in body
            assert ADA.medical_history not in body
        finally:
            assert demo.stop() == 0

    def test_portal_database_holds_only_tokens_and_folder_is_removed(self):
        """Every PHI column at rest is a token; Ctrl-C ends with status 0 and no temp folder."""
        demo = start_demo(free_ports(3))
        folder = Path(demo.exports()["DEMO_DIR"])
        try:
            with sqlite3.connect(folder / "portal.sqlite3") as db:
                rows = db.execute(
                    "SELECT ssn, date_of_birth, member_id, medical_history FROM patients"
                ).fetchall()
                reasons = db.execute("SELECT visit_reason FROM appointments").fetchall()
            assert len(rows) == 12
            assert len(reasons) == 4
            for value in [v for row in rows + reasons for v in row]:
                assert TOKEN_RE.fullmatch(value), "a PHI column holds something not a token"
            deterministic = {row[0].split(".")[1] for row in rows}
            assert deterministic == {"d"}  # SSNs: AES-SIV, so the portal can search them
        finally:
            assert demo.stop() == 0
        db.close()
        assert not folder.exists()
        assert demo.lines[-1] == f"Stopped. Deleted {folder}."

    def test_printed_revoke_command_masks_on_the_next_request(self):
        """The printed phi-grants command revokes alice; her very next request is masked."""
        demo = start_demo(free_ports(3))
        try:
            env = demo.exports()
            (revoke,) = [cmd for says, cmd in demo.steps() if says.startswith("revoke alice")]
            assert revoke.startswith(".venv/bin/phi-grants revoke ")
            result = subprocess.run(
                shlex.split(revoke),
                cwd=REPO,
                env={**env, "PATH": f"{BIN}:/usr/bin:/bin", "USER": "tests"},
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert "revoked" in result.stdout
            _, body = run_step(demo, "alice has an active grant")
            assert_masked(json.loads(body), ADA)
        finally:
            assert demo.stop() == 0

    def test_printed_review_command_flags_former_staff_who_keep_trying(self):
        """After mallory's masked request, the printed review exits 1 and names her attempt."""
        demo = start_demo(free_ports(3))
        try:
            env = demo.exports()
            run_step(demo, "mallory left practice-a")
            (review,) = [
                cmd for says, cmd in demo.steps() if says.startswith("the periodic access")
            ]
            assert review == ".venv/bin/phi-grants review"
            command = [str(BIN / "phi-grants"), *shlex.split(review)[1:]]
            deadline = time.monotonic() + 5
            while True:  # the proxy writes audit events every 200 ms
                result = subprocess.run(
                    command,
                    cwd=REPO,
                    env={**env, "PATH": f"{BIN}:/usr/bin:/bin"},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if "used_after_lapse" in result.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert result.returncode == 1, result.stdout + result.stderr
            assert "[used_after_lapse]  https://idp.demo.invalid|mallory at practice-a" in (
                result.stdout
            )
            assert "2 grant(s) in effect" in result.stdout  # alice and bob; mallory's was revoked
            assert "(verified;" in result.stdout
            assert "Nothing was changed." in result.stdout
        finally:
            assert demo.stop() == 0

    def test_sigterm_stops_and_cleans_up_too(self):
        """SIGTERM (what a process manager sends) also exits 0 and deletes the folder."""
        demo = start_demo(free_ports(3))
        folder = Path(demo.exports()["DEMO_DIR"])
        demo.process.send_signal(signal.SIGTERM)
        assert demo.stop() == 0
        assert not folder.exists()

    def test_keep_leaves_the_folder(self):
        """--keep: the folder survives the stop, and the last line says so."""
        demo = start_demo(free_ports(3), "--keep")
        folder = Path(demo.exports()["DEMO_DIR"])
        try:
            assert demo.stop() == 0
            assert (folder / "phi-proxy.yaml").is_file()
            assert "(--keep)" in demo.lines[-1]
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


class TestDemoPorts:
    def test_a_taken_port_is_one_clear_line_and_exit_2(self):
        """A busy port: exit 2, one line naming the port and the flag, nothing left behind."""
        import socket

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            proxy, admin = free_ports(2)
            result = subprocess.run(
                [
                    str(BIN / "phi-proxy"),
                    "demo",
                    "--port",
                    str(proxy),
                    "--portal-port",
                    str(port),
                    "--admin-port",
                    str(admin),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            (
                f"error: port {port} for the demo portal is already in use; "
                "choose another with --portal-port PORT"
            )
        ]

    def test_two_listeners_on_one_port_are_refused(self):
        """--port equal to --admin-port is refused before anything starts."""
        (port,) = free_ports(1)
        result = subprocess.run(
            [str(BIN / "phi-proxy"), "demo", "--port", str(port), "--admin-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert "--port and --admin-port are both" in result.stderr
