//! One forward pass over a JSON body: strict RFC 8259 validation plus a compact structural
//! index (one `Node` per value, in document order).
//!
//! Why an index and not a tree: the walk needs to look ahead (an object's practice/id keys
//! decide its members; a path filter inspects a child's members before deciding the child) but
//! must never copy the body. Each node records its byte span, its member key's span, and the
//! index one past its subtree (`next`), so siblings are reached by jumping, children by `+1`.
//!
//! Anything a strict parser (orjson, and the Python walk behind it) would refuse or read in a
//! way we cannot reproduce byte for byte makes the scan give up: invalid UTF-8, a lone
//! surrogate escape, a raw control character in a string, trailing bytes, a BOM, a duplicate
//! key, nesting beyond `max_depth`, an object key holding the token prefix, an integer outside
//! 64 bits or a float outside [-2^63, 2^64). The Python twin then handles the body with its
//! exact error and accounting.

use crate::GiveUp;
use memchr::memmem;

pub const OBJECT: u8 = 0;
pub const ARRAY: u8 = 1;
pub const STRING: u8 = 2;
pub const NUMBER: u8 = 3;
pub const TRUE: u8 = 4;
pub const FALSE: u8 = 5;
pub const NULL: u8 = 6;

/// The string value contains a backslash escape (its decoded text differs from its bytes).
pub const F_ESCAPED: u8 = 1;
/// The raw bytes of the string value contain the token prefix.
pub const F_PREFIX: u8 = 2;
/// A number without fraction or exponent (an integer, known to fit i64 or u64).
pub const F_INT: u8 = 4;
/// The member key of this node contains a backslash escape.
pub const F_KEY_ESCAPED: u8 = 8;
/// On a container: something below it may be decided even without a path state or an
/// inherited class (a string holding the prefix or an escape, a key a key selector may name,
/// an escaped or non-ASCII key). A container without it, reached with neither, is skipped.
pub const F_HOT: u8 = 16;

/// No key: an array element or the root.
pub const NO_KEY: u32 = u32::MAX;

pub const PREFIX: &[u8] = b"phi1.";

/// Bytes that end a run of plain string content: quote, backslash, control characters.
const STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// One JSON value. Spans are byte offsets into the body; for strings `start` is the opening
/// quote and `end` one past the closing quote; `key_*` is the raw key text inside its quotes.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub start: u32,
    pub end: u32,
    pub key_start: u32,
    pub key_end: u32,
    /// Index of the first node after this node's subtree.
    pub next: u32,
    pub kind: u8,
    pub flags: u8,
}

impl Node {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

struct Open {
    node: u32,
    keys_base: usize,
    hot: bool,
}

struct Scanner<'a, F: Fn(&[u8]) -> bool> {
    /// Whether a plain ASCII key (raw text) may be named by a key selector.
    hot_key: F,
    b: &'a [u8],
    i: usize,
    nodes: Vec<Node>,
    /// Sorted offsets of every "phi1." in the body, and a cursor (spans arrive in order).
    prefixes: Vec<u32>,
    cursor: usize,
    /// Keys of the open objects (start, end, escaped), for the duplicate check.
    keys: Vec<(u32, u32, bool)>,
    stack: Vec<Open>,
    max_depth: usize,
}

/// Validate `body` and index it; `GiveUp` on anything the strict Python path must decide.
/// Every key counts as one a selector may name (only containers of scalars stay cold).
pub fn scan(body: &[u8], max_depth: usize) -> Result<Vec<Node>, GiveUp> {
    scan_with(body, max_depth, |_| true)
}

