"""docs/operations.md, the operator's runbook, names every code the proxy can show an operator.

A new error code, 401 reason, unsafe-body reason, integrity reason, alert or /readyz check
without runbook text fails here. The codes are collected from the code, not from a list kept in
this test:

* by import where the code holds them as data: `UNSAFE_REASONS`, `REJECT_REASONS`, the `code`
  attribute of every `ProxyError` subclass, `AccessRecord`'s default outcome, the `/readyz`
  checks (by calling `Runtime.readiness` on an unopened runtime), `KeyState` for the
  `key-<state>` reasons and the claims `_number`/PyJWT complain about;
* by parsing the source with `ast` (not regular expressions) where they exist only as literals
  at a call site: the `code=` arguments of `ProxyError` and its subclasses, the `"error"` of the
  401 body, `record.outcome = …` in the app, `AuthenticationError(...)` reasons and
  `time_failure`'s returns, the messages of loggers bound to `ALERT_LOGGER`, and the integrity
  reasons (`….integrity(kid, "reason")` calls, and the hyphenated reason literals of
  `Keyring.diagnose` and `malformed_reason`). An f-string reason such as `f"missing_{exc.claim}"`
  is expected in the runbook as `missing_<claim>` (the name of its last placeholder).

The other direction is checked too: the first column of the runbook's code tables names only
codes that exist, so a code removed from the proxy cannot linger in the runbook, and every
relative link (file and #anchor) resolves.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib
import pkgutil
import re
from functools import cache
from pathlib import Path

import proxy
from keys.keyring import _DECRYPTING, KeyState
from proxy.accesslog import AccessRecord
from proxy.audit.alerts import THROTTLED
from proxy.errors import ProxyError
from proxy.identity.authenticator import _REQUIRED_CLAIMS
from proxy.logs import ALERT_LOGGER
from proxy.runtime import Runtime
from proxy.transform.errors import REJECT_REASONS, UNSAFE_REASONS

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"


@cache
def runbook() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def missing_from_runbook(codes: set[str]) -> list[str]:
    """The codes not written in the runbook as inline code (`code`)."""
    return sorted(code for code in codes if f"`{code}`" not in runbook())


# ---- collecting from the source ---------------------------------------------------------------


def sources(*parts: str) -> list[Path]:
    """Python files under ROOT/parts (the demo is not the proxy: it is left out)."""
    base = ROOT.joinpath(*parts)
    files = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
    return [f for f in files if "demo" not in f.relative_to(ROOT).parts]


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(tree(path)) if isinstance(node, ast.Call)]


def callee(call: ast.Call) -> str | None:
    """`f` for f(...), `m` for x.m(...)."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def text_of(node: ast.expr) -> str | None:
    """A string literal's value; an f-string as its literal parts with `<name>` placeholders."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                assert isinstance(part, ast.FormattedValue)
                inner = part.value
                name = inner.attr if isinstance(inner, ast.Attribute) else ast.unparse(inner)
                out.append(f"<{name}>")
        return "".join(out)
    return None


def function(path: Path, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    (found,) = [
        node
        for node in ast.walk(tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    ]
    return found


def proxy_error_classes() -> list[type[ProxyError]]:
    """ProxyError and every subclass, after importing every module of the proxy."""
    for module in pkgutil.walk_packages(proxy.__path__, "proxy."):
        if ".demo" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found, todo = [], [ProxyError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@cache
def error_codes() -> frozenset[str]:
    """Every `error` code a client can receive in the proxy's own JSON error body."""
    classes = proxy_error_classes()
    codes = {cls.code for cls in classes}
    names = {cls.__name__ for cls in classes}
    for path in sources("proxy"):
        for call in calls(path):
            if callee(call) in names:
                for keyword in call.keywords:
                    if keyword.arg == "code" and (code := text_of(keyword.value)) is not None:
                        codes.add(code)
    # The 401 body is built in the app's middleware as a dict literal: its "error" value.
    for node in ast.walk(tree(ROOT / "proxy" / "app.py")):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and text_of(key) == "error" and text_of(value) is not None:
                    codes.add(text_of(value))
    return frozenset(codes)


@cache
def outcomes() -> frozenset[str]:
    """Access-log `outcome` values set in the app (f-strings as their `prefix:` part)."""
    found = {field.default for field in dataclasses.fields(AccessRecord) if field.name == "outcome"}
    for node in ast.walk(tree(ROOT / "proxy" / "app.py")):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "outcome":
                    value = text_of(node.value)
                    if value is not None:
                        found.add(value.split("<", 1)[0])
    return frozenset(found)


