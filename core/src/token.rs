//! Token format v1 (keys/token_format.py): `phi1.<r|d>.<16 hex kid>.<class>.<base64url>`.
//!
//! Two jobs, both pure grammar (no keys): `parse` accepts exactly what
//! `parse_token_fast` accepts (strict, canonical base64url without padding; a payload of at
//! least 28 bytes for mode r, 16 for d), and `find_tokens` finds the same matches as
//! `TOKEN_PATTERN.finditer` over text, so unselected strings are substituted identically.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub const PREFIX: &[u8] = b"phi1.";
/// len("phi1.r.") + 16 hex + "." : where the class starts.
const CLASS_START: usize = 24;
const CLASS_MAX: usize = 32;

/// Strict base64url: no padding accepted, non-canonical trailing bits rejected.
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Random,
    Deterministic,
}

/// A token that passed the grammar (payload validated, not decoded).
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub mode: Mode,
    pub kid: &'a str,
    pub class: &'a str,
    /// Everything before the payload, final "." included: the AAD.
    pub aad: &'a [u8],
    pub payload: &'a [u8],
}

impl Parsed<'_> {
    /// Shortest decoded payload: GCM nonce (12) + tag (16); SIV synthetic IV (16).
    pub fn min_payload(&self) -> usize {
        if self.mode == Mode::Random {
            28
        } else {
            16
        }
    }

    /// The header without its final dot, as `reveal_token` looks it up.
    pub fn head(&self) -> &[u8] {
        &self.aad[..self.aad.len() - 1]
    }
}

/// Value of each base64url character; 0xFF for bytes outside the alphabet.
const B64_VALUES: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decoded length if `text` is strict canonical base64url without padding (no decoding).
pub fn b64_len(text: &[u8]) -> Option<usize> {
    let rem = text.len() % 4;
    if text.is_empty() || rem == 1 {
        return None;
    }
    if text.iter().any(|&c| B64_VALUES[c as usize] == 0xFF) {
        return None;
    }
    let last = B64_VALUES[text[text.len() - 1] as usize];
    let unused = [0u8, 0, 0x0F, 0x03][rem];
    if last & unused != 0 {
        return None;
    }
    Some(text.len() / 4 * 3 + [0, 0, 1, 2][rem])
}

pub fn is_kid(kid: &[u8]) -> bool {
    kid.len() == 16 && kid.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn is_class(class: &[u8]) -> bool {
    !class.is_empty()
        && class.len() <= CLASS_MAX
        && class[0].is_ascii_lowercase()
        && class
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// `parse_token_fast`: the same acceptance, or None.
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    let parsed = parse_header(token)?;
    let len = b64_len(parsed.payload)?;
    (len >= parsed.min_payload()).then_some(parsed)
}

/// `parse` without looking at the payload: the caller decodes it strictly (`B64URL`) and
/// checks `min_payload`, which is the same acceptance with one pass over the payload.
pub fn parse_header(token: &str) -> Option<Parsed<'_>> {
    let raw = token.as_bytes();
    if !raw.is_ascii() || raw.len() <= CLASS_START {
        return None;
    }
    let cut = memchr::memchr(b'.', &raw[CLASS_START..])? + CLASS_START + 1;
    let aad = &raw[..cut];
    let mut parts = aad.split(|&c| c == b'.');
    let (version, mode, kid, class, tail) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || version != b"phi1" || !tail.is_empty() {
        return None;
    }
    let mode = match mode {
        b"r" => Mode::Random,
        b"d" => Mode::Deterministic,
        _ => return None,
    };
    if !is_kid(kid) || !is_class(class) {
        return None;
    }
    Some(Parsed {
        mode,
        // Both are ASCII by the checks above.
        kid: std::str::from_utf8(kid).ok()?,
        class: std::str::from_utf8(class).ok()?,
        aad,
        payload: &raw[cut..],
    })
}

/// The header of a candidate token as `reveal_token` cuts it: everything before the last
/// dot, which must be exactly "phi1.<r|d>.<kid>.<class>". The payload (after the last dot) is
/// not looked at: a token the caller may not see and whose mask needs no value is masked
/// without being opened, exactly as in Python. Returns (header, class).
pub fn parse_head(token: &str) -> Option<(&str, &str)> {
    let cut = token.rfind('.')?;
    let head = &token[..cut];
    let b = head.as_bytes();
    if b.len() < 25
        || !b.starts_with(PREFIX)
        || !matches!(b[5], b'r' | b'd')
        || b[6] != b'.'
        || !is_kid(&b[7..23])
        || b[23] != b'.'
        || !is_class(&b[24..])
    {
        return None;
    }
    Some((head, &head[24..]))
}

/// [A-Za-z0-9_-]: the payload alphabet, and the pattern's word boundary.
const WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        c += 1;
    }
    table
};

#[inline]
fn is_word(c: u8) -> bool {
    WORD[c as usize]
}

/// Length of a TOKEN_PATTERN match starting at `at` (which holds "phi1."), if any.
///
/// (?<![A-Za-z0-9_.\-])phi1\.[rd]\.[0-9a-f]{16}\.[a-z][a-z0-9_]{0,31}\.[A-Za-z0-9_\-]{22,}
/// (?![A-Za-z0-9_\-]) — the class and payload runs are maximal, so no backtracking matters.
pub fn match_at(text: &[u8], at: usize) -> Option<usize> {
    if at > 0 && (is_word(text[at - 1]) || text[at - 1] == b'.') {
        return None;
    }
    let t = &text[at..];
    if t.len() < 24 || !t.starts_with(PREFIX) || !matches!(t[5], b'r' | b'd') || t[6] != b'.' {
        return None;
    }
    if !is_kid(&t[7..23]) || t[23] != b'.' {
        return None;
    }
    let mut i = 24;
    if !t.get(i)?.is_ascii_lowercase() {
        return None;
    }
    let class_start = i;
    while i < t.len() && matches!(t[i], b'a'..=b'z' | b'0'..=b'9' | b'_') {
        i += 1;
    }
    if i - class_start > CLASS_MAX || t.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let payload_start = i;
    while i < t.len() && is_word(t[i]) {
        i += 1;
    }
    if i - payload_start < 22 {
        return None;
    }
    Some(i)
}

