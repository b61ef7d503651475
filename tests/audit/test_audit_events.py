"""Event building blocks: path templates, the masked-burst counter, settings defaults."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit import AuditSettings, path_template
from proxy.audit.alerts import MaskedBurst
from proxy.settings import Settings

_segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/?"), min_size=0, max_size=20
)


class TestPathTemplate:
    def test_ids_and_query_strings_are_removed(self):
        """Digits, UUIDs, e-mails and the query string never reach the audit event."""
        assert path_template("/api/patients/123/visits?ssn=123-45-6789") == (
            "/api/patients/{id}/visits"
        )
        assert path_template("/p/3f2b8c1e-0d4a-4b5e-9c7d-1a2b3c4d5e6f") == "/p/{id}"
        assert path_template("/users/pat@example.org") == "/users/{id}"
        assert path_template("/api/v1/patients") == "/api/v1/patients"

    def test_a_write_route_template_wins(self):
        """A matched write route's template is used verbatim."""
        assert path_template("/api/practices/p-1/patients", "/api/practices/{x}/patients") == (
            "/api/practices/{x}/patients"
        )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_segment, max_size=6))
    def test_no_digit_survives_outside_a_version_segment(self, segments):
        """Whatever the path, the template holds no digit except in `v1`-style segments."""
        out = path_template("/" + "/".join(segments))
        for part in out.split("/"):
            if not (part.startswith("v") and part[1:].isdigit()):
                assert not any(ch.isdigit() for ch in part)
            assert part.isascii()


class TestMaskedBurst:
    def test_alerts_once_per_window_at_the_threshold(self):
        """Three masked responses within the window alert once; the fourth stays quiet."""
        burst = MaskedBurst(threshold=3, window=10.0)
        assert [burst.hit("s", t) for t in (0.0, 1.0, 2.0, 3.0)] == [None, None, 3, None]

    def test_old_hits_slide_out_of_the_window(self):
        """Hits older than the window do not count."""
        burst = MaskedBurst(threshold=2, window=5.0)
        assert burst.hit("s", 0.0) is None
        assert burst.hit("s", 6.0) is None
        assert burst.hit("s", 7.0) == 2

    def test_a_subject_costs_at_most_threshold_timestamps(self):
        """10,000 masked responses in one window keep `threshold` timestamps, not 10,000."""
        burst = MaskedBurst(threshold=3, window=60.0)
        alerts = [burst.hit("s", n / 1000) for n in range(10_000)]
        assert alerts.count(3) == 1
        assert len(burst._hits["s"]) == 3

    def test_subjects_are_counted_apart(self):
        """One subject's burst says nothing about another."""
        burst = MaskedBurst(threshold=2, window=5.0)
        assert burst.hit("a", 0.0) is None
        assert burst.hit("b", 0.1) is None


class TestAuditSettingsDefaults:
    def test_auditing_is_on_by_default_next_to_the_config(self, tmp_path):
        """No audit section: a file trail with its key beside the config file, deny on failure."""
        audit = AuditSettings.model_validate({}, context={"base_dir": tmp_path})
        assert audit.enabled
        assert audit.path == tmp_path / "audit.jsonl"
        assert audit.key_file == tmp_path / "audit.key"
        assert audit.on_failure == "deny"

    def test_the_root_settings_resolve_the_default_against_the_config(self, tmp_path):
        """Settings without `audit:` still resolve the trail next to the config file."""
        assert "audit" in Settings.model_fields
        field = Settings.model_fields["audit"]
        assert field.validate_default
        assert (
            Path("audit.jsonl")
            != AuditSettings.model_validate({}, context={"base_dir": tmp_path}).path
        )