/// `scan`, marking hot (`F_HOT`) only the containers with something `hot_key` or the string
/// contents below them make decidable.
pub fn scan_with<F: Fn(&[u8]) -> bool>(
    body: &[u8],
    max_depth: usize,
    hot_key: F,
) -> Result<Vec<Node>, GiveUp> {
    if body.len() >= u32::MAX as usize - 1 || std::str::from_utf8(body).is_err() {
        return Err(GiveUp);
    }
    let prefixes = memmem::find_iter(body, PREFIX).map(|p| p as u32).collect();
    let mut s = Scanner {
        hot_key,
        b: body,
        i: 0,
        nodes: Vec::with_capacity(body.len() / 12 + 4),
        prefixes,
        cursor: 0,
        keys: Vec::new(),
        stack: Vec::new(),
        max_depth,
    };
    s.run()?;
    Ok(s.nodes)
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

impl<F: Fn(&[u8]) -> bool> Scanner<'_, F> {
    #[inline]
    fn mark_hot(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            top.hot = true;
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, GiveUp> {
        self.b.get(self.i).copied().ok_or(GiveUp)
    }

    /// True if a "phi1." lies wholly inside [start, end). Spans must be asked in order.
    #[inline]
    fn span_has_prefix(&mut self, start: usize, end: usize) -> bool {
        while self.cursor < self.prefixes.len() && (self.prefixes[self.cursor] as usize) < start {
            self.cursor += 1;
        }
        self.cursor < self.prefixes.len()
            && self.prefixes[self.cursor] as usize + PREFIX.len() <= end
    }

    fn run(&mut self) -> Result<(), GiveUp> {
        let mut key: (u32, u32, u8) = (NO_KEY, NO_KEY, 0);
        loop {
            // Expecting a value.
            self.skip_ws();
            let c = self.peek()?;
            let idx = self.nodes.len() as u32;
            let start = self.i as u32;
            let mut node = Node {
                start,
                end: 0,
                key_start: key.0,
                key_end: key.1,
                next: idx + 1,
                kind: NULL,
                flags: key.2,
            };
            match c {
                b'{' | b'[' => {
                    node.kind = if c == b'{' { OBJECT } else { ARRAY };
                    self.nodes.push(node);
                    if self.stack.len() >= self.max_depth {
                        return Err(GiveUp);
                    }
                    self.stack.push(Open {
                        node: idx,
                        keys_base: self.keys.len(),
                        hot: false,
                    });
                    self.i += 1;
                    self.skip_ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        // Empty container: closed below by the after-value loop.
                    } else {
                        if c == b'{' {
                            key = self.member_key()?;
                        } else {
                            key = (NO_KEY, NO_KEY, 0);
                        }
                        continue;
                    }
                }
                b'"' => {
                    let escaped = self.string()?;
                    node.kind = STRING;
                    node.end = self.i as u32;
                    if escaped {
                        node.flags |= F_ESCAPED;
                    }
                    if self.span_has_prefix(start as usize + 1, self.i - 1) {
                        node.flags |= F_PREFIX;
                    }
                    if node.flags & (F_ESCAPED | F_PREFIX) != 0 {
                        self.mark_hot();
                    }
                    self.nodes.push(node);
                }
                b'-' | b'0'..=b'9' => {
                    node.kind = NUMBER;
                    if self.number()? {
                        node.flags |= F_INT;
                    }
                    node.end = self.i as u32;
                    self.nodes.push(node);
                }
                b't' | b'f' | b'n' => {
                    let (word, kind): (&[u8], u8) = match c {
                        b't' => (b"true", TRUE),
                        b'f' => (b"false", FALSE),
                        _ => (b"null", NULL),
                    };
                    if !self.b[self.i..].starts_with(word) {
                        return Err(GiveUp);
                    }
                    self.i += word.len();
                    node.kind = kind;
                    node.end = self.i as u32;
                    self.nodes.push(node);
                }
                _ => return Err(GiveUp),
            }
            // After a value: close containers, or move to the next member/element.
            loop {
                let Some(top) = self.stack.last() else {
                    self.skip_ws();
                    return if self.i == self.b.len() {
                        Ok(())
                    } else {
                        Err(GiveUp)
                    };
                };
                let top_node = top.node as usize;
                let is_object = self.nodes[top_node].kind == OBJECT;
                self.skip_ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        key = if is_object {
                            self.member_key()?
                        } else {
                            (NO_KEY, NO_KEY, 0)
                        };
                        break;
                    }
                    b'}' if is_object => self.close()?,
                    b']' if !is_object => self.close()?,
                    _ => return Err(GiveUp),
                }
            }
        }
    }

    /// Close the innermost container at the current `}` / `]`.
    fn close(&mut self) -> Result<(), GiveUp> {
        let open = self.stack.pop().ok_or(GiveUp)?;
        self.i += 1;
        let count = self.nodes.len() as u32;
        let node = &mut self.nodes[open.node as usize];
        node.end = self.i as u32;
        node.next = count;
        if open.hot {
            node.flags |= F_HOT;
        }
        if node.kind == OBJECT {
            let keys = &self.keys[open.keys_base..];
            if has_duplicates(self.b, keys) {
                return Err(GiveUp);
            }
            self.keys.truncate(open.keys_base);
        }
        if open.hot {
            self.mark_hot();
        }
        Ok(())
    }

    /// A member key and its colon; returns (start, end, flags) of the key text.
    fn member_key(&mut self) -> Result<(u32, u32, u8), GiveUp> {
        self.skip_ws();
        if self.peek()? != b'"' {
            return Err(GiveUp);
        }
        let start = self.i + 1;
        let escaped = self.string()?;
        let end = self.i - 1;
        if self.span_has_prefix(start, end) {
            return Err(GiveUp); // a key carrying a token: the Python twin rekeys it
        }
        if escaped && memmem::find(decode(&self.b[start..end]).as_bytes(), PREFIX).is_some() {
            return Err(GiveUp);
        }
        self.skip_ws();
        if self.peek()? != b':' {
            return Err(GiveUp);
        }
        self.i += 1;
        let raw = &self.b[start..end];
        if escaped || !raw.is_ascii() || (self.hot_key)(raw) {
            self.mark_hot();
        }
        self.keys.push((start as u32, end as u32, escaped));
        Ok((
            start as u32,
            end as u32,
            if escaped { F_KEY_ESCAPED } else { 0 },
        ))
    }

    /// Scan a string starting at its opening quote; returns whether it holds escapes.
    fn string(&mut self) -> Result<bool, GiveUp> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            // Most strings are short: a table-driven byte loop finds their end sooner than a
            // SIMD search can start. Long runs: jump to the next quote or backslash (memchr2),
            // then check the run for raw control bytes in a loop the compiler vectorizes.
            let short_end = (i + 24).min(b.len());
            while i < short_end && !STOP[b[i] as usize] {
                i += 1;
            }
            if i == short_end && i < b.len() {
                let run_end = memchr::memchr2(b'"', b'\\', &b[i..]).map_or(b.len(), |p| i + p);
                if b[i..run_end].iter().fold(false, |bad, &c| bad | (c < 0x20)) {
                    return Err(GiveUp);
                }
                i = run_end;
            }
            let c = *b.get(i).ok_or(GiveUp)?;
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    let e = *b.get(i + 1).ok_or(GiveUp)?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let unit = hex4(b, i + 2)?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&unit) {
                                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                    return Err(GiveUp);
                                }
                                let low = hex4(b, i + 2)?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(GiveUp);
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&unit) {
                                return Err(GiveUp);
                            }
                        }
                        _ => return Err(GiveUp),
                    }
                }
                0..=0x1f => return Err(GiveUp),
                _ => i += 1,
            }
        }
    }

    /// Scan a number; returns true for an integer. Gives up outside the 64-bit ranges.
    fn number(&mut self) -> Result<bool, GiveUp> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            _ => return Err(GiveUp),
        }
        let int_digits = i - int_start;
        let mut is_int = true;
        let mut has_exp = false;
        if b.get(i) == Some(&b'.') {
            is_int = false;
            i += 1;
            let d = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                return Err(GiveUp);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            is_int = false;
            has_exp = true;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                return Err(GiveUp);
            }
        }
        self.i = i;
        let text = std::str::from_utf8(&b[start..i]).map_err(|_| GiveUp)?;
        if is_int {
            if int_digits >= 19 && int_value(text).is_none() {
                return Err(GiveUp); // orjson reads it as a float: lossy
            }
        } else if has_exp || int_digits >= 19 {
            let v: f64 = text.parse().map_err(|_| GiveUp)?;
            if !v.is_finite()
                || !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&v)
            {
                return Err(GiveUp);
            }
        }
        Ok(is_int)
    }
}

