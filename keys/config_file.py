"""Reading the YAML config file and turning validation errors into operator-readable text.

Every command (`phi-proxy`, `phi-keys`, `phi-grants`, `phi-audit`) reads the same file: `-c FILE`
or, when absent, the `PHI_PROXY_CONFIG` environment variable. Each command validates the
sections it needs with `load_section`; `phi-proxy check-config` validates the whole file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo

from keys.cli_options import CONFIG_ENV_VAR
from keys.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "ConfigPath",
    "describe_validation_error",
    "load_section",
    "read_config_mapping",
    "relative_to_config",
    "resolve_config_path",
]


ModelT = TypeVar("ModelT", bound=BaseModel)


def relative_to_config(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the folder of the config file it was written in.

    Validation passes that folder as the `base_dir` context (see `load_section`); without a
    context (a model built in code) the path is kept as given.
    """
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir") if isinstance(info.context, dict) else None
    return Path(base) / value if base else value


ConfigPath = Annotated[Path, AfterValidator(relative_to_config)]
"""A file path in the config; relative paths are relative to the config file's folder."""


def resolve_config_path(cli_value: str | os.PathLike[str] | None) -> Path:
    """Return the config path from `-c`, else from `PHI_PROXY_CONFIG`, else raise ConfigError."""
    if cli_value:
        return Path(cli_value)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    raise ConfigError(
        f"no config file given: pass -c FILE or set {CONFIG_ENV_VAR}=FILE "
        "(see config/proxy.example.yaml for an annotated example)"
    )


class _DuplicateKey(Exception):
    """A mapping names the same key twice; carries what the ConfigError message needs."""

    def __init__(self, key: object, first_line: int, second_line: int) -> None:
        super().__init__(key, first_line, second_line)
        self.key = key
        self.first_line = first_line
        self.second_line = second_line


#: libyaml's parser (C) when PyYAML was built with it, else PyYAML's own; the same documents,
#: marks and errors, and the C one parses a config several times faster (startup and reload).
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeBase):  # type: ignore[misc,valid-type]
    """`yaml.SafeLoader` that refuses a key given twice in one mapping.

    Plain PyYAML keeps the last value and drops the first without a word, so a second
    `selectors:` block silently replaces the first (and the PHI it protected goes out in
    clear). `<<` merge keys still work: a key written in the mapping itself overrides the same
    key merged in from an anchor, as YAML specifies; keys written twice, `<<` written twice,
    and a key that two mappings of one `<<: [*a, *b]` both bring are refused.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Check the mapping's own keys for repeats, then build it as SafeLoader does."""
        seen: dict[object, int] = {}
        merge_line: int | None = None
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                if merge_line is not None:  # the second `<<` would silently drop the first
                    raise _DuplicateKey("<<", merge_line, line)
                merge_line = line
                self._refuse_overlapping_merges(value_node, deep=deep)
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first is not None:
                raise _DuplicateKey(key, first, line)
            seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def _refuse_overlapping_merges(self, value_node: yaml.Node, *, deep: bool) -> None:
        """`<<: [*a, *b]` where a and b share a key: YAML keeps a's silently; refuse it."""
        if not isinstance(value_node, yaml.SequenceNode):
            return
        seen: dict[object, int] = {}
        for merged in value_node.value:
            if not isinstance(merged, yaml.MappingNode):
                continue
            for key_node, _value in merged.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                if first is not None:
                    raise _DuplicateKey(key, first, line)
                seen[key] = line


def read_config_mapping(path: Path) -> dict[str, Any]:
    """Parse the YAML file at `path` into a mapping, or raise ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.__class__.__name__})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{path}: the key {exc.key!r} appears twice in the same mapping (line "
            f"{exc.first_line} and line {exc.second_line}). YAML would silently keep only the "
            f"second and drop everything under the first, such as a list of selectors that "
            f"protects PHI. Merge the two into one {exc.key!r} entry (or delete the one you did "
            "not mean), then run `phi-proxy check-config` again"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax and retry") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (keys:, grants:…)")
    return data


def describe_validation_error(exc: ValidationError, *, prefix: str = "") -> str:
    """One line per problem: the dotted YAML path and what is wrong, never the offending value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        parts = [prefix] if prefix else []
        parts += [str(p) for p in error["loc"]]
        where = ".".join(parts) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def load_section(path: Path, section: str, model: type[ModelT]) -> ModelT:
    """Validate one top-level section of the config file with `model`.

    Relative file paths inside a section are resolved against the config file's folder; models
    that hold paths receive that folder as the `base_dir` validation context.
    """
    data = read_config_mapping(path)
    raw = data.get(section, {})
    if raw is None:
        raw = {}
    try:
        return model.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        detail = describe_validation_error(exc, prefix=section)
        raise ConfigError(f"{path}: invalid configuration\n{detail}") from None