@cache
def unauthenticated_reasons() -> frozenset[str]:
    """Every `AuthenticationError` reason raised by identity, and the token time checks."""
    reasons = set()
    for path in sources("proxy", "identity"):
        for call in calls(path):
            if callee(call) == "AuthenticationError" and call.args:
                reason = text_of(call.args[0])
                if reason is not None:
                    reasons.add(reason)
    time_failure = function(ROOT / "proxy" / "identity" / "token_cache.py", "time_failure")
    for node in ast.walk(time_failure):
        if isinstance(node, ast.Return) and node.value is not None:
            reason = text_of(node.value)
            if reason is not None:
                reasons.add(reason)
    return frozenset(reasons)


@cache
def alert_names() -> frozenset[str]:
    """The message (= alert name) of every call on a logger bound to `ALERT_LOGGER`."""
    names = set()
    for path in sources("proxy"):
        module = tree(path)
        loggers = {
            target.id
            for node in ast.walk(module)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and callee(node.value) == "getLogger"
            and any(isinstance(a, ast.Name) and a.id == "ALERT_LOGGER" for a in node.value.args)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in calls(path):
            owner = call.func.value if isinstance(call.func, ast.Attribute) else None
            if isinstance(owner, ast.Name) and owner.id in loggers and call.args:
                name = text_of(call.args[0])
                if name is not None:
                    names.add(name)
    return frozenset(names)


_HYPHENATED = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)+")


@cache
def integrity_reasons() -> frozenset[str]:
    """The `reason` of an `integrity_failure` alert: the transform's and each keyring's."""
    reasons = set()
    for path in sources("proxy", "transform"):
        for call in calls(path):
            if callee(call) == "integrity" and len(call.args) == 2:
                reason = text_of(call.args[1])
                if reason is not None:
                    reasons.add(reason)
    diagnose = function(ROOT / "keys" / "keyring.py", "diagnose")
    sealed = function(ROOT / "keys" / "sealed_keyring.py", "diagnose")
    malformed = function(ROOT / "keys" / "token_format.py", "malformed_reason")
    for func in (diagnose, sealed, malformed):
        for node in ast.walk(func):
            value = text_of(node) if isinstance(node, ast.Constant | ast.JoinedStr) else None
            if value == "key-<value>":  # f"key-{entry.info.state.value}": a non-decrypting state
                reasons.update(f"key-{s.value}" for s in KeyState if s not in _DECRYPTING)
            elif value is not None and _HYPHENATED.fullmatch(value):
                reasons.add(value)
    return frozenset(reasons)


def readiness_checks() -> set[str]:
    """The keys of /readyz's `checks`, from a runtime that opened nothing."""
    runtime = object.__new__(Runtime)
    runtime._keyring = runtime._grants = runtime._pipeline = runtime._audit = None
    runtime._authenticator = None
    return set(asyncio.run(runtime.readiness()))


# ---- the runbook names them all --------------------------------------------------------------


class TestEveryCodeHasRunbookText:
    def test_collectors_find_what_we_know_is_there(self):
        """The collectors work: each finds codes known to exist (a broken one finds nothing)."""
        assert {"upstream_unavailable", "upstream_timeout", "unsafe_upstream_body"} <= (
            error_codes()
        )
        assert {"upstream_bad_encoding", "request_rejected", "internal_error"} <= error_codes()
        assert {"unauthenticated", "upstream_body_too_large"} <= error_codes()
        assert {"expired", "wrong_audience", "missing_token", "missing_<claim>"} <= (
            unauthenticated_reasons()
        )
        assert alert_names() == {
            "lapsed_grant_use",
            "integrity_failure",
            "masked_burst",
            "key_usage_high",
            "kek_unavailable",
            "kek_available",
            "scim_change_not_audited",
            "admin_change_not_audited",
            "admin_read_not_audited",
            "canary_touched",
            "break_glass_use",
            "break_glass_refused",
            "break_glass_without_claim",
        }
        assert {"unknown-kid", "key-retired", "key-destroyed", "malformed"} <= (integrity_reasons())
        assert {"bad-base64", "nested-token", "not-authentic"} <= integrity_reasons()
        assert {"forwarded", "refused", "unauthenticated:", "unsafe_body:"} <= outcomes()
        assert {"keystore", "grant_store", "audit_sink"} <= readiness_checks()

    def test_every_error_code(self):
        """Every `error` a client can get from the proxy itself (`code=` and class codes)."""
        assert missing_from_runbook(set(error_codes())) == []

    def test_every_unsafe_body_reason(self):
        """Every `UnsafeBody` reason (the `unsafe_body:REASON` outcome behind a 502)."""
        assert missing_from_runbook(set(UNSAFE_REASONS)) == []

    def test_every_rejected_reason(self):
        """Every `RequestRejected` reason (the access line's `rejected` field on 400/415/422)."""
        assert missing_from_runbook(set(REJECT_REASONS)) == []

    def test_every_401_reason(self):
        """Every `AuthenticationError` reason (the `unauthenticated:REASON` outcome)."""
        assert missing_from_runbook(set(unauthenticated_reasons())) == []

    def test_every_claim_of_the_claim_reasons_is_named(self):
        """`missing_<claim>` and `bad_<claim>` say which claims: the runbook names them."""
        claims = {*_REQUIRED_CLAIMS, "exp", "iat", "nbf"}
        assert missing_from_runbook(claims) == []

    def test_every_alert(self):
        """Every alert line's name (logger `phi_proxy.alert`), and that logger's name."""
        assert missing_from_runbook({*alert_names(), ALERT_LOGGER}) == []

    def test_every_integrity_reason(self):
        """Every `reason` an `integrity_failure` alert can carry."""
        assert missing_from_runbook(set(integrity_reasons())) == []

    def test_every_access_log_outcome(self):
        """Every `outcome` the access log can show, written as the log line has it."""
        text = runbook()
        missing = [o for o in outcomes() if f'"outcome":"{o}' not in text]
        assert sorted(missing) == []

    def test_every_readiness_check(self):
        """Every field of /readyz's `checks`."""
        assert missing_from_runbook(readiness_checks()) == []


