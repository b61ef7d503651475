"""`phi-proxy check-config --sample FILE`: what the field policy does to a real body.

A selector that never matches passes silently at runtime: `$[?(@.resourceType=='Patient')]`
never tests the root (RFC 9535), so a phone selector written that way left phones in clear.
Before deploying, an operator runs the policy on a sample of what the portal really sends and
reads, per selector, which values it selects (as JSONPath locations, or for an XML sample
`/root/child[n]/@attribute` locations) or that it selects none;
then the body a caller without a grant would see, and, for a route given with `--route`, what
the portal would store.

Which values a selector selects is found by running the policy with that selector alone and
comparing the answer, as parsed JSON, with the answer of a policy without selectors (tokens are
decided everywhere, selected or not): exactly the transform the proxy runs, nothing re-modelled,
except that `mask: remove` is a text mask there, so that each value is found where it is rather
than as the object or array its removal empties.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import orjson

from proxy.grants import NO_ACCESS
from proxy.transform import (
    FieldPolicy,
    RequestRejected,
    RevealContext,
    RouteTable,
    SealContext,
    UnsafeBody,
    encrypt_request,
    transform_response,
)
from proxy.transform.mediatype import classify
from proxy.transform.settings import TextMask
from proxy.transform.xml_document import XmlRefused, parse_xml

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from proxy.settings import Settings
    from proxy.transform.settings import FieldSettings, SelectorSettings
    from proxy.transform.xml_document import XmlElement

__all__ = ["describe_sample"]

#: Locations listed per selector before "… and N more".
_SHOWN: Final = 8
_XML_DEPTH: Final = 200  # the answers compared were already read within fields.max_depth
_PLAIN_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Staff:
    """A writer holding a grant for every practice: what the portal stores, not who may send."""

    def allows(self, _practice: str, _field_class: str) -> bool:
        return True


def _location(path: tuple[str | int, ...]) -> str:
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_NAME.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{orjson.dumps(step).decode()}]")
    return "".join(parts)


def _changed(before: object, after: object, path: tuple[str | int, ...], out: list[str]) -> None:
    """Append the location of every value that differs between two parsed JSON documents."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before.keys() | after.keys():
            if key not in before or key not in after:
                out.append(_location((*path, key)))
            else:
                _changed(before[key], after[key], (*path, key), out)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            _changed(old, new, (*path, index), out)
    elif before != after or type(before) is not type(after):
        out.append(_location(path))


def _shown(body: bytes, content_type: str, policy: FieldPolicy, keyring: Keyring) -> bytes:
    """The body as a caller without any grant would receive it."""
    return transform_response(body, content_type, RevealContext(policy, keyring, NO_ACCESS))


def _describe_selector(selector: SelectorSettings) -> str:
    if selector.keys:
        return f"keys {', '.join(selector.keys)}"
    if selector.xml is not None:
        return f"xml {selector.xml}"
    if selector.root_filter is not None:
        return f"path {selector.path} where the root has {selector.root_filter}"
    return f"path {selector.path}"


def _xml_changed(before: XmlElement, after: XmlElement, where: str, out: list[str]) -> None:
    """Append the location of every element text or attribute that differs (same structure)."""
    for old, new in zip(before.attributes, after.attributes, strict=False):
        if old.value != new.value:
            out.append(f"{where}/@{old.local}")
    if len(before.children) != len(after.children) or before.value != after.value:
        out.append(where)  # its text changed, or it was masked whole
        return
    seen: dict[str, int] = {}
    for old_child, new_child in zip(before.children, after.children, strict=True):
        seen[old_child.local] = seen.get(old_child.local, 0) + 1
        step = f"{where}/{old_child.local}[{seen[old_child.local]}]"
        _xml_changed(old_child, new_child, step, out)


def _changes(before: bytes, after: bytes, *, xml: bool) -> list[str]:
    """Locations (JSONPath or XPath-like) of the values that differ between two answers."""
    found: list[str] = []
    if xml:
        old = parse_xml(before, max_depth=_XML_DEPTH, forbid_dtd=False)
        new = parse_xml(after, max_depth=_XML_DEPTH, forbid_dtd=False)
        _xml_changed(old, new, f"/{old.local}", found)
    else:
        _changed(orjson.loads(before), orjson.loads(after), (), found)
    return sorted(found)