/// The value of an integer literal that fits i64 or u64, as its canonical decimal text.
pub fn int_value(text: &str) -> Option<String> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(v.to_string());
    }
    text.parse::<u64>().ok().map(|v| v.to_string())
}

fn hex4(b: &[u8], i: usize) -> Result<u32, GiveUp> {
    let digits = b.get(i..i + 4).ok_or(GiveUp)?;
    let mut v = 0u32;
    for &d in digits {
        let n = (d as char).to_digit(16).ok_or(GiveUp)?;
        v = v * 16 + n;
    }
    Ok(v)
}

/// Decode the text of a validated JSON string (between the quotes).
pub fn decode(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let run = memchr::memchr(b'\\', &raw[i..]).map_or(raw.len(), |p| i + p);
        // The scan validated UTF-8 for the whole body and escapes are ASCII.
        out.push_str(std::str::from_utf8(&raw[i..run]).unwrap_or(""));
        i = run;
        if i >= raw.len() {
            break;
        }
        let e = raw[i + 1];
        i += 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let unit = hex4(raw, i).unwrap_or(0xFFFD);
                i += 4;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = hex4(raw, i + 2).unwrap_or(0xDC00);
                    i += 6;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        .unwrap_or('\u{FFFD}')
                } else {
                    char::from_u32(unit).unwrap_or('\u{FFFD}')
                }
            }
        };
        out.push(c);
    }
    out
}

