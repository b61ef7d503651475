"""deploy/prometheus/alerts.yaml: valid for Prometheus, and each rule fires when it should.

`promtool check rules` validates the file; `promtool test rules` runs alerts.test.yaml, which
feeds series to every rule and pins the alerts (labels and annotations) it raises, and the
quiet cases. Every alert in alerts.yaml must be exercised there, and every metric a rule reads
must be one the proxy exports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from proxy.metrics import Metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
REQUIRE = "PHI_TEST_REQUIRE_PROMETHEUS"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        reason = "promtool is not installed (Debian's prometheus; scripts/test-prometheus)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason} ({REQUIRE}=1 requires it)", pytrace=False)
        pytest.skip(f"{reason}; CI sets {REQUIRE}=1 to make this a failure")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, check=False, timeout=120, cwd=RULES_DIR
    )


def _rules() -> list[dict]:
    document = yaml.safe_load((RULES_DIR / "alerts.yaml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules():
    checked = _promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_rule_passes_its_promtool_unit_tests():
    tested = _promtool("test", "rules", "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_rule_is_exercised_by_the_unit_tests():
    tests = yaml.safe_load((RULES_DIR / "alerts.test.yaml").read_text(encoding="utf-8"))
    exercised = {
        case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", ())
    }
    assert {rule["alert"] for rule in _rules()} <= exercised


def test_the_rules_read_only_metrics_the_proxy_exports():
    exported = {metric.name for metric in Metrics().registry.collect()}
    read = {
        name for rule in _rules() for name in re.findall(r"\b(phi_proxy_[a-z_]+)", rule["expr"])
    }
    # Counters are exported with `_total`; the registry names them without it.
    assert {name.removesuffix("_total") for name in read} <= exported