def alert_table_rows() -> dict[str, list[str]]:
    """The runbook's alert table: alert name → its cells after the first."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in runbook().splitlines():
        if line.startswith("| alert |"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not set(line) <= {"|", "-", " "}:
            first, *rest = (cell.strip() for cell in line.strip("|").split("|"))
            (name,) = re.findall(r"`([^`]+)`", first)
            rows[name] = rest
    return rows


class TestAlertThrottlingIsDocumented:
    def test_the_alert_table_says_which_alerts_are_throttled(self):
        """The runbook's "how often" column says "throttled" exactly for `THROTTLED`."""
        rows = alert_table_rows()
        assert set(rows) == set(alert_names())
        throttled = {name for name, cells in rows.items() if cells[0] == "throttled"}
        assert throttled == set(THROTTLED)

    def test_the_limit_and_its_count_are_named(self):
        """The setting that limits them and the field that counts what was held back."""
        assert "`audit.alerts.repeat_interval_seconds`" in runbook()
        for name in THROTTLED:
            assert "`suppressed`" in alert_table_rows()[name][1], name


# ---- and names nothing else -------------------------------------------------------------------

#: First header cell of a runbook table → the codes its first column may name.
_TABLES = {
    "error code": error_codes,
    "UnsafeBody reason": lambda: UNSAFE_REASONS,
    "rejected reason": lambda: REJECT_REASONS,
    "401 reason": unauthenticated_reasons,
    "alert": alert_names,
    "integrity reason": integrity_reasons,
    "readyz check": readiness_checks,
}


def table_first_cells() -> dict[str, list[str]]:
    """For each code table (by its first header cell), the codes in its first column."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    previous = ""
    for line in runbook().splitlines():
        if not line.startswith("|"):
            current, previous = None, line
            continue
        first = line.split("|")[1].strip()
        if not previous.startswith("|"):  # a header row
            current = first if first in _TABLES else None
            if current is not None:
                found.setdefault(current, [])
        elif current is not None and not set(first) <= {"-", " "}:
            found[current].extend(re.findall(r"`([^`]+)`", first))
        previous = line
    return found


_SLUG_DROP = re.compile(r"[^\w\- ]")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return _SLUG_DROP.sub("", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


class TestRunbookNamesOnlyRealThings:
    def test_code_tables_name_only_existing_codes(self):
        """A code removed from the proxy cannot linger in the runbook's tables."""
        tables = table_first_cells()
        assert set(tables) == set(_TABLES), "a code table was renamed or removed"
        for header, codes in tables.items():
            known = _TABLES[header]()
            assert codes, f"the {header!r} table lists no codes"
            assert sorted(set(codes) - set(known)) == [], f"unknown in the {header!r} table"

    def test_links_resolve(self):
        """Every relative link names an existing file, and an existing heading after `#`."""
        links = re.findall(r"\]\(([^)\s]+)\)", runbook())
        assert links
        for link in links:
            if "://" in link:
                continue
            target, _, anchor = link.partition("#")
            path = (RUNBOOK.parent / target).resolve() if target else RUNBOOK
            assert path.is_file(), f"broken link {link}"
            if anchor:
                assert anchor in anchors(path), f"no heading for #{anchor} in {path.name}"

    def test_readme_documentation_map_lists_the_runbook(self):
        """README's documentation table links the runbook."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        documentation = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
        assert "| [docs/operations.md](docs/operations.md) |" in documentation
