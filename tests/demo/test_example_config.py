"""config/proxy.example.yaml documents every setting and is a config that really runs."""

from __future__ import annotations

import re
import shutil
import typing

from demo_helpers import BIN, REPO
from pydantic import BaseModel, RootModel

from proxy.settings import Settings, load_settings
from tests.cli_process import run_cli

EXAMPLE = REPO / "config/proxy.example.yaml"


def _models(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def setting_paths(model=Settings, prefix=""):
    """Dotted names of every setting, through nested models, unions and lists."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        if issubclass(model, RootModel):
            key, here = "", prefix.rstrip(".")
        else:
            here = prefix + key
            yield here
        for nested in _models(info.annotation):
            yield from setting_paths(nested, f"{here}." if here else "")


class TestExampleConfig:
    def test_every_setting_is_written_in_the_example(self):
        """Each setting's key appears, set or commented, inside its top-level section's block."""
        blocks: dict[str, str] = {}
        section = None
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
            top = re.match(r"^([a-z_]+):", line)
            if top:
                section = top.group(1)
            if section is not None:
                blocks[section] = blocks.get(section, "") + line + "\n"
        missing = []
        for path in setting_paths():
            top, _, rest = path.partition(".")
            leaf = (rest or top).rsplit(".", 1)[-1]
            block = blocks.get(top, "")
            if not re.search(rf"(^|[\s{{#-]){re.escape(leaf)}:", block, re.MULTILINE):
                missing.append(path)
        assert missing == [], "document these settings in config/proxy.example.yaml"

    def test_every_section_is_set_and_valid(self):
        """Every top-level section of Settings is present (not commented) and the file validates."""
        import yaml

        data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        assert set(data) == set(Settings.model_fields)
        load_settings(EXAMPLE)

    def test_check_config_accepts_it_with_real_keys(self, tmp_path):
        """Copied beside a new KEK and keystore, `phi-proxy check-config` says it is valid."""
        config = tmp_path / "proxy.yaml"
        shutil.copy(EXAMPLE, config)

        def run(*argv):
            return run_cli(
                [str(BIN / argv[0]), "-c", str(config), *argv[1:]]
                if argv[0] != "phi-proxy"
                else [str(BIN / "phi-proxy"), argv[1], "-c", str(config)],
                cwd=tmp_path,
                text=True,
                timeout=60,
                check=False,
            )

        assert run("phi-keys", "init", "--generate-kek", "kek.b64").returncode == 0
        assert run("phi-keys", "add-practice", "practice-a").returncode == 0
        result = run("phi-proxy", "check-config")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == f"ok: {config} is valid"
        # No grants added yet: said, and the check creates nothing (a mistyped path must not
        # turn into an empty, healthy-looking store).
        assert "there is no grant store at" in result.stderr
        assert "grants.store" in result.stderr
        assert not (tmp_path / "grants.sqlite3").exists()
        assert (
            run(
                "phi-grants",
                "add",
                "--subject",
                "https://login.example.org/realms/clinic|a",
                "--practice",
                "practice-a",
                "--ttl",
                "1d",
                "--reason",
                "test",
            ).returncode
            == 0
        )
        again = run("phi-proxy", "check-config")
        assert again.returncode == 0, again.stderr
        assert "there is no grant store" not in again.stderr
