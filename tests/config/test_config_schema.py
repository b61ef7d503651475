import sys
from pathlib import Path

from proxy.schema import config_schema, render_schema
from tests.cli_process import run_cli

ROOT = Path(__file__).resolve().parents[2]


class TestConfigSchema:
    def test_committed_schema_matches_the_models(self):
        """config/proxy.schema.json is exactly what the settings models generate."""
        committed = (ROOT / "config" / "proxy.schema.json").read_text(encoding="utf-8")
        assert committed == render_schema(), (
            "config/proxy.schema.json is stale: run "
            "`.venv/bin/python -m proxy.schema > config/proxy.schema.json`"
        )

    def test_schema_forbids_unknown_sections_and_requires_the_essentials(self):
        """Typos in section names are errors, and the four security sections are required."""
        schema = config_schema()
        assert schema["additionalProperties"] is False
        assert {"upstream", "identity", "grants", "keys", "fields"} <= set(schema["required"])

    def test_module_prints_the_schema(self):
        """`python -m proxy.schema` prints the same text (the regeneration command works)."""
        out = run_cli([sys.executable, "-m", "proxy.schema"], text=True, check=True)
        assert out.stdout == render_schema()
