"""The request transform: PHI reaches the portal only as ciphertext.

* On a write route (JSON body): every selected value is encrypted under the primary key of the
  route's practice (deterministic cipher for classes flagged `deterministic`). The practice
  comes from a path parameter or a top-level body key; unknown practice or no active key →
  422, nothing forwarded. A selected value that already is a token must open with one of that
  practice's keys and carry the selected class, else 422.
* XML bodies (application/xml, text/xml, */*+xml), when the policy has `xml:` selectors: read
  with defusedxml and sealed value by value the same way, every other byte as sent
  (`request_xml`); without `xml:` selectors they are "other" bodies, below.
* Form-encoded (and any other non-JSON) bodies on a write route → 415. We do not encrypt
  forms: portals disagree about form syntax (`;` as a separator, `patient[ssn]` nesting, which
  of two equal names wins), so we cannot be sure the portal would see the field we encrypted.
* On any other route: a JSON (or JSON-looking) body, a form, or a multipart part, holding a
  non-empty plaintext value in a selected field → 422: that route is not configured to encrypt,
  and PHI would reach the portal in clear. Well-formed tokens pass. The body is first decoded
  the way the portal could decode it (`request_text`: declared charset, byte-order mark,
  UTF-16/32 without one), and sniffed for JSON whatever its label says. Other bodies (binary
  uploads) pass unchecked (docs/field-policy.md: keep PHI uploads off non-write routes).
* Every inspected body must be UTF-8 on a write route (another charset → 415), and decodable
  elsewhere (unknown charset → 415, bytes that do not match their charset → 400).

Messages are for the client and the operator; they name classes and settings, never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

import orjson

from keys.errors import InvalidToken, KeyringError
from keys.token_format import TOKEN_PATTERN, TOKEN_PATTERN_BYTES, TOKEN_PREFIX
from proxy.transform.errors import RequestRejected, UnsafeBody
from proxy.transform.jsonsafe import parse_json
from proxy.transform.request_multipart import form_parts
from proxy.transform.request_text import (
    UTF8_CHARSETS,
    RequestMedia,
    portal_readable_text,
    request_media,
)
from proxy.transform.request_xml import (
    body_key_values,
    declares_entities,
    has_declarations,
    may_nest_documents,
    read_request_xml,
    seal_xml,
)
from proxy.transform.settings import BodyKeyPractice
from proxy.transform.splice import Edits, splice
from proxy.transform.stats import TransformStats

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.keyring import Keyring
    from proxy.transform.policy import FieldPolicy
    from proxy.transform.reveal import AccessPolicy
    from proxy.transform.routes import WriteRouteMatch

__all__ = ["SealContext", "encrypt_request"]

_FORM: Final = "application/x-www-form-urlencoded"
_FORM_NAME_PARTS: Final = re.compile(r"[\[\].]+")
_JSON_START: Final = (b"{", b"[")
_JSON_START_TEXT: Final = ("{", "[")
_NOT_WRITE: Final = (
    "this route is not configured as a write route, and the body holds a plaintext value in a "
    "field of class {cls!r}; PHI would reach the portal in clear, so nothing was forwarded. "
    "Send it to a configured write route, or add this route under write_routes."
)


@dataclass(frozen=True, slots=True)
class SealContext:
    """Everything one request transform needs; build one per request."""

    policy: FieldPolicy
    keyring: Keyring
    stats: TransformStats = field(default_factory=TransformStats)
    #: The caller's grants, for `require_grant` routes (None: the caller may not send PHI there).
    access: AccessPolicy | None = None


def _kind(media: RequestMedia, body: bytes, policy: FieldPolicy) -> str:
    if media.mimetype:
        main, _, sub = media.mimetype.partition("/")
        if sub == "json" or sub.endswith("+json"):
            return "json"
        if policy.reads_xml and (sub == "xml" or sub.endswith("+xml")):
            return "xml"
        if media.mimetype == _FORM:
            return "form"
        if main == "multipart":
            return "multipart"
    return "sniffed-json" if body.lstrip()[:1] in _JSON_START else "other"


def _parse(body: bytes) -> object:
    try:
        return parse_json(body)
    except UnsafeBody as exc:
        raise RequestRejected(
            400,
            f"the JSON request body cannot be checked safely ({exc.reason}); nothing was "
            "forwarded. Send valid UTF-8 JSON without duplicate keys or NaN.",
            reason="unsafe_json",
        ) from None


def encrypt_request(
    body: bytes, content_type: str | None, route: WriteRouteMatch | None, ctx: SealContext
) -> bytes:
    """Encrypt PHI fields of a request body, or refuse it; returns `body` if nothing changed.

    Raises RequestRejected (400, 403, 415 or 422) when the body must not be forwarded; 403 only
    on a `require_grant` route, for a caller whose `ctx.access` does not cover a value's class.
    """
    if not body:
        return body
    media = request_media(content_type)  # 415 if the portal could read it differently
    kind = _kind(media, body, ctx.policy)
    if route is None:
        _check_not_write(body, content_type, media, kind, ctx)
        return body
    if media.charset not in {None, *UTF8_CHARSETS}:
        raise RequestRejected(
            415,
            f"{route.route.method} {route.route.path} is a write route and accepts only UTF-8 "
            "JSON (the charset parameter must be absent or utf-8), so its PHI fields are "
            "encrypted exactly as the portal reads them; nothing was forwarded.",
            reason="unsupported_charset",
        )
    gated = None if route.route.require_grant == "never" else route
    if kind == "xml":
        root = read_request_xml(body, ctx.policy.max_depth)
        practice = _practice(route, ctx, lambda name: body_key_values(root, ctx.policy, name))
        return seal_xml(body, root, ctx.policy, _Walk(ctx, practice, gated).seal)
    if kind != "json":
        xml = " (or XML, with xml selectors configured)" if not ctx.policy.reads_xml else ""
        raise RequestRejected(
            415,
            f"{route.route.method} {route.route.path} is a write route and accepts only JSON "
            f"bodies (Content-Type: application/json){xml}, so its PHI fields can be "
            "encrypted; nothing was forwarded.",
            reason="not_json",
        )
    doc = _parse(body)
    practice = _practice(route, ctx, lambda name: _json_body_values(doc, ctx, name))
    walk = _Walk(ctx, practice, gated)
    return splice(body, doc, walk.document(doc))


def _check_not_write(
    body: bytes, content_type: str | None, media: RequestMedia, kind: str, ctx: SealContext
) -> None:
    """Refuse a body that carries plaintext PHI to a route that does not encrypt it."""
    if kind == "multipart":
        _check_parts(body, content_type, media, ctx)
        return
    charset = media.charset
    if kind == "xml":
        _check_xml(body, charset, ctx)
        return
    if kind == "form" and charset not in {None, *UTF8_CHARSETS}:
        # The portal decodes percent-escapes in the declared charset (`%2BAHM-sn` is `ssn`
        # under utf-7), after the split we would check: only UTF-8 forms can be read as it does.
        raise RequestRejected(
            415,
            "form bodies (application/x-www-form-urlencoded) are accepted only in UTF-8: the "
            "charset parameter must be absent, utf-8 or us-ascii, so the proxy reads the field "
            "names exactly as the portal does; nothing was forwarded.",
            reason="unsupported_charset",
        )
    try:
        text = portal_readable_text(body, charset)
    except RequestRejected:
        if kind == "other" and charset is None:
            return  # binary, not text a portal could read as JSON or a form
        raise
    json_like = kind == "json" or text.lstrip()[:1] in _JSON_START
    if json_like:
        _check_json(text, ctx)
    if kind == "form":
        _check_form(text, ctx)
    elif not json_like:
        _refuse_unreadable(text, ctx)


def _check_parts(
    body: bytes, content_type: str | None, media: RequestMedia, ctx: SealContext
) -> None:
    """Each part of a multipart body: its names as form fields, its body as a body of its own.

    A part without a Content-Type is a form field's value (checked by its name); one with a
    type is a document and is checked like a request body of that type.
    """
    for names, part_type, part_body, _codings in form_parts(
        body, content_type or "", media.boundary
    ):
        value = part_body.decode("utf-8", errors="replace")
        for name in names:  # every name a parser could give this part
            _check_form_name(name, value, ctx)
        if part_body:
            part_media = request_media(part_type)
            kind = _kind(part_media, part_body, ctx.policy)
            if part_type is None and kind == "other":
                continue  # a plain field value: its name was the check
            _check_not_write(part_body, part_type, part_media, kind, ctx)


def _refuse_unreadable(text: bytes, ctx: SealContext) -> None:
    """415 for a text body the proxy cannot parse (XML, YAML, plain text) that names PHI.

    The proxy reads JSON, forms and multipart; anything else reaches the portal as sent. If
    such a body spells a selected field's name, the portal may well read PHI out of it (an XML
    `<ssn>`, a YAML `ssn:`), which would then be stored in clear: refused, fail closed.
    """
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return  # binary (an upload): not text a portal reads fields from (THREAT_MODEL.md)
    entities = declares_entities(text)
    if entities or ctx.policy.may_hold_selected_keys(TOKEN_PATTERN_BYTES.sub(b"", text)):
        why = (
            "it declares XML entities or default attributes (which can spell a protected "
            "field the proxy cannot see)"
            if entities
            else "it names a field the proxy protects"
        )
        raise RequestRejected(
            415,
            "the request body is in a format the proxy cannot read (only JSON, forms and "
            "multipart are checked, and XML when xml selectors are configured) and "
            f"{why}, so PHI could reach the portal in clear; nothing was forwarded. Send it "
            "as JSON (on a write route, to have it encrypted).",
            reason="unreadable_body_names_phi",
        )


def _check_xml(body: bytes, charset: str | None, ctx: SealContext) -> None:
    """An XML body on a route that does not encrypt: only whole tokens may fill selected values.

    Read when it may name a selected field, declares anything (a DOCTYPE or entity could spell
    one), or holds escaped markup or CDATA (a document inside the text, whose names a byte
    search cannot see): refused if it cannot be read (not UTF-8, not well-formed, a
    declaration).
    """
    if charset not in {None, *UTF8_CHARSETS}:
        raise RequestRejected(
            415,
            "XML request bodies are read only as UTF-8 (the charset parameter must be absent, "
            "utf-8 or us-ascii), so the proxy sees the fields exactly as the portal does; "
            "nothing was forwarded.",
            reason="unsupported_charset",
        )
    plain = TOKEN_PATTERN_BYTES.sub(b"", body)
    if (
        has_declarations(body)
        or may_nest_documents(body)
        or ctx.policy.may_hold_selected_keys(plain)
    ):
        root = read_request_xml(body, ctx.policy.max_depth)
        seal_xml(body, root, ctx.policy, _Walk(ctx, None).seal)


def _refuse_nested_phi(value: str, ctx: SealContext) -> None:
    r"""422 for a string holding JSON that names a selected field (`{"data": "{\"ssn\": …}"}`).

    The portal may parse that string and store what is inside; the proxy would neither encrypt
    it nor see it as PHI. Refused rather than rewritten inside the string.
    """
    inner = TOKEN_PATTERN_BYTES.sub(b"", value.encode("utf-8", "surrogatepass"))
    if ctx.policy.may_hold_selected_keys(inner):
        raise RequestRejected(
            422,
            "a string field holds JSON that names a field the proxy protects; the portal could "
            "read PHI out of it that the proxy never encrypts. Send that JSON as part of the "
            "body itself, not inside a string; nothing was forwarded.",
            reason="json_in_string",
        )


def _check_json(text: bytes, ctx: SealContext) -> None:
    if not ctx.policy.may_hold_selected_keys(text):
        return
    # Declared or not, a JSON-looking body that names a selected key must parse safely:
    # a lenient portal could read a duplicate-key or NaN body that we could not check.
    doc = _parse(text)
    _Walk(ctx, None).document(doc)


def _check_form(body: bytes, ctx: SealContext) -> None:
    # Split on ";" too: some portals read forms that way.
    text = body.decode("utf-8", errors="replace").replace(";", "&")
    for name, value in parse_qsl(text, keep_blank_values=True):
        _check_form_name(name, value, ctx)


def _check_form_name(name: str, value: str, ctx: SealContext) -> None:
    # Look at every part of names like patient[ssn] or patient.ssn: some portals nest that way.
    for part in _FORM_NAME_PARTS.split(name):
        field_class = ctx.policy.role(part).field_class if part else None
        if field_class is not None and value and not _is_token(value):
            raise RequestRejected(
                422, _NOT_WRITE.format(cls=field_class), reason="plaintext_outside_write_route"
            )


def _is_token(value: str) -> bool:
    """A whole, well-formed token (`phi1. 900-…` is plaintext with a prefix, not a token)."""
    return TOKEN_PATTERN.fullmatch(value) is not None


def _json_body_values(doc: object, ctx: SealContext, name: str) -> set[str]:
    """The string or integer values of top-level members of `doc` named `name`."""
    if not isinstance(doc, dict):
        return set()
    wanted = ctx.policy.normalize(name)
    return {
        value if isinstance(value, str) else str(value)
        for key, value in doc.items()
        if ctx.policy.normalize(key) == wanted
        and isinstance(value, str | int)
        and not isinstance(value, bool)
    }


def _practice(
    route: WriteRouteMatch, ctx: SealContext, body_values: Callable[[str], set[str]]
) -> str:
    """The practice a write route names (path parameter, or `body_values(body_key)`), or 422."""
    source = route.route.practice_from
    where = f"{route.route.method} {route.route.path}"
    if isinstance(source, BodyKeyPractice):
        what = f"body key {source.body_key!r}"
        found = body_values(source.body_key)
        practice = found.pop() if len(found) == 1 else None
    else:
        what = f"path parameter {source.path_param!r}"
        practice = route.params.get(source.path_param)
    if not practice:
        raise RequestRejected(
            422,
            f"write route {where}: the request does not name exactly one practice in its "
            f"{what}; nothing was forwarded.",
            reason="practice_not_named",
        )
    try:
        ctx.keyring.primary(practice)
    except KeyringError:
        raise RequestRejected(
            422,
            f"write route {where}: the practice named by the {what} has no active key, so its "
            "PHI cannot be encrypted; nothing was forwarded. Check the practice id, or add the "
            "practice with `phi-keys add-practice`.",
            reason="practice_has_no_key",
        ) from None
    return practice


def _refuse_selected_object(field_class: str) -> None:
    """A selected object's keys are PHI too (`{"HIV positive": true}`) and cannot be encrypted."""
    raise RequestRejected(
        422,
        f"a field of class {field_class!r} holds an object: its keys would reach the portal in "
        "clear (keys cannot be encrypted), so nothing was forwarded. Send the value as text or "
        "a list of texts, or select the object's members instead of the object.",
        reason="plaintext_key_in_selected_object",
    )


