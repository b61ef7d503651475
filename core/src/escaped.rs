//! The cheap first look for escaped spellings of a token (`&#112;hi1.…`, `phi1%2E…`,
//! `\x70hi1.…`, a literal token whose next character is escaped).
//!
//! proxy/transform/escaped_tokens.py holds the rules; they are regular expressions that CPython
//! scans byte by byte (~1 ms on a 600 KB bundle). This pass answers the question "could any of
//! them match?" at memchr speed and is *sound*: when it says no, the precise check would say
//! no. When it says maybe, Python runs the precise check. It never decides a body on its own,
//! so both transform cores keep reaching the same decision; a property test compares this
//! answer with the precise one on random bodies.
//!
//! Two readings of a body:
//!
//! * text: the body is read as it is (HTML, a script, CSS, a URL).
//! * JSON: every string of the body is read after JSON decoding, so `\\x70` (two bytes of
//!   backslash in the body) is one backslash to the reader, a `\uXXXX` escape may spell any
//!   character of an escape, and a single `\u0070` is the JSON parser's business (the
//!   transform decodes strings itself and sees the literal token).

use memchr::{memchr3_iter, memmem};

const PREFIX: &[u8] = b"phi1.";

/// Hex spellings (without leading zeros) of the five prefix characters `p h i 1 .`.
const PREFIX_HEX: [&[u8]; 5] = [b"70", b"68", b"69", b"31", b"2e"];
/// Decimal spellings of the same characters (HTML `&#112;`).
const PREFIX_DEC: [&[u8]; 5] = [b"112", b"104", b"105", b"49", b"46"];

/// `body[at..]` starts with one of `spellings`, ASCII case ignored (hex digits).
fn starts_with_any(body: &[u8], at: usize, spellings: &[&[u8]]) -> bool {
    spellings.iter().any(|s| {
        body.get(at..at + s.len())
            .is_some_and(|got| got.eq_ignore_ascii_case(s))
    })
}

/// Skips leading zeros from `at`.
fn skip_zeros(body: &[u8], mut at: usize) -> usize {
    while body.get(at) == Some(&b'0') {
        at += 1;
    }
    at
}

/// `&#112`, `&#x70`, `&period;`: an HTML character reference to a prefix character at `at`.
fn entity_at(body: &[u8], at: usize) -> bool {
    if body[at..].starts_with(b"&period;") {
        return true;
    }
    if body.get(at + 1) != Some(&b'#') {
        return false;
    }
    match body.get(at + 2) {
        Some(b'x' | b'X') => starts_with_any(body, skip_zeros(body, at + 3), &PREFIX_HEX),
        _ => starts_with_any(body, skip_zeros(body, at + 2), &PREFIX_DEC),
    }
}

/// `%70`, `%2570`, `%252570`: a percent-escape of a prefix character (escaped again or not).
fn percent_at(body: &[u8], at: usize) -> bool {
    let mut next = at + 1;
    while body.get(next..next + 2) == Some(b"25") {
        next += 2; // `%2570` is `%70` percent-escaped again
    }
    starts_with_any(body, next, &PREFIX_HEX)
}

/// A run of backslashes at `at`, then `x`, `u`, `u{` or nothing (CSS), then a prefix character
/// in hex. `min_run`: 1 for text, 2 for JSON (one backslash as the JSON reader sees it).
fn backslash_at(body: &[u8], at: usize, min_run: usize) -> bool {
    let mut next = at;
    while body.get(next) == Some(&b'\\') {
        next += 1;
    }
    if next - at < min_run {
        return false;
    }
    match body.get(next) {
        Some(b'u') if body.get(next + 1) == Some(&b'{') => next += 2,
        Some(b'x' | b'X' | b'u' | b'U') => next += 1,
        _ => {}
    }
    starts_with_any(body, skip_zeros(body, next), &PREFIX_HEX)
}

