//! Writing decided values back: JSON string escaping exactly as `orjson.dumps` writes it, and
//! the splice that copies every untouched byte of the body as it came.
//!
//! orjson escapes `"` and `\`, uses the short forms \b \f \n \r \t, writes any other byte below
//! 0x20 as \u00XX with lowercase hex, and leaves everything else (DEL, `/`, non-ASCII) raw.

/// What replaces one value's span in the output.
#[derive(Debug, Clone)]
pub enum Repl {
    /// JSON null.
    Null,
    /// A JSON string with this (unescaped) text.
    Text(String),
    /// A decrypted value (shared with the opened-token cache), as a JSON string.
    Opened(std::sync::Arc<crate::keys::Opened>),
    /// Pre-rendered JSON (e.g. a mask's text, escaped once when the policy was built).
    Json(std::sync::Arc<[u8]>),
    /// A `remove` mask's decision: the member is to be cut out by its container (never in an
    /// `Edit`). The bytes are what the value becomes where it cannot be (the document root).
    Remove(std::sync::Arc<[u8]>),
    /// Nothing: the span is cut out (removed members with their separator).
    Cut,
}

/// One replaced span of the body.
#[derive(Debug, Clone)]
pub struct Edit {
    pub start: u32,
    pub end: u32,
    pub repl: Repl,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `text` as a JSON string literal (quotes included), orjson style.
pub fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// `text` rendered as a JSON string literal.
pub fn json_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_json_string(&mut out, text);
    out
}

fn write_repl(out: &mut Vec<u8>, repl: &Repl) {
    match repl {
        Repl::Null => out.extend_from_slice(b"null"),
        Repl::Text(t) => write_json_string(out, t),
        Repl::Opened(o) if o.json_plain => {
            out.push(b'"');
            out.extend_from_slice(o.plaintext.as_bytes());
            out.push(b'"');
        }
        Repl::Opened(o) => write_json_string(out, &o.plaintext),
        Repl::Json(j) => out.extend_from_slice(j),
        Repl::Remove(_) | Repl::Cut => {}
    }
}

/// One replacement as the bytes the splice writes for it.
pub fn render(repl: &Repl) -> Vec<u8> {
    let mut out = Vec::new();
    write_repl(&mut out, repl);
    out
}

/// Upper bound of the output length (for one allocation).
pub fn spliced_len(body_len: usize, edits: &[Edit]) -> usize {
    let mut n = body_len;
    for e in edits {
        n -= (e.end - e.start) as usize;
        n += match &e.repl {
            Repl::Null => 4,
            Repl::Text(t) => t.len() * 6 + 2,
            Repl::Opened(o) => o.plaintext.len() * 6 + 2,
            Repl::Json(j) => j.len(),
            Repl::Remove(_) | Repl::Cut => 0,
        };
    }
    n
}

/// `body` with each edit's span replaced; `edits` are in document order and do not overlap.
pub fn splice_into(out: &mut Vec<u8>, body: &[u8], edits: &[Edit]) {
    let mut at = 0usize;
    for e in edits {
        out.extend_from_slice(&body[at..e.start as usize]);
        write_repl(out, &e.repl);
        at = e.end as usize;
    }
    out.extend_from_slice(&body[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_orjson() {
        assert_eq!(json_string("a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(json_string("\u{8}\u{c}\n\r\t"), b"\"\\b\\f\\n\\r\\t\"");
        assert_eq!(
            json_string("\u{0}\u{1f}\u{1}"),
            b"\"\\u0000\\u001f\\u0001\""
        );
        assert_eq!(json_string("/\u{7f}é😀"), "\"/\u{7f}é😀\"".as_bytes());
        assert_eq!(json_string(""), b"\"\"");
    }

    #[test]
    fn splices_in_order() {
        let body = br#"{"a":"x","b":1,"c":{"d":2}}"#;
        let edits = vec![
            Edit {
                start: 5,
                end: 8,
                repl: Repl::Null,
            },
            Edit {
                start: 19,
                end: 26,
                repl: Repl::Text("m\n".into()),
            },
        ];
        let mut out = Vec::new();
        splice_into(&mut out, body, &edits);
        assert_eq!(out, br#"{"a":null,"b":1,"c":"m\n"}"#);
        assert!(spliced_len(body.len(), &edits) >= out.len());
    }

    #[test]
    fn a_remove_edit_cuts_its_span() {
        let body = br#"{"a":"x","b":1}"#;
        let edits = vec![Edit {
            start: 8,
            end: 14,
            repl: Repl::Cut,
        }];
        let mut out = Vec::new();
        splice_into(&mut out, body, &edits);
        assert_eq!(out, br#"{"a":"x"}"#);
        assert_eq!(spliced_len(body.len(), &edits), out.len());
    }
}