class _Walk:
    """Encrypts selected values for `practice`; with practice None, only refuses plaintext.

    Like the response walk, it leaves the parsed document alone and records each new token in
    `edits`, so only the selected values of the body change on their way to the portal.
    """

    __slots__ = ("ctx", "edits", "gated", "practice")

    def __init__(
        self, ctx: SealContext, practice: str | None, gated: WriteRouteMatch | None = None
    ) -> None:
        self.ctx = ctx
        self.practice = practice
        self.gated = gated  # a write route whose `require_grant` may ask for the caller's grant
        self.edits = Edits()

    def document(self, doc: object) -> Edits:
        """Seal (or check) every selected value of `doc`; the edits for `splice`."""
        result = self.value(doc, 0, self.ctx.policy.matcher.initial_for(doc), None)
        if result is not doc:
            self.edits.root = (result,)
        return self.edits

    def value(
        self, value: object, depth: int, states: tuple[int, ...], field_class: str | None
    ) -> object:
        if isinstance(value, dict | list):
            if depth >= self.ctx.policy.max_depth:
                raise RequestRejected(
                    400,
                    "the JSON request body is nested deeper than fields.max_depth; "
                    "nothing was forwarded.",
                    reason="too_deep",
                )
            if isinstance(value, dict):
                self.mapping(value, depth, states, field_class)
            else:
                self.sequence(value, depth, states, field_class)
            return value
        if field_class is None or value is None:
            if isinstance(value, str) and value.lstrip()[:1] in _JSON_START_TEXT:
                _refuse_nested_phi(value, self.ctx)
            return value
        if isinstance(value, str):
            return self.seal(value, field_class)
        return self.seal(orjson.dumps(value).decode("ascii"), field_class)

    def mapping(
        self, obj: dict[str, object], depth: int, states: tuple[int, ...], field_class: str | None
    ) -> None:
        if field_class is not None and any(obj):
            _refuse_selected_object(field_class)
        edits = self.edits
        before = edits.count()
        for key, item in obj.items():
            role = self.ctx.policy.role(key)
            child_states, path_class = (
                self.ctx.policy.matcher.step(states, role.normalized, 0, item)
                if states
                else ((), None)
            )
            cls = path_class or role.field_class or field_class
            new = self.value(item, depth + 1, child_states, cls)
            if new is not item:
                edits.values[id(obj), key] = new
        if edits.count() != before:
            edits.dirty.add(id(obj))

    def sequence(
        self, items: list[object], depth: int, states: tuple[int, ...], field_class: str | None
    ) -> None:
        edits = self.edits
        before = edits.count()
        for index, item in enumerate(items):
            child_states, path_class = (
                self.ctx.policy.matcher.step(states, None, index, item) if states else ((), None)
            )
            new = self.value(item, depth + 1, child_states, path_class or field_class)
            if new is not item:
                edits.values[id(items), index] = new
        if edits.count() != before:
            edits.dirty.add(id(items))

    def seal(self, text: str, field_class: str) -> str:
        ctx = self.ctx
        if self.practice is None:  # not a write route: only whole tokens may pass
            if text and not _is_token(text):
                raise RequestRejected(
                    422, _NOT_WRITE.format(cls=field_class), reason="plaintext_outside_write_route"
                )
            return text
        if self.gated is not None:  # empty text too: its token would still answer a search
            self.check_grant(self.practice, field_class, self.gated)

        if text.startswith(TOKEN_PREFIX):
            self.check_token(text, field_class)
            return text
        if TOKEN_PREFIX in text:
            raise RequestRejected(
                422,
                f"a field of class {field_class!r} holds text that contains a token; send "
                "either plaintext or exactly one token. Nothing was forwarded.",
                reason="token_inside_text",
            )
        token = ctx.keyring.encrypt(
            self.practice,
            field_class,
            text,
            deterministic=ctx.policy.is_deterministic(field_class),
        )
        ctx.stats.encrypted[field_class] += 1
        ctx.stats.practices.add(self.practice)  # the metrics' practice label
        return token

    def check_grant(self, practice: str, field_class: str, route: WriteRouteMatch) -> None:
        """403 unless the caller may read `field_class` at `practice`, where the route asks.

        `require_grant: always` asks for every class; `deterministic` (the default) for the
        deterministic ones only: their token is the same for the same value, so a stranger
        able to have one made could learn whether the practice stores a guessed SSN. A
        randomized class needs no grant (a patient booking holds none).
        """
        mode = route.route.require_grant
        deterministic = self.ctx.policy.is_deterministic(field_class)
        if mode == "deterministic" and not deterministic:
            return
        access = self.ctx.access
        if access is not None and access.allows(practice, field_class):
            return
        route_name = f"{route.route.method} {route.route.path}"
        if mode == "always":
            why = f"write route {route_name} requires (write_routes require_grant: always)"
        else:
            why = (
                f"class {field_class!r} is encrypted deterministically (the same value always "
                "gives the same token, so a stranger could test guesses against the portal's "
                f"data), and write route {route_name} requires (require_grant: deterministic, "
                "the default)"
            )
        raise RequestRejected(
            403,
            f"{why} the caller to hold an active grant for its practice covering class "
            f"{field_class!r}, and this caller holds none; nothing was forwarded. Ask for a "
            "grant (`phi-grants add`) if this work needs it.",
            reason="no_grant_for_route",
        )

    def check_token(self, token: str, field_class: str) -> None:
        try:
            opened = self.ctx.keyring.open(token)
        except InvalidToken:
            opened = None
        if opened is None or opened.practice != self.practice:
            raise RequestRejected(
                422,
                f"a field of class {field_class!r} holds a token that does not belong to this "
                "route's practice (or cannot be opened); nothing was forwarded.",
                reason="foreign_token",
            )
        if opened.field_class != field_class:
            raise RequestRejected(
                422,
                f"a field of class {field_class!r} holds a token of another field class; "
                "nothing was forwarded.",
                reason="token_of_another_class",
            )