/// Every TOKEN_PATTERN match in `text` as (start, end), left to right, non-overlapping.
pub fn find_tokens(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&text[from..], PREFIX) {
        let at = from + p;
        match match_at(text, at) {
            Some(len) => {
                out.push((at, at + len));
                from = at + len;
            }
            None => from = at + 1,
        }
    }
    out
}

/// True if the whole of `text` is one TOKEN_PATTERN match (`fullmatch`).
pub fn is_whole_token(text: &[u8]) -> bool {
    text.starts_with(PREFIX) && match_at(text, 0) == Some(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const KID: &str = "0123456789abcdef";

    #[test]
    fn b64_strictness() {
        assert_eq!(b64_len(b"AAAA"), Some(3));
        assert_eq!(b64_len(b"AAA"), Some(2));
        assert_eq!(b64_len(b"AA"), Some(1));
        assert_eq!(b64_len(b"A"), None);
        assert_eq!(b64_len(b""), None);
        assert_eq!(b64_len(b"AB"), None); // unused bits set
        assert_eq!(b64_len(b"AAB"), None);
        assert_eq!(b64_len(b"AA=="), None);
        assert_eq!(b64_len(b"A+/A"), None);
        assert_eq!(b64_len(b"-_-_"), Some(3));
        for t in [
            &b"AAAA"[..],
            b"AAA",
            b"AA",
            b"A",
            b"AB",
            b"AAB",
            b"AA==",
            b"A+/A",
            b"-_-_",
        ] {
            assert_eq!(b64_len(t), B64URL.decode(t).ok().map(|v| v.len()), "{t:?}");
        }
    }

    #[test]
    fn strict_engine_agrees_with_b64_len_exhaustively() {
        // Every string of up to 6 characters over an alphabet of edge cases.
        let alphabet = b"ABQw_-=+/.";
        for len in 0..=6usize {
            let total = alphabet.len().pow(len as u32);
            for mut n in 0..total {
                let mut text = Vec::with_capacity(len);
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let engine = B64URL
                    .decode(&text)
                    .ok()
                    .map(|v| v.len())
                    .filter(|_| !text.is_empty());
                assert_eq!(
                    b64_len(&text),
                    engine,
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn parses_like_python() {
        let p22 = "A".repeat(22);
        let p38 = "A".repeat(38);
        assert!(parse(&format!("phi1.d.{KID}.ssn.{p22}")).is_some());
        assert!(parse(&format!("phi1.r.{KID}.ssn.{p22}")).is_none()); // too short for GCM
        assert!(parse(&format!("phi1.r.{KID}.ssn.{p38}")).is_some());
        assert!(parse(&format!("phi1.x.{KID}.ssn.{p38}")).is_none());
        assert!(parse(&format!("phi1.r.{KID}.Ssn.{p38}")).is_none());
        assert!(parse(&format!("phi1.r.{KID}.ssn.{p38}.x")).is_none());
        assert!(parse(&format!("phi1.r.{KID}..{p38}")).is_none());
        assert!(parse(&format!("phi1.r.{}.ssn.{p38}", &KID[1..])).is_none());
        let t = format!("phi1.d.{KID}.a_1.{p22}");
        let p = parse(&t).unwrap();
        assert_eq!(p.head(), format!("phi1.d.{KID}.a_1").as_bytes());
        assert_eq!(p.class, "a_1");
    }

    #[test]
    fn heads() {
        let t = format!("phi1.r.{KID}.ssn.any payload");
        assert_eq!(parse_head(&t), Some((&t[..27], "ssn")));
        assert!(parse_head(&format!("phi1.r.{KID}.ssn.x.y")).is_none());
        assert!(parse_head(&format!("phi1.x.{KID}.ssn.y")).is_none());
        assert!(parse_head(&format!("phi1.r.{KID}.S.y")).is_none());
        assert!(parse_head("phi1.garbage").is_none());
        let one = format!("phi1.d.{KID}.a.payload");
        assert_eq!(parse_head(&one), Some((&one[..25], "a")));
        assert!(parse_head(&format!("phi1.d.{KID}..payload")).is_none());
    }

    #[test]
    fn finds_like_the_regex() {
        let tok = format!("phi1.r.{KID}.ssn.{}", "B".repeat(40));
        let text = format!("x {tok} y;{tok}");
        assert_eq!(find_tokens(text.as_bytes()).len(), 2);
        assert!(find_tokens(format!("a{tok}").as_bytes()).is_empty());
        assert!(find_tokens(format!("a.{tok}").as_bytes()).is_empty());
        assert_eq!(find_tokens(format!("é{tok}").as_bytes()).len(), 1);
        assert!(find_tokens(format!("phi1.r.{KID}.ssn.{}", "B".repeat(21)).as_bytes()).is_empty());
        assert!(is_whole_token(tok.as_bytes()));
        assert!(!is_whole_token(format!("{tok} ").as_bytes()));
        assert!(!is_whole_token(format!("{tok}.x").as_bytes()));
        let long_class = format!("phi1.r.{KID}.{}.{}", "a".repeat(33), "B".repeat(40));
        assert!(find_tokens(long_class.as_bytes()).is_empty());
    }
}