/// True if two keys of one object decode to the same name.
fn has_duplicates(b: &[u8], keys: &[(u32, u32, bool)]) -> bool {
    if keys.len() < 2 {
        return false;
    }
    let any_escaped = keys.iter().any(|k| k.2);
    if !any_escaped && keys.len() <= 12 {
        for (n, a) in keys.iter().enumerate() {
            let ka = &b[a.0 as usize..a.1 as usize];
            for c in &keys[n + 1..] {
                // Lengths and first bytes first: most keys differ there, without a memcmp.
                let kc = &b[c.0 as usize..c.1 as usize];
                if kc.len() == ka.len() && kc.first() == ka.first() && kc == ka {
                    return true;
                }
            }
        }
        return false;
    }
    let mut seen: ahash::AHashSet<std::borrow::Cow<'_, [u8]>> =
        ahash::AHashSet::with_capacity(keys.len());
    for k in keys {
        let raw = &b[k.0 as usize..k.1 as usize];
        let name: std::borrow::Cow<'_, [u8]> = if k.2 {
            std::borrow::Cow::Owned(decode(raw).into_bytes())
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        if !seen.insert(name) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<Node> {
        scan(s.as_bytes(), 64).unwrap_or_else(|_| panic!("refused {s:?}"))
    }
    fn bad(s: &[u8]) {
        assert!(
            scan(s, 64).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(s)
        );
    }

    #[test]
    fn accepts_valid_json() {
        for s in [
            "{}",
            "[]",
            " 1 ",
            "-0",
            "0.5e-3",
            "\"a\\u00e9\\ud83d\\ude00\\n\"",
            "[true,false,null]",
            "{\"a\":{\"b\":[1,{\"c\":\"d\"}]},\"e\":\"\"}",
            "18446744073709551615",
            "-9223372036854775808",
            "\"\u{7f}/\"",
            "\r\n\t{ \"a\" : 1 }\n",
        ] {
            ok(s);
        }
    }

    #[test]
    fn refuses_invalid_json() {
        for s in [
            &b""[..],
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"+1",
            b"nul",
            b"\"\x01\"",
            b"\"\\x\"",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\xef\xbb\xbf{}",
            b"{} x",
            b"\"\xff\"",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"1e400",
            b"1e20",
            b"-1e19",
            b"NaN",
            b"{\"a\":1,\"a\":2}",
            b"{\"a\":1,\"\\u0061\":2}",
            b"{\"\":1,\"b\":2,\"\":3}",
            b"[{\"\":1,\"\":2}]",
            b"{\"phi1.x\":1}",
            b"{\"\\u0070hi1.x\":1}",
            b"[}",
            b"{]",
        ] {
            bad(s);
        }
    }

    #[test]
    fn depth_limit() {
        assert!(scan(b"[[[1]]]", 3).is_ok());
        assert!(scan(b"[[[1]]]", 2).is_err());
        assert!(scan(b"[[[]]]", 2).is_err());
    }

    #[test]
    fn index_shape() {
        let n = ok("{\"a\":[1,\"x\"],\"b\":\"phi1.q\"}");
        assert_eq!(n.len(), 5);
        assert_eq!(n[0].next, 5);
        assert_eq!(n[1].kind, ARRAY);
        assert_eq!(n[1].next, 4);
        assert_eq!(n[4].kind, STRING);
        assert!(n[4].has(F_PREFIX));
        assert!(!n[3].has(F_PREFIX));
        assert!(n[2].has(F_INT));
    }

    #[test]
    fn duplicates_many_keys() {
        let mut s = String::from("{");
        for i in 0..40 {
            s += &format!("\"k{i}\":{i},");
        }
        s += "\"k7\":0}";
        bad(s.as_bytes());
        ok(&s.replace("\"k7\":0}", "\"k77\":0}"));
    }

    #[test]
    fn hot_containers() {
        let body = br#"{"a":{"b":[1,{"x":"y"}]},"c":[{"ssn":1}],"d":["phi1.x"],"e":{"\u0061":1}}"#;
        let n = scan_with(body, 8, |k| k == b"ssn").unwrap();
        let hot: Vec<bool> = n.iter().map(|n| n.has(F_HOT)).collect();
        let kinds: Vec<u8> = n.iter().map(|n| n.kind).collect();
        // root, a, b, 1, {x}, "y", c, {ssn}, 1, d, "phi1.x", e, 1
        assert_eq!(kinds[0], OBJECT);
        assert!(hot[0]);
        assert!(!hot[1] && !hot[2] && !hot[4]); // a, b, {x}: nothing decidable below
        assert!(hot[6] && hot[7]); // c and {ssn}
        assert!(hot[9]); // d holds the prefix
        assert!(hot[11]); // e has an escaped key
        assert!(scan(body, 8)
            .unwrap()
            .iter()
            .all(|n| n.kind > ARRAY || n.has(F_HOT)));
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            decode(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"#),
            "a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}"
        );
    }
}
