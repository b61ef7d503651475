"""The compiled field policy: everything the hot path needs, prepared once at startup.

`FieldPolicy.compile(settings)` turns the `fields:` section into lookup tables: a key's role
(selected class, practice key, id key) is one dict lookup after the first time a spelling is
seen; JSON paths become one NFA (`PathMatcher`); masks are built per class. Nothing here is
touched per request except through these tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from keys.native import native_module
from keys.token_format import TOKEN_PREFIX, TOKEN_PREFIX_BYTES
from proxy.transform.escaped_tokens import holds_escaped_token, json_may_hold_escaped_token
from proxy.transform.jsonpath import PathMatcher, compile_path
from proxy.transform.masks import FixedMask, Mask, compile_mask
from proxy.transform.mediatype import classify, looks_wide
from proxy.transform.names import (
    SEPARATORS,
    ascii_revealing_pattern,
    ascii_revealing_ranges,
    is_ascii_revealing,
)
from proxy.transform.native_json import NativeJson
from proxy.transform.response_xml import declares_xml
from proxy.transform.xml_selectors import compile_xml_selector

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType

    from proxy.transform.jsonpath import CompiledPath
    from proxy.transform.mediatype import BodyKind
    from proxy.transform.settings import FieldSettings
    from proxy.transform.xml_selectors import XmlSelector

__all__ = ["FieldPolicy", "KeyRole", "ObjectShape", "PolicyTables"]

_ROLE_CACHE_LIMIT: Final = 8192
_SHAPE_CACHE_LIMIT: Final = 4096
#: Objects with more keys than this are not memoized by shape (hashing the key tuple would
#: cost more than it saves, and a hostile body could fill the cache with huge tuples).
_SHAPE_MAX_KEYS: Final = 32
_ESCAPE: Final = re.compile(rb"\\u([0-9A-Fa-f]{4})")
_SEPARATORS_B: Final = SEPARATORS.encode("ascii")
#: Flags of the compiled no-PHI proof (`phi_proxy_core.Hints.scan`, core/src/hints.rs).
_HAS_PREFIX: Final = 1
_HAS_NUL: Final = 2
_MAY_HOLD_NAMES: Final = 4
#: Pure-Python scan only: the name check is left for last (it is the expensive one).
_NAMES_UNKNOWN: Final = 8
_ASCII_END: Final = 0x80
_SURROGATES: Final = range(0xD800, 0xE000)
# UTF-16/32 spellings of the prefix: a body in those encodings could hide tokens from a byte
# search, so the fast path must send it to the transform (which refuses it).
_WIDE_PREFIXES: Final = tuple(
    TOKEN_PREFIX.encode(codec) for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


@dataclass(frozen=True, slots=True)
class KeyRole:
    """What an object key means to the policy (computed once per distinct spelling)."""

    normalized: str
    field_class: str | None  # selected by a key selector
    practice_key: bool
    id_key: bool
    has_prefix: bool  # the key itself carries the token prefix


@dataclass(frozen=True, slots=True)
class ObjectShape:
    """The roles of an object's keys, in order, precomputed per distinct key sequence.

    Records of one listing share their key sequence, so the walk computes this once per
    response (and then once per policy) instead of once per record.
    """

    roles: tuple[KeyRole, ...]
    #: (key, is practice key) of the practice keys, then the id keys in `record.id_keys` order.
    context: tuple[tuple[str, bool], ...]
    rekey: bool  # some key carries the token prefix
    classes: tuple[str | None, ...] = ()  # each role's key-selector class, for the fast loop


@dataclass(frozen=True, slots=True)
class PolicyTables:
    """The compiled selection tables, for handing to the compiled core once at startup."""

    key_classes: Mapping[str, str]  # normalized key name → class (first selector wins)
    practice_names: frozenset[str]  # normalized `record.practice_keys`
    id_names: tuple[str, ...]  # normalized `record.id_keys`, in rank order
    paths: tuple[tuple[CompiledPath, str], ...]  # path selectors in config order, with class
    classes: tuple[str, ...]  # the configured classes (each has a mask)
    fold_separators: bool
    normalize: Callable[[str], str]


def _compile_xml(
    settings: FieldSettings,
) -> tuple[tuple[tuple[XmlSelector, str], ...], set[str] | None]:
    """The `xml:` selectors with their classes, and the names one of which each needs.

    Names None: some selector can match without any name (`/*/*`), so no body can be skipped.
    """
    compiled = []
    names: set[str] | None = set()
    for selector in settings.selectors:
        if selector.xml is None:
            continue
        xml = compile_xml_selector(selector.xml, settings.xml_namespaces, settings.normalize)
        compiled.append((xml, selector.field_class))
        required = xml.required_names()
        if required is None or names is None:
            names = None
        else:
            names |= required
    return tuple(compiled), names


def _kind_needs_look(kind: BodyKind, body: bytes) -> bool:
    """The media type, or an escaped token spelling, says the body must be looked at."""
    if kind.charset is None or kind.container:
        return True  # a charset tokens hide in, or parts a byte search cannot see into
    # A token a browser, a script or a JSON client would decode from escapes: the transform
    # refuses the body. JSON strings are read decoded (JSON is sniffed in other types too).
    if json_may_hold_escaped_token(body):
        return True
    return not kind.json and holds_escaped_token(body)


class FieldPolicy:
    """Compiled `fields:` settings. Immutable after compile except for bounded lookup caches."""

    __slots__ = (
        "_always_inspect",
        "_classes",
        "_fold",
        "_hints",
        "_id_names",
        "_key_classes",
        "_masks",
        "_needles",
        "_path_names",
        "_paths",
        "_practice_names",
        "_reads_xml",
        "_roles",
        "_settings",
        "_shapes",
        "default_mask",
        "matcher",
        "max_depth",
        "native",
        "redacted_text",
        "xml_selectors",
    )

    def __init__(self, settings: FieldSettings, *, read_xml: bool | None = None) -> None:
        """Use `FieldPolicy.compile`."""
        self._settings = settings
        self._fold = settings.fold_separators
        self.max_depth = settings.max_depth
        self.redacted_text = settings.redacted_text
        self.default_mask: Mask = FixedMask(settings.redacted_text)
        self._masks = {
            name: compile_mask(cls, settings.redacted_text)
            for name, cls in settings.classes.items()
        }
        self._classes = settings.classes
        key_classes: dict[str, str] = {}
        paths = []
        needles: set[str] = set()
        always = False
        for selector in settings.selectors:
            for name in selector.keys or ():
                folded = settings.normalize(name)
                key_classes.setdefault(folded, selector.field_class)  # first rule wins
                needles.add(folded)
            if selector.path is not None:
                path = compile_path(
                    selector.path, settings.normalize, root_filter=selector.root_filter
                )
                paths.append((path, selector.field_class))
                required = path.required_names()
                if required is None:
                    always = True
                else:
                    needles.update(required)
        self._key_classes = key_classes
        self._paths = tuple(paths)
        self._path_names = frozenset(needles - set(key_classes))
        #: `xml:` selectors in config order, with their class.
        self.xml_selectors, xml_names = _compile_xml(settings)
        self._reads_xml = bool(self.xml_selectors) if read_xml is None else read_xml
        if xml_names is None:
            always = True
        else:
            needles |= xml_names
        self.matcher = PathMatcher(paths, settings.normalize)
        encoded = sorted({n.encode("utf-8") for n in needles}, key=len)
        # A needle containing a shorter one is redundant: if the short one is absent, so is it.
        self._needles = tuple(
            n for i, n in enumerate(encoded) if not any(m in n for m in encoded[:i])
        )
        self._always_inspect = always or any(not n.isascii() for n in needles)
        self._practice_names = frozenset(map(settings.normalize, settings.record.practice_keys))
        # An id key's rank is its place in `record.id_keys`: that order, not the object's key
        # order, picks the id a disclosure is audited under.
        self._id_names: dict[str, int] = {}
        for name in map(settings.normalize, settings.record.id_keys):
            self._id_names.setdefault(name, len(self._id_names))
        self._roles: dict[str, KeyRole] = {}
        self._shapes: dict[tuple[str, ...], ObjectShape] = {}
        if needles and not self._always_inspect:
            ascii_revealing_pattern()  # pay the one-off table build at startup, not per request
        #: This policy in the compiled core (None: the pure-Python core decides every body).
        module = native_module()
        self.native = NativeJson.compile(module, self)
        self._hints = self._compile_hints(module)

    def _compile_hints(self, module: ModuleType | None) -> Any:  # noqa: ANN401 - Hints or None
        """The no-PHI proof in the compiled core (None: `may_need_transform` runs in Python)."""
        if module is None:
            return None
        ranges = ascii_revealing_ranges() if self._needles and not self._always_inspect else ()
        return module.Hints(list(self._needles), self._fold, self._always_inspect, list(ranges))

    @classmethod
    def compile(cls, settings: FieldSettings, *, read_xml: bool | None = None) -> FieldPolicy:
        """Compile validated settings (all checks already ran when the settings were loaded).

        `read_xml` overrides whether XML bodies are read (default: iff an `xml:` selector
        exists); `check-config --sample` runs single `keys:` selectors on XML samples with it.
        """
        return cls(settings, read_xml=read_xml)

    @property
    def settings(self) -> FieldSettings:
        """The settings this policy was compiled from."""
        return self._settings

    def tables(self) -> PolicyTables:
        """The selection tables, as compiled (for the compiled core)."""
        settings = self._settings
        return PolicyTables(
            key_classes=self._key_classes,
            practice_names=self._practice_names,
            id_names=tuple(sorted(self._id_names, key=self._id_names.__getitem__)),
            paths=self._paths,
            classes=tuple(settings.classes),
            fold_separators=settings.fold_separators,
            normalize=settings.normalize,
        )

    @property
    def reads_xml(self) -> bool:
        """True if XML bodies are parsed and their selected values decided (an `xml:` selector)."""
        return self._reads_xml

    def mask_for(self, field_class: str) -> Mask:
        """The mask of a class; a class the config does not know gets the redacted text."""
        return self._masks.get(field_class, self.default_mask)

    def is_deterministic(self, field_class: str) -> bool:
        """True if values of this class are encrypted with the deterministic cipher."""
        settings = self._classes.get(field_class)
        return settings is not None and settings.deterministic

    def normalize(self, name: str) -> str:
        """Normalize a key name as this policy compares names."""
        return self.role(name).normalized

    def role(self, key: str) -> KeyRole:
        """The role of an object key (cached per spelling; the cache is bounded)."""
        role = self._roles.get(key)
        if role is None:
            folded = self._settings.normalize(key)
            role = KeyRole(
                normalized=folded,
                field_class=self._key_classes.get(folded),
                practice_key=folded in self._practice_names,
                id_key=folded in self._id_names,
                has_prefix=TOKEN_PREFIX in key,
            )
            if len(self._roles) >= _ROLE_CACHE_LIMIT:
                self._roles.clear()
            self._roles[key] = role
        return role

    def shape(self, keys: tuple[str, ...]) -> ObjectShape:
        """The roles of `keys` (an object's keys in order); cached for small objects."""
        shape = self._shapes.get(keys)
        if shape is None:
            roles = tuple(map(self.role, keys))
            shape = ObjectShape(
                roles=roles,
                context=tuple(
                    (key, role.practice_key)
                    for key, role in sorted(
                        (
                            (key, role)
                            for key, role in zip(keys, roles, strict=True)
                            if role.practice_key or role.id_key
                        ),
                        key=self._context_rank,
                    )
                ),
                rekey=any(r.has_prefix for r in roles),
                classes=tuple(r.field_class for r in roles),
            )
            if len(keys) <= _SHAPE_MAX_KEYS:
                if len(self._shapes) >= _SHAPE_CACHE_LIMIT:
                    self._shapes.clear()
                self._shapes[keys] = shape
        return shape

    def _context_rank(self, key_role: tuple[str, KeyRole]) -> int:
        """Practice keys first (they must all agree), then id keys in `record.id_keys` order."""
        role = key_role[1]
        return -1 if role.practice_key else self._id_names[role.normalized]

    def may_need_transform(self, body: bytes, content_type: str | None = None) -> bool:
        """False only if the body provably needs no change: no token, no selected key.

        Sound by construction (and proven by property tests): a body for which this returns
        False comes back from `transform_response` byte-identical. Pass the response's
        Content-Type when known, so a charset in which tokens could hide is never skipped.
        """
        flags = self._scan(body)
        if flags & _HAS_PREFIX:
            return True
        if _kind_needs_look(classify(content_type), body):
            return True
        if flags & _HAS_NUL and any(wide in body for wide in _WIDE_PREFIXES):
            return True
        # UTF-16/32 JSON, BOM or not: refused by the transform; XML declarations: parsed there
        if looks_wide(body) or self._declares_xml(body, content_type):
            return True
        if flags & _NAMES_UNKNOWN:
            return self._may_hold_names(body)
        return bool(flags & _MAY_HOLD_NAMES)

    def _declares_xml(self, body: bytes, content_type: str | None) -> bool:
        """An XML answer (while XML is read) that may hold a declaration hiding values."""
        return (
            self._reads_xml
            and content_type is not None
            and classify(content_type).xml
            and declares_xml(body)
        )

    def _scan(self, body: bytes) -> int:
        """Prefix, NUL and name flags of `body`: one native pass, or the cheap checks here.

        In Python the name check is not run here (`_NAMES_UNKNOWN`): the caller runs it last,
        only when no cheaper check has answered, as before the compiled core existed.
        """
        if self._hints is not None:
            return int(self._hints.scan(body))
        if TOKEN_PREFIX_BYTES in body:
            return _HAS_PREFIX
        return (_HAS_NUL if b"\x00" in body else 0) | _NAMES_UNKNOWN

    def selects_name(self, name: str) -> bool:
        """True if an object key spelled `name` is selected by a key selector or may be by a path.

        For bodies that cannot be walked (binary-looking ones): a path selector's names count
        too, since where in a structure the name sits cannot be told there.
        """
        role = self.role(name)
        return role.field_class is not None or role.normalized in self._path_names

    def may_hold_selected_keys(self, body: bytes) -> bool:
        """False only if no key in `body` (as JSON) can normalize to a selected name."""
        if self._hints is not None:
            return bool(self._hints.may_hold_names(body))
        return self._may_hold_names(body)

    def _may_hold_names(self, body: bytes) -> bool:
        """`may_hold_selected_keys` in Python (the reference for core/src/hints.rs)."""
        if self._always_inspect:
            return True
        if not self._needles:
            return False
        # `\\` alone is a memchr (~0.3 µs on 12 KB); the two-byte search costs ~11 µs.
        if b"\\" in body and b"\\u" in body:
            for match in _ESCAPE.finditer(body):
                point = int(match.group(1), 16)
                if point < _ASCII_END or point in _SURROGATES or is_ascii_revealing(point):
                    return True
        if not body.isascii():
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return True  # let the parser refuse it
            if ascii_revealing_pattern().search(text):
                return True
        haystack = body.lower()
        if self._fold:
            haystack = haystack.translate(None, _SEPARATORS_B)
        return any(needle in haystack for needle in self._needles)
