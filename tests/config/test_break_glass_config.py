"""The `break_glass:` section: off by default, bounded, and refused with a line that says why."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from keys.errors import ConfigError
from proxy.demo.workspace import DemoPorts, create_workspace
from proxy.grants.break_glass_settings import BreakGlassSettings
from proxy.settings import load_settings

PORTS = DemoPorts(proxy=28180, portal=28181, admin=29190)
ON = {"enabled": True, "classes": ["ssn", "history"]}


@pytest.fixture
def workspace(tmp_path):
    """The demo's config, KEK, keystore and JWKS in a folder."""
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    create_workspace(folder, PORTS)
    return folder


def load_with(folder, section=None, **top):
    data = yaml.safe_load((folder / "phi-proxy.yaml").read_text(encoding="utf-8"))
    if section is not None:
        data["break_glass"] = section
    data.update(top)
    path = folder / "bg.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_settings(path)


class TestDefaults:
    def test_off_by_default_with_an_hour_three_a_day_and_three_days_to_sign_off(self):
        """Without the section nothing changes; its limits default to 1h, 3 a day, 3d."""
        settings = BreakGlassSettings()
        assert not settings.enabled
        assert settings.max_ttl == timedelta(hours=1)
        assert settings.max_per_day == 3
        assert settings.signoff_within == timedelta(days=3)
        assert (settings.claim, settings.value) == ("groups", "phi-break-glass")

    def test_a_valid_section_loads_with_durations_as_text(self, workspace):
        """Durations read like grants' (30m, 2d); classes are kept sorted and unique."""
        settings = load_with(
            workspace,
            ON | {"classes": ["ssn", "history", "ssn"], "max_ttl": "30m", "signoff_within": "2d"},
        )
        glass = settings.break_glass
        assert glass.classes == ("history", "ssn")
        assert glass.max_ttl == timedelta(minutes=30)
        assert glass.signoff_within == timedelta(days=2)


class TestRefused:
    @pytest.mark.parametrize(
        ("section", "says"),
        [
            ({"enabled": True}, "break_glass.classes is empty"),
            (ON | {"classes": ["ssn", "passport"]}, "passport, not defined under fields.classes"),
            (ON | {"classes": ["SSN"]}, "not a field class name"),
            (ON | {"classes": "ssn"}, "is a list"),
            (ON | {"max_ttl": "2d"}, "at most 24h"),
            (ON | {"max_ttl": "1x"}, "not a duration"),
            (ON | {"max_per_day": 0}, "max_per_day"),
            (ON | {"max_per_day": 500}, "max_per_day"),
            (ON | {"signoff_within": "365d"}, "at most 90d"),
            (ON | {"value": ""}, "printable text"),
            (ON | {"claim": "groups\n"}, "printable text"),
            (ON | {"reason_min": 5}, "reason_min"),
        ],
    )
    def test_each_mistake_is_named(self, workspace, section, says):
        """Each mistake is a ConfigError naming the setting and the fix."""
        with pytest.raises(ConfigError, match="break_glass") as refused:
            load_with(workspace, section)
        assert says in str(refused.value)

    def test_break_glass_needs_the_audit_trail(self, workspace):
        """Emergency access without an audit trail is refused: every use must leave evidence."""
        with pytest.raises(ConfigError, match=r"needs audit\.enabled"):
            load_with(workspace, ON, audit={"enabled": False})

    def test_its_ttl_cannot_exceed_grants_max_ttl(self, workspace):
        """A break-glass grant longer than any grant may be would always be refused."""
        data = yaml.safe_load((workspace / "phi-proxy.yaml").read_text(encoding="utf-8"))
        grants = data["grants"] | {"max_ttl": "1h"}
        with pytest.raises(ConfigError, match=r"longer than grants\.max_ttl"):
            load_with(workspace, ON | {"max_ttl": "2h"}, grants=grants)


def test_check_config_states_the_break_glass_posture(workspace, capsys):
    """check-config's security posture says whether break-glass is on, and its limits."""
    from proxy.cli import main

    load_with(workspace, ON)
    assert main(["check-config", "-c", str(workspace / "bg.yaml")]) == 0
    out = capsys.readouterr().out
    assert "break_glass:           on: tokens whose groups carries 'phi-break-glass'" in out
    assert "for 1h, 3 per person a day; sign off within 3d" in out
