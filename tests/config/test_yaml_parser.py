"""The config reader parses with libyaml when PyYAML has it: same documents, same messages.

`keys/config_file.py` builds its strict loader on `yaml.CSafeLoader` (C) when available, on
`yaml.SafeLoader` (Python) otherwise. Both must give the same mapping and refuse the same
documents with the same message (line and column included), so what an operator reads does
not depend on how PyYAML was built.
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from keys import config_file
from keys.errors import ConfigError

DOCUMENTS = [
    "a: 1\nb: [1, 2\n",
    "x: &a {k: 1}\ny: {<<: *a, k: 2}\n",
    "x: &a {k: 1}\nz: &b {k: 2}\ny: {<<: [*a, *b]}\n",
    "- : x\n",
    "a: !!python/object:os.system x\n",
    "\ta: 1\n",
    "a: 'x\n",
    "a: b: c\n",
    "key: value\n  bad: indent\n",
    "fields:\n  selectors:\n    - {path: $.ssn, class: ssn}\n  selectors: []\n",
    "s: 'é\\u00e9'\nn: 0x1F\nd: 2026-12-07\nb: yes\n",
    "- a\n- b\n",
    "",
]

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML has no libyaml")


@pytest.fixture(scope="module")
def python_only():
    """keys.config_file as it loads where PyYAML was built without libyaml."""
    spec = importlib.util.find_spec("keys.config_file")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(yaml, "CSafeLoader")
        spec.loader.exec_module(module)
    return module


def _read(module, path):
    try:
        return ("read", module.read_config_mapping(path))
    except ConfigError as error:
        return ("refused", str(error))


def test_the_reader_uses_libyaml_and_the_fallback_does_not(python_only):
    assert issubclass(config_file._StrictLoader, yaml.CSafeLoader)
    assert not issubclass(python_only._StrictLoader, yaml.CSafeLoader)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_both_parsers_read_or_refuse_alike(python_only, tmp_path, document):
    path = tmp_path / "proxy.yaml"
    path.write_text(document, encoding="utf-8")
    assert _read(config_file, path) == _read(python_only, path)
