"""The operator's field policy: the YAML sections `fields:` and `write_routes:`.

    fields:
      classes:                    # field class → how it is masked, and how it is encrypted
        ssn:          {mask: {keep_last: 4, template: "***-**-{last}"}, deterministic: true}
        insurance_id: {mask: {text: "[redacted]"}}
        history:      {mask: remove}        # the member is left out (FHIR: no nulls)
      selectors:                  # which JSON values hold which class
        - {class: ssn, keys: [ssn, social_security_number]}
        - {class: ssn, path: "$..identifier[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value"}
      record:
        practice_keys: [practice_id]      # names the practice of legacy plaintext in a record
        id_keys: [patient_id, id]         # names the record in audit events
    write_routes:
      - {method: POST, path: "/api/practices/{practice_id}/patients",
         practice_from: {path_param: practice_id}}

Everything is validated once at load (unknown class in a selector, bad path expression, a mask
template without {last}, a route naming a missing path parameter …) so a running proxy never
meets a config problem; `FieldPolicy.compile` and `RouteTable.compile` then do all the work.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    field_validator,
    model_validator,
)

from keys.token_format import TOKEN_PREFIX, is_field_class
from proxy.transform.jsonpath import PathSyntaxError, compile_path
from proxy.transform.names import normalize_name
from proxy.transform.xml_selectors import XmlSelectorError, compile_xml_selector

__all__ = [
    "BodyKeyPractice",
    "FieldClassSettings",
    "FieldSettings",
    "KeepLastMask",
    "PathParamPractice",
    "ReadRouteSettings",
    "ReadRoutesSettings",
    "RecordSettings",
    "RemoveMask",
    "RequireGrant",
    "RouteTemplate",
    "SelectorSettings",
    "TextMask",
    "WriteRouteSettings",
    "WriteRoutesSettings",
]

_FROZEN: Final = ConfigDict(frozen=True, extra="forbid")
_DEFAULT_REDACTED: Final = "[redacted]"
_MAX_MASK_LEN: Final = 200
_FORBIDDEN_NAME_CHARS: Final = re.compile(r'["\\/\x00-\x1f\x7f]')
_SEGMENT_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_XML_PREFIX: Final = re.compile(r"[^\W\d][\w.\-]*")
_SEGMENT_LITERAL: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]+")


def _safe_mask_text(text: str, what: str) -> str:
    if TOKEN_PREFIX in text:
        raise ValueError(f"{what} must not contain the token prefix {TOKEN_PREFIX!r}")
    if len(text) > _MAX_MASK_LEN:
        raise ValueError(f"{what} is longer than {_MAX_MASK_LEN} characters")
    return text


class TextMask(BaseModel):
    """Replace the value with fixed text, e.g. {text: "[redacted]"}."""

    model_config = _FROZEN
    text: str = Field(description="The text shown instead of the value.")

    @field_validator("text")
    @classmethod
    def _check(cls, value: str) -> str:
        return _safe_mask_text(value, "mask text")


class KeepLastMask(BaseModel):
    """Show the last N letters/digits of the decrypted value inside a template.

    Computed from the decrypted value each time, so nothing but ciphertext is ever stored.
    """

    model_config = _FROZEN
    keep_last: int = Field(
        ge=1, le=8, description="How many trailing letters/digits to show (separators skipped)."
    )
    template: str = Field(
        description='Text with exactly one "{last}" placeholder, e.g. "***-**-{last}".'
    )
    min_length: int | None = Field(
        default=None,
        ge=1,
        description="Shorter values (in letters/digits) get `fallback` instead; "
        "default 2 x keep_last, so a short value is never mostly revealed.",
    )
    fallback: str = Field(
        default=_DEFAULT_REDACTED,
        description="Shown when the value is too short or the token cannot be opened.",
    )

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        if value.count("{last}") != 1:
            raise ValueError('the template needs exactly one "{last}" placeholder')
        return _safe_mask_text(value, "mask template")

    @field_validator("fallback")
    @classmethod
    def _check_fallback(cls, value: str) -> str:
        return _safe_mask_text(value, "mask fallback")


#: `mask: remove`: the member or element is left out of the JSON the caller gets.
RemoveMask = Literal["remove"]


def _mask_kind(value: object) -> str:
    if isinstance(value, str):
        return "remove"
    if isinstance(value, dict):
        return "keep_last" if "keep_last" in value or "template" in value else "text"
    return "keep_last" if isinstance(value, KeepLastMask) else "text"


#: One error message per mistake: the mask kind is chosen by its form, not by trying each.
MaskSettings = Annotated[
    Annotated[TextMask, Tag("text")]
    | Annotated[KeepLastMask, Tag("keep_last")]
    | Annotated[RemoveMask, Tag("remove")],
    Discriminator(_mask_kind),
]


class FieldClassSettings(BaseModel):
    """One field class: how a value of this class is masked, and how it is encrypted."""

    model_config = _FROZEN
    mask: MaskSettings | None = Field(
        default_factory=lambda: TextMask(text=_DEFAULT_REDACTED),
        description='{text: …}, {keep_last: N, template: "…{last}"}, null for JSON null, or '
        "remove to leave the member out (an array element: the array is shorter; an object or "
        "array left empty by it is left out too; where nothing can be left out, such as an "
        "object key, text inside a longer string or a text body, `redacted_text`). FHIR "
        "forbids null: use remove or a text mask there. "
        'Default {text: "[redacted]"}.',
    )
    deterministic: bool = Field(
        default=False,
        description="Encrypt with AES-SIV so equal values give equal tokens (only for fields "
        "the portal must look up by equality; it reveals which values are equal).",
    )
    description: str | None = Field(default=None, description="Free text for operators.")

    @field_validator("mask", mode="before")
    @classmethod
    def _known_word(cls, value: object) -> object:
        if isinstance(value, str) and value != "remove":
            raise ValueError(
                f"{value!r} is not a mask: write {{text: {value!r}}} for fixed text, or one of "
                'null, remove, {keep_last: N, template: "…{last}"}'
            )
        return value


class SelectorSettings(BaseModel):
    """Which values hold a class: key names anywhere (`keys`), a JSON path, or an XML selector."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    field_class: str = Field(alias="class", description="A class defined under fields.classes.")
    keys: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="Key names matched anywhere in a document after normalization "
        "(escapes decoded, NFKC, case-folded, separators folded); list every alias here. "
        "In XML bodies (read only when some selector has `xml`), element and attribute "
        "local names.",
    )
    path: str | None = Field(
        default=None, description="A JSONPath expression (supported subset: docs/field-policy.md)."
    )
    root_filter: str | None = Field(
        default=None,
        description="With `path`: a filter the document root must meet for the path to apply, "
        "e.g. \"@.resourceType == 'Condition'\" (a resource read on its own). Path filters "
        "test children only, never the root (RFC 9535).",
    )
    xml: str | None = Field(
        default=None,
        description="An XML selector: element text or an attribute value, in a small XPath "
        "subset (`//hl7:patient/hl7:id[@root='…']/@extension`; docs/field-policy.md). "
        "Prefixes are bound in fields.xml_namespaces. Any `xml` selector turns on the "
        "reading of XML bodies (application/xml, text/xml, */*+xml).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SelectorSettings:
        given = [self.keys is not None, self.path is not None, self.xml is not None]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of `keys` (a list of names), `path` (JSONPath) or `xml` "
                "(an XML selector)"
            )
        if self.root_filter is not None and self.path is None:
            raise ValueError(
                "`root_filter` goes with a `path` selector (it decides where it applies)"
            )
        return self


