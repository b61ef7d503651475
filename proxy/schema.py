"""The JSON Schema of the config file, generated from the settings models.

Editors (VS Code's YAML extension, IntelliJ) use it for completion and validation:
    # yaml-language-server: $schema=./proxy.schema.json
Regenerate after changing a settings model:  python -m proxy.schema > config/proxy.schema.json
A test fails when the committed file and the models disagree.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from proxy.settings import Settings

__all__ = ["config_schema", "render_schema"]

SCHEMA_ID = "https://phi-proxy.invalid/schema/proxy.schema.json"


def config_schema() -> dict[str, Any]:
    """The schema as a dict (validation mode: what a config file may contain)."""
    schema = Settings.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "phi-proxy configuration",
        **schema,
    }


def render_schema() -> str:
    """The schema as stable, diff-friendly JSON text."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_schema())
