"""docs/console.md: its configuration example is a valid `admin_api:` section."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from proxy.admin_api.settings import AdminApiSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "console.md"


def test_the_configuration_example_loads(tmp_path):
    [example] = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
        if "console:" in block
    ]
    section = yaml.safe_load(example)["admin_api"]
    api = AdminApiSettings.model_validate(section, context={"base_dir": tmp_path})
    assert api.console.enabled
    assert api.console.oidc is not None
    assert api.console.oidc.client_secret_file == tmp_path / "console-client-secret"