class RecordSettings(BaseModel):
    """How a JSON object says which practice and which record it is."""

    model_config = _FROZEN
    practice_keys: tuple[str, ...] = Field(
        default=("practice_id",),
        description="Keys whose value names the practice of the enclosing object; used only "
        "for legacy plaintext (tokens carry their practice). Compared normalized.",
    )
    id_keys: tuple[str, ...] = Field(
        default=("id",),
        description="Keys whose value identifies the enclosing record, for audit events.",
    )


class FieldSettings(BaseModel):
    """The `fields:` section: field classes, selectors, record keys and parser limits."""

    model_config = _FROZEN
    classes: dict[str, FieldClassSettings] = Field(
        default_factory=dict, description="Field class name → mask and encryption mode."
    )
    selectors: tuple[SelectorSettings, ...] = Field(
        default=(), description="Rules naming which JSON values hold which class."
    )
    record: RecordSettings = Field(
        default_factory=RecordSettings, description="Keys naming a record's practice and id."
    )
    fold_separators: bool = Field(
        default=True,
        description="Ignore _ - . and spaces when comparing key names "
        "(so socialSecurityNumber matches social_security_number).",
    )
    redacted_text: str = Field(
        default=_DEFAULT_REDACTED,
        description="Mask used where JSON null cannot be, or a member cannot be left out "
        "(text bodies, object keys, text inside a longer string, a whole document), for "
        "classes the config does not know and for strings holding a malformed token.",
    )
    max_depth: int = Field(
        default=64,
        ge=1,
        le=200,
        description="Deepest nesting of a JSON or XML body (deeper: 502 on the way out, "
        "400 on the way in).",
    )
    xml_namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="Namespace prefixes for `xml` selectors, prefix → namespace URI, e.g. "
        '{hl7: "urn:hl7-org:v3"}. Independent of the prefixes a document uses.',
    )

    @field_validator("xml_namespaces")
    @classmethod
    def _check_namespaces(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, uri in value.items():
            if not _XML_PREFIX.fullmatch(prefix) or prefix.lower().startswith("xml"):
                raise ValueError(
                    f"xml_namespaces: {prefix!r} is not a usable prefix (letters, digits, _ - "
                    ".; not starting with a digit or with 'xml')"
                )
            if not uri.strip():
                raise ValueError(f"xml_namespaces: prefix {prefix!r} needs a namespace URI")
        return value

    @field_validator("redacted_text")
    @classmethod
    def _check_redacted(cls, value: str) -> str:
        return _safe_mask_text(value, "redacted_text")

    @field_validator("classes")
    @classmethod
    def _check_class_names(
        cls, value: dict[str, FieldClassSettings]
    ) -> dict[str, FieldClassSettings]:
        for name in value:
            if not is_field_class(name):
                raise ValueError(
                    f"field class {name!r}: use 1-32 characters of a-z, 0-9 and _, starting "
                    "with a letter (it is written into every token)"
                )
        return value

    @model_validator(mode="after")
    def _check_references(self) -> FieldSettings:
        for number, selector in enumerate(self.selectors):
            where = f"selectors[{number}]"
            if selector.field_class not in self.classes:
                raise ValueError(
                    f"{where}: class {selector.field_class!r} is not defined under "
                    f"fields.classes (defined: {', '.join(sorted(self.classes)) or 'none'})"
                )
            for name in selector.keys or ():
                self._check_name(f"{where}.keys", name)
            if selector.path is not None:
                try:
                    compile_path(selector.path, self.normalize)
                except PathSyntaxError as exc:
                    raise ValueError(f"{where}.path: {exc}") from None
                try:
                    compile_path(selector.path, self.normalize, root_filter=selector.root_filter)
                except PathSyntaxError as exc:
                    raise ValueError(f"{where}.root_filter: {exc}") from None
            self._check_xml(where, selector)
        for name in self.record.practice_keys:
            self._check_name("record.practice_keys", name)
        for name in self.record.id_keys:
            self._check_name("record.id_keys", name)
        return self

    def _check_xml(self, where: str, selector: SelectorSettings) -> None:
        if selector.xml is not None:
            try:
                compile_xml_selector(selector.xml, self.xml_namespaces, self.normalize)
            except XmlSelectorError as exc:
                raise ValueError(f"{where}.xml: {exc}") from None

    def _check_name(self, where: str, name: str) -> None:
        if _FORBIDDEN_NAME_CHARS.search(name):
            raise ValueError(f'{where}: key names cannot contain ", \\, / or control characters')
        if not self.normalize(name):
            raise ValueError(f"{where}: a key name must not be empty (or only separators)")

    def normalize(self, name: str) -> str:
        """Normalize a key name the way this policy compares names."""
        return normalize_name(name, fold_separators=self.fold_separators)


class PathParamPractice(BaseModel):
    """The practice is a parameter of the route's path template."""

    model_config = _FROZEN
    path_param: str = Field(description="Name of a {parameter} in the route's path.")


class BodyKeyPractice(BaseModel):
    """The practice is a top-level key of the JSON request body."""

    model_config = _FROZEN
    body_key: str = Field(description="Top-level key of the JSON body (compared normalized).")


#: Which selected values on a write route need the caller's grant (see `require_grant`).
RequireGrant = Literal["always", "deterministic", "never"]


def _check_template(value: str) -> str:
    """A path template: literal segments and whole-segment {parameters}, each name once."""
    if not value.startswith("/") or value == "/":
        raise ValueError("the path template must start with / and name at least a segment")
    params = []
    for segment in value[1:].split("/"):
        param = _SEGMENT_PARAM.fullmatch(segment)
        if param:
            params.append(param.group(1))
        elif not _SEGMENT_LITERAL.fullmatch(segment):
            raise ValueError(
                f"path segment {segment!r} is neither a literal (no braces, not empty) "
                "nor a whole-segment {parameter}"
            )
    if len(params) != len(set(params)):
        raise ValueError("a path parameter name appears twice")
    return value


class RouteTemplate(BaseModel):
    """What write and read routes share: a method and a path template matched per segment."""

    model_config = _FROZEN
    method: str
    path: str = Field(
        description="Path template: literal segments and whole-segment {parameters}, "
        "e.g. /api/practices/{practice_id}/patients. No wildcards, no regular expressions."
    )
    practice_from: PathParamPractice | BodyKeyPractice

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _check_template(value)

    @model_validator(mode="after")
    def _check_param(self) -> Self:
        source = self.practice_from
        if isinstance(source, PathParamPractice) and f"{{{source.path_param}}}" not in (
            self.path.split("/")
        ):
            raise ValueError(
                f"practice_from.path_param {source.path_param!r} is not a parameter of "
                f"the path {self.path!r}"
            )
        return self

    def params(self) -> tuple[str, ...]:
        """The parameter names of the path template, in order."""
        return tuple(m.group(1) for m in _SEGMENT_PARAM.finditer(self.path))


class WriteRouteSettings(RouteTemplate):
    """A route whose JSON request bodies get their selected fields encrypted."""

    method: Literal["POST", "PUT", "PATCH", "DELETE"] = Field(description="HTTP method.")
    practice_from: PathParamPractice | BodyKeyPractice = Field(
        description="Where the practice comes from: {path_param: NAME} or {body_key: NAME}."
    )
    require_grant: RequireGrant = Field(
        default="deterministic",
        description="Who may send PHI here. `deterministic` (the default): a value of a "
        "deterministic class (plaintext or token) needs the caller to hold an active grant "
        "for the route's practice covering that class, since its token is the same for the "
        "same value and a stranger who could have one made would learn, from any page that "
        "shows tokens or from a search, whether the practice stores it; other classes are "
        "encrypted for anyone (a patient booking holds no grant). `always` (or true): every "
        "selected value needs that grant (search routes). `never` (or false): anyone may "
        "send any class; check-config warns while a deterministic class could be written so. "
        "Refused values get 403 and nothing is forwarded.",
    )

    @field_validator("require_grant", mode="before")
    @classmethod
    def _grant_switch(cls, value: object) -> object:
        if isinstance(value, bool):  # true/false: the switch's form before `deterministic`
            return "always" if value else "never"
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ReadRouteSettings(RouteTemplate):
    """A route whose responses belong to one practice, named by a parameter of its path.

    Used for plaintext in records that name no practice (legacy data written before the proxy,
    FHIR resources): the route's practice decides whether the caller may read it. Declare only
    routes whose answers the portal really limits to the practice in the path.
    """

    method: Literal["GET", "HEAD", "POST"] = Field(
        description="HTTP method (POST for searches that read, e.g. FHIR _search)."
    )
    practice_from: PathParamPractice = Field(
        description="The path parameter that names the practice: {path_param: NAME}."
    )


def _refuse_twins(routes: tuple[RouteTemplate, ...], section: str) -> None:
    """Two routes matching the same requests: the second would never be used."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for number, route in enumerate(routes):
        shape = (
            route.method,
            tuple("{}" if s.startswith("{") else s for s in route.path.split("/")),
        )
        if shape in seen:
            raise ValueError(
                f"{section}[{number}]: {route.method} {route.path} matches the same "
                "requests as an earlier route; remove one"
            )
        seen.add(shape)


def _absent_is_empty(value: object) -> object:
    """keys.config_file.load_section passes {} for an absent section: no routes."""
    return () if value in ({}, None) else value


class WriteRoutesSettings(RootModel[tuple[WriteRouteSettings, ...]]):
    """The `write_routes:` section: a list of routes (an absent section means none)."""

    model_config = ConfigDict(frozen=True)
    root: Annotated[
        tuple[WriteRouteSettings, ...],
        Field(description="Routes whose JSON bodies are encrypted before they reach the portal."),
    ] = ()

    _absent = model_validator(mode="before")(_absent_is_empty)

    @model_validator(mode="after")
    def _no_twins(self) -> WriteRoutesSettings:
        _refuse_twins(self.root, "write_routes")
        return self


class ReadRoutesSettings(RootModel[tuple[ReadRouteSettings, ...]]):
    """The `read_routes:` section: a list of routes (an absent section means none)."""

    model_config = ConfigDict(frozen=True)
    root: Annotated[
        tuple[ReadRouteSettings, ...],
        Field(description="Routes whose responses belong to the practice named in the path."),
    ] = ()

    _absent = model_validator(mode="before")(_absent_is_empty)

    @model_validator(mode="after")
    def _no_twins(self) -> ReadRoutesSettings:
        _refuse_twins(self.root, "read_routes")
        return self
