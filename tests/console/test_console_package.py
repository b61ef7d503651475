"""The console's templates and static files ship in the package (pyproject package-data)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_and_static_file_is_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["proxy.console"]
    folder = ROOT / "proxy" / "console"
    files = [
        p.relative_to(folder).as_posix()
        for sub in ("templates", "static")
        for p in (folder / sub).iterdir()
        if p.is_file()
    ]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == [], "add them to [tool.setuptools.package-data] proxy.console"
