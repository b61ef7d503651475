"""The metrics count real transforms, with bounded labels.

No practice, field class or reason that a crafted token or a portal can invent becomes a label
of its own: they count as `other`, so a hostile body cannot grow the exposition.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

import proxy
from keys.testing import make_keyring
from proxy.grants import NO_ACCESS
from proxy.metrics import Metrics
from proxy.metrics.catalog import ALERTS
from proxy.transform import FieldPolicy, RevealContext, TransformStats, transform_response
from proxy.transform.settings import FieldSettings
from proxy.transform.testing import EVERY_GRANT, TEST_FIELDS


@pytest.fixture(scope="module")
def keyring():
    return make_keyring(["A", "B"])


@pytest.fixture(scope="module")
def policy():
    return FieldPolicy.compile(FieldSettings.model_validate(TEST_FIELDS))


def _transform(metrics, policy, keyring, records, access):
    body = orjson.dumps(records)
    context = RevealContext(policy, keyring, access, None, TransformStats())
    transform_response(body, "application/json", context)
    metrics.transformed(context.stats, keyring, policy)


def _value(metrics, action, field_class, practice):
    sample = metrics.registry.get_sample_value(
        "phi_proxy_phi_values_total",
        {"action": action, "field_class": field_class, "practice": practice},
    )
    return sample or 0


def test_a_grantee_read_counts_decrypted_and_a_non_grantee_read_masked(policy, keyring):
    metrics = Metrics()
    records = [{"practice_id": "A", "ssn": keyring.encrypt("A", "ssn", "219-09-9999")}]
    _transform(metrics, policy, keyring, records, EVERY_GRANT)
    _transform(metrics, policy, keyring, records * 3, NO_ACCESS)
    assert _value(metrics, "decrypted", "ssn", "A") == 1
    assert _value(metrics, "masked", "ssn", "A") == 3


def test_values_of_several_practices_in_one_body_count_as_mixed(policy, keyring):
    metrics = Metrics()
    records = [
        {"practice_id": "A", "ssn": keyring.encrypt("A", "ssn", "219-09-9999")},
        {"practice_id": "B", "ssn": keyring.encrypt("B", "ssn", "219-09-9998")},
    ]
    _transform(metrics, policy, keyring, records, EVERY_GRANT)
    assert _value(metrics, "decrypted", "ssn", "mixed") == 2
    assert _value(metrics, "decrypted", "ssn", "A") == 0


def test_a_practice_or_class_outside_the_config_is_counted_as_other(policy, keyring):
    metrics = Metrics()
    stats = TransformStats(decrypted=Counter({"invented-class": 2}), practices={"invented"})
    metrics.transformed(stats, keyring, policy)
    assert _value(metrics, "decrypted", "other", "other") == 2
    names = {
        sample.labels.get("practice")
        for family in metrics.registry.collect()
        for sample in family.samples
    }
    assert "invented" not in names


def test_tokens_that_do_not_open_count_by_reason(policy, keyring):
    metrics = Metrics()
    foreign = make_keyring(["Z"]).encrypt("Z", "ssn", "219-09-9997")
    _transform(metrics, policy, keyring, [{"practice_id": "Z", "ssn": foreign}], EVERY_GRANT)
    reasons = {
        sample.labels["reason"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "phi_proxy_integrity_failures"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert sum(reasons.values()) == 1
    assert set(reasons) <= {"unknown-kid", "not-authentic"}


def test_every_alert_the_proxy_counts_has_a_series_from_the_start():
    """An alert counted without a zero series first would be missed by increase() once."""
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in Path(proxy.__file__).parent.rglob("*.py")
    )
    counted = set(re.findall(r"\.alert\(\"([a-z_]+)\"\)", source))
    assert counted
    assert counted <= set(ALERTS)
    metrics = Metrics()
    for alert in ALERTS:
        assert metrics.registry.get_sample_value("phi_proxy_alerts_total", {"alert": alert}) == 0