/// `\u0020`..`\u007F` at `at` (the last backslash of a run): in JSON such an escape may
/// spell any character of an HTML, percent or backslash escape.
fn ascii_unicode_escape_at(body: &[u8], at: usize) -> bool {
    body.get(at + 1..at + 6).is_some_and(|esc| {
        esc[0] == b'u'
            && esc[1] == b'0'
            && esc[2] == b'0'
            && (b'2'..=b'7').contains(&esc[3])
            && esc[4].is_ascii_hexdigit()
    })
}

/// The characters tokens are made of (`[A-Za-z0-9_.-]`).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// The run of token characters that ends just before `at` (an `&`, `%` or backslash) holds
/// the token prefix: a literal token whose next character is escaped, which the token scan
/// would cut there and leave the escaped tail behind. Runs between two such bytes are
/// disjoint, so all the look-backs of one body cost one pass.
fn escaped_tail_at(body: &[u8], at: usize) -> bool {
    let mut start = at;
    while start > 0 && is_token_char(body[start - 1]) {
        start -= 1;
    }
    at - start >= PREFIX.len() && memmem::find(&body[start..at], PREFIX).is_some()
}

/// False only if no reading of `body` (text, or every JSON string when `json`) holds a token
/// spelled with escapes, or a literal token followed by an escaped token character.
pub fn may_hold_escaped_token(body: &[u8], json: bool) -> bool {
    let min_run = if json { 2 } else { 1 };
    let mut backslash_run_end = 0;
    for at in memchr3_iter(b'&', b'%', b'\\', body) {
        if escaped_tail_at(body, at) {
            return true;
        }
        let hit = match body[at] {
            b'&' => entity_at(body, at),
            b'%' => percent_at(body, at),
            _ => {
                // Only the first backslash of a run starts one (the rest are inside it).
                if at < backslash_run_end {
                    continue;
                }
                backslash_run_end = at;
                while body.get(backslash_run_end) == Some(&b'\\') {
                    backslash_run_end += 1;
                }
                (json && ascii_unicode_escape_at(body, backslash_run_end - 1))
                    || backslash_at(body, at, min_run)
            }
        };
        if hit {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_prefixes_are_seen_in_text() {
        for body in [
            &b"<p>&#112;hi1.d.x</p>"[..],
            b"&#x70;hi1",
            b"&#X0070;",
            b"phi1&period;d",
            b"t=phi1%2Ed",
            b"t=%25%2570hi1",
            b"\\x70hi1.",
            b"\\u0070hi1.",
            b"\\u{70}hi1.",
            b"\\70 hi1.",
            b"phi1.d.abc\\x2Ddef",
            b"phi1.d.abc&#45;",
            b"phi1.d.abc%2D",
        ] {
            assert!(may_hold_escaped_token(body, false), "{body:?}");
        }
    }

    #[test]
    fn ordinary_escapes_are_not_suspect() {
        for body in [
            &b"<a title=&quot;x&quot;>phi1.d.x</a> &amp; 100% off, a%20b"[..],
            b"{\"note\": \"line\\nbreak\"}",
            b"&#123; &#x41;",
            b"%",
            b"&",
            b"\\",
        ] {
            assert!(!may_hold_escaped_token(body, false), "{body:?}");
        }
    }

    #[test]
    fn json_needs_a_backslash_the_reader_keeps() {
        assert!(!may_hold_escaped_token(b"{\"a\": \"\\u00e9\\n\"}", true));
        assert!(!may_hold_escaped_token(b"{\"a\": \"\\x70\"}", true)); // invalid JSON anyway
        assert!(may_hold_escaped_token(b"{\"a\": \"\\\\x70hi1.\"}", true));
        assert!(may_hold_escaped_token(b"{\"a\": \"\\u0070hi1.\"}", true));
        assert!(may_hold_escaped_token(
            b"{\"a\": \"\\u0026#112;hi1.\"}",
            true
        ));
        assert!(may_hold_escaped_token(b"{\"a\": \"&#112;hi1.\"}", true));
        assert!(may_hold_escaped_token(b"{\"a\": \"phi1.d.x\\\"\"}", true));
    }
}
