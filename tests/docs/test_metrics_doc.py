"""docs/operations.md describes every metric the proxy exports and every shipped alert rule.

Collected from the code and the rules file, not from a list kept here: a new metric or alert
rule without runbook text fails, and so does a metric named in the runbook that no longer
exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from proxy.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())


def exported_names() -> set[str]:
    """The names as a scrape shows them (counters with `_total`)."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


def test_every_metric_is_in_the_runbook():
    missing = sorted(name for name in exported_names() if f"`{name}`" not in RUNBOOK)
    assert missing == []


def test_the_runbook_names_only_metrics_that_exist():
    named = set(re.findall(r"`(phi_proxy_[a-z_]+)`", RUNBOOK))
    assert sorted(named - exported_names()) == []


def test_every_alert_rule_is_in_the_runbook():
    alerts = {rule["alert"] for group in RULES["groups"] for rule in group["rules"]}
    assert sorted(name for name in alerts if f"`{name}`" not in RUNBOOK) == []