def _locating(fields: FieldSettings) -> FieldSettings:
    """`fields` with each `remove` mask a text mask: a removed value leaves nothing to locate."""
    shown = TextMask(text=fields.redacted_text)
    classes = {
        name: spec.model_copy(update={"mask": shown}) if spec.mask == "remove" else spec
        for name, spec in fields.classes.items()
    }
    return fields.model_copy(update={"classes": classes})


def _selector_lines(
    settings: Settings, body: bytes, content_type: str, keyring: Keyring
) -> tuple[list[str], list[str]]:
    """(report lines, warnings) for each selector of the policy, run alone on the sample."""
    fields = _locating(settings.fields)
    xml = classify(content_type).xml
    if xml and not any(selector.xml is not None for selector in fields.selectors):
        unread = (
            "  (the sample is XML and no selector has `xml:`: XML answers are only "
            "token-scanned, and XML requests naming a protected field are refused)"
        )
        return [unread], []
    reading = True if xml else None  # XML: `keys:` selectors alone read it too
    baseline_policy = FieldPolicy.compile(
        fields.model_copy(update={"selectors": ()}), read_xml=reading
    )
    baseline = _shown(body, content_type, baseline_policy, keyring)
    try:
        _changes(baseline, baseline, xml=xml)
    except (orjson.JSONDecodeError, XmlRefused):
        kind = "XML" if xml else "JSON"
        return [f"  (the sample is not {kind}: selectors are listed only for JSON and XML)"], []
    lines, warnings = [], []
    for number, selector in enumerate(fields.selectors):
        alone = FieldPolicy.compile(
            fields.model_copy(update={"selectors": (selector,)}), read_xml=reading
        )
        found = _changes(baseline, _shown(body, content_type, alone, keyring), xml=xml)
        what = f"  {selector.field_class:<14} {_describe_selector(selector)}"
        if not found:
            lines.append(f"{what}\n      NEVER MATCHED in this sample")
            hint = (
                " (a filter `$[?(...)]` tests the root's members, never the root object itself: "
                "use `$..[?(...)]`, start the path at the member, or test the root with "
                "`root_filter`)"
                if (selector.path or "").startswith("$[?")
                else ""
            )
            warnings.append(
                f"fields.selectors[{number}] ({_describe_selector(selector)}) selects nothing in "
                "the sample: if the sample holds such values, the selector is wrong and they "
                f"pass in clear{hint}"
            )
            continue
        more = f" … and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        lines.append(f"{what}\n      {len(found)} value(s): {', '.join(found[:_SHOWN])}{more}")
    return lines, warnings


def _stored_lines(
    settings: Settings, body: bytes, content_type: str, route: str, keyring: Keyring
) -> list[str]:
    """What the portal would receive if the sample were sent to `route` ("METHOD /path")."""
    method, _, path = route.strip().partition(" ")
    policy = FieldPolicy.compile(settings.fields)
    match = RouteTable.compile(settings.write_routes).match_route(method, path.strip())
    heading = f"the portal would store ({method.upper()} {path.strip()}"
    heading += ", a write route):" if match is not None else ", not a write route):"
    try:
        sent = encrypt_request(
            body, content_type, match, SealContext(policy, keyring, access=_Staff())
        )
    except RequestRejected as exc:
        return [heading, f"  nothing: the proxy refuses it ({exc.status} {exc.reason}): {exc}"]
    return [heading, sent.decode("utf-8", errors="replace")]


def describe_sample(
    settings: Settings,
    keyring: Keyring,
    body: bytes,
    *,
    content_type: str = "application/json",
    route: str | None = None,
) -> tuple[list[str], list[str]]:
    """Report lines and warnings for `body` under the settings' field policy."""
    lines = [f"sample: {len(body):,} bytes as {content_type}", "selectors:"]
    warnings: list[str] = []
    try:
        selector_lines, warnings = _selector_lines(settings, body, content_type, keyring)
    except UnsafeBody as exc:
        unreadable = f"  (the sample cannot be read safely: {exc.reason}; the proxy would "
        selector_lines = [unreadable + "answer such a body with a 502)"]
    lines += selector_lines
    try:
        shown = _shown(body, content_type, FieldPolicy.compile(settings.fields), keyring)
    except UnsafeBody as exc:
        lines += [f"a caller without a grant would get: a 502 (unsafe body: {exc.reason})"]
    else:
        lines += ["a caller without a grant would see:", shown.decode("utf-8", errors="replace")]
    if route is not None:
        lines += _stored_lines(settings, body, content_type, route, keyring)
    return lines, warnings
