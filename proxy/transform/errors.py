"""The two ways a body transform refuses to go on.

    PhiProxyError (keys.errors)
    ├── UnsafeBody        a response body cannot be processed safely: answer 502, send nothing
    └── RequestRejected   a request body must not reach the portal: answer `status`, forward nothing

Neither error ever carries body content: `UnsafeBody` holds only a fixed reason code, and
`RequestRejected` holds an operator-readable message that names field classes and config
settings, never a value.
"""

from __future__ import annotations

from typing import Final

from keys.errors import PhiProxyError

__all__ = ["REJECT_REASONS", "UNSAFE_REASONS", "RequestRejected", "UnsafeBody"]

#: Every reason code `UnsafeBody` may carry (a closed set, so logs and metrics stay bounded).
UNSAFE_REASONS: Final = frozenset(
    {
        "invalid_json",  # the JSON parser rejected the body (syntax, NaN/Infinity, bad escapes)
        "invalid_utf8",  # not UTF-8, or a lone surrogate
        "duplicate_key",  # an object names the same key twice: client and proxy may disagree
        "too_deep",  # nesting deeper than fields.max_depth
        "key_collision",  # rewriting token-bearing object keys made two keys equal
        "core_failure",  # the compiled core failed (a bug): the body is withheld, never guessed
        "unsupported_charset",  # a text charset in which tokens could hide (UTF-16, UTF-7, …)
        "token_residue",  # the token prefix survived substitution (defence in depth)
        # a token spelled with escapes a browser, script or URL decoder undoes (`&#112;hi1.`,
        # `phi1%2E`, `\x70hi1.`), or a literal token whose next character is escaped
        "escaped_token",
        # Content-Type / Content-Encoding given twice, as a list, or named in Connection: the
        # client could read the body differently from the proxy.
        "conflicting_headers",
        # a multipart/message body the MIME parser cannot split, or a part in a charset or
        # Content-Encoding the proxy cannot read: its parts could not be checked
        "unreadable_multipart",
        # a part of a multipart/message body holds tokens or legacy plaintext: the proxy does
        # not rewrite MIME structures, so the body is withheld
        "multipart_with_phi",
        # an XML body (read because an `xml:` selector is configured) that holds a selected
        # name but is not well-formed XML: a lenient client could read plaintext from it
        "invalid_xml",
        # an XML body with an internal DTD subset or an entity declaration: a client's parser
        # would expand entities and add default attributes the proxy never saw
        "unsafe_xml",
    }
)


#: Every reason code `RequestRejected` may carry: logged on the access line (`rejected`), so the
#: operator sees why a write was refused without asking the client for the answer's body.
REJECT_REASONS: Final = frozenset(
    {
        "unsafe_json",  # the JSON body cannot be checked safely (see UNSAFE_REASONS)
        "too_deep",  # nested deeper than fields.max_depth
        "not_json",  # a write route got a body that is not JSON (e.g. a form)
        "plaintext_outside_write_route",  # plaintext PHI on a route not under write_routes
        "unreadable_body_names_phi",  # XML/YAML/plain text naming a protected field (415)
        "json_in_string",  # a string field holds JSON naming a protected field (422)
        "practice_not_named",  # the write route's practice_from names no single practice
        "practice_has_no_key",  # the named practice has no active key
        "token_inside_text",  # a PHI field holds text with a token inside it
        "foreign_token",  # a token of another practice, or one that does not open
        "token_of_another_class",  # a token whose field class is not this field's
        "unsupported_charset",  # a request charset the proxy cannot decode (415)
        "undecodable_body",  # bytes that do not decode as their charset or BOM claims (400)
        "unreadable_multipart",  # a multipart body that cannot be split into parts (400)
        # a Content-Type that aiohttp's two parsers read differently (quoted `;`, RFC 2231
        # `charset*=`, a parameter given twice): charset or boundary would be a guess (415)
        "ambiguous_content_type",
        # a `require_grant` write route, and the caller holds no grant for the class there (403)
        "no_grant_for_route",
        # a selected field holds an object: its keys would reach the portal in clear (422)
        "plaintext_key_in_selected_object",
        # an XML body with a DOCTYPE or entity declaration (422)
        "xml_declaration_refused",
        # an XML body that is not well-formed, to be read because it may carry PHI (400)
        "invalid_xml",
        # a selected XML element holds child elements, comments or PIs (422)
        "markup_in_selected_element",
        # an XML element's text holds XML or JSON naming a protected field (422)
        "document_in_xml_text",
    }
)


class UnsafeBody(PhiProxyError):
    """A response body that cannot be transformed safely; the caller answers 502 with no body.

    `reason` is one of `UNSAFE_REASONS`; it is safe to log and says nothing about the content.
    """

    def __init__(self, reason: str) -> None:
        if reason not in UNSAFE_REASONS:  # pragma: no cover - programming error
            msg = f"unknown UnsafeBody reason {reason!r}"
            raise ValueError(msg)
        super().__init__(reason)
        self.reason = reason


class RequestRejected(PhiProxyError):
    """A request body that must not be forwarded; answer `status` with `message`.

    The message is written for the client and the operator alike and never echoes a value;
    `reason` (one of `REJECT_REASONS`) is the short code for the access log.
    """

    def __init__(self, status: int, message: str, *, reason: str) -> None:
        if reason not in REJECT_REASONS:  # pragma: no cover - programming error
            msg = f"unknown RequestRejected reason {reason!r}"
            raise ValueError(msg)
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
