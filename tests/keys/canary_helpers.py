"""What the canary tests share: a config with two PHI classes, and `phi-keys canary` in-process."""

from __future__ import annotations

import json

from keys.canary_register import CanaryRegister
from keys.cli import main
from keys.config_file import load_section
from keys.settings import KeySettings, keystore_file

CONFIG = """\
keys:
  keystore: ./keystore.json
  kek: {provider: file, path: ./kek.b64}
fields:
  classes:
    ssn: {mask: {keep_last: 4, template: "***-**-{last}"}, deterministic: true}
    insurance_id: {mask: {text: "[redacted]"}}
  selectors:
    - {class: ssn, keys: [ssn]}
    - {class: insurance_id, keys: [member_id]}
audit: {path: ./audit.jsonl, fsync: false}
"""
SSN = "402-17-5530"
MEMBER = "MBR-5530-KX"


def make_config(tmp_path):
    """A config with a keystore holding practice-a, and the field classes the proxy uses."""
    path = tmp_path / "proxy.yaml"
    path.write_text(CONFIG)
    assert main(["-c", str(path), "init", "--generate-kek", str(tmp_path / "kek.b64")]) == 0
    assert main(["-c", str(path), "add-practice", "practice-a"]) == 0
    return path


def keyring_of(config):
    return keystore_file(load_section(config, "keys", KeySettings)).load()


def issue(config, capsys, *fields, label="night shift test"):
    capsys.readouterr()
    args = ["-c", str(config), "canary", "--practice", "practice-a", "--label", label]
    for spec in fields:
        args += ["--field", spec]
    status = main(args)
    out = capsys.readouterr()
    assert status == 0, out.err
    tokens = dict(line.split() for line in out.out.splitlines() if line.startswith("  "))
    canary_id = out.out.split()[2]
    return canary_id, tokens


def register_of(config):
    return CanaryRegister(config.parent / "keystore.json.canaries.json")


def audit_actions(config):
    lines = (config.parent / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"key_change"' in line]
