//! Is a line exactly what `orjson.dumps(orjson.loads(line), option=OPT_SORT_KEYS)` gives back?
//!
//! The audit trail's canonical form (proxy/audit/chain.py, `canonical`). Checked in one pass
//! over the bytes, without building the document: compact (no whitespace), the members of
//! every object in strictly increasing key order (bytewise, as orjson sorts; so no duplicate
//! keys), strings spelled as orjson writes them (`\"`, `\\`, the short forms \b \f \n \r \t,
//! `\u00xx` in lowercase for the other bytes below 0x20, everything else raw, valid UTF-8),
//! integers as Python writes them (no leading zeros, no `-0`, within orjson's 64-bit range),
//! `true`, `false`, `null`.
//!
//! It answers `None` ("not vouched for") for everything else, also for canonical lines it does
//! not reproduce: a float anywhere (orjson's float spelling is not reproduced here), a key
//! with an escape in it (ordering would need decoding), nesting deeper than `MAX_DEPTH`. A
//! `None` costs only time: the caller hands the line to the Python check.

/// Deeper nesting is not vouched for (orjson itself reads up to 1024 levels).
pub const MAX_DEPTH: usize = 64;

/// One member of the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The key's bytes between the quotes (no escapes in a vouched-for key).
    pub key: (usize, usize),
    /// The value's bytes.
    pub value: (usize, usize),
    /// The member as cut out of the line: from the comma before it (or the key, for the first
    /// member) to the end of its value.
    pub cut: (usize, usize),
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, |_, _| {}),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.integer(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// An object; `member(key span, value span, cut start)` for each of its members.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut((usize, usize), (usize, usize)),
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut previous: Option<(usize, usize)> = None;
        loop {
            let key = self.string()?;
            let text = &self.s[key.0..key.1];
            if text.contains(&b'\\') {
                return None;
            }
            if let Some(prev) = previous {
                if self.s[prev.0..prev.1] >= *text {
                    return None; // unsorted, or a duplicate key
                }
            }
            previous = Some(key);
            self.expect(b':')?;
            let start = self.i;
            self.value(depth)?;
            member(key, (start, self.i));
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string in orjson's spelling; the span between its quotes.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            // Jump to the next quote or backslash; the bytes passed over must be no controls.
            let rest = &self.s[self.i..];
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[..at].iter().any(|&b| b < 0x20) {
                return None;
            }
            self.i += at;
            match rest[at] {
                b'"' => break,
                _ => {
                    let escape = *self.s.get(self.i + 1)?;
                    self.i += 2;
                    match escape {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let digits = self.s.get(self.i..self.i + 4)?;
                            let hex = |d: u8| match d {
                                b'0'..=b'9' => Some(d - b'0'),
                                b'a'..=b'f' => Some(d - b'a' + 10),
                                _ => None,
                            };
                            if digits[0] != b'0' || digits[1] != b'0' {
                                return None; // orjson writes only bytes below 0x20 this way
                            }
                            let code = (hex(digits[2])? << 4) | hex(digits[3])?;
                            if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None; // raw, or one of the short forms, in orjson
                            }
                            self.i += 4;
                        }
                        _ => return None,
                    }
                }
            }
        }
        let end = self.i;
        self.i += 1;
        Some((start, end)) // valid UTF-8: the whole line was checked (`top_members`)
    }

    /// An integer as Python writes it, within [-2**63, 2**64 - 1] (orjson reads others as floats).
    fn integer(&mut self) -> Option<()> {
        let start = self.i;
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let text = &self.s[digits..self.i];
        if text.is_empty() || (text[0] == b'0' && (text.len() > 1 || negative)) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None; // a float
        }
        integer_value(&self.s[start..self.i]).map(|_| ())
    }
}

/// The value of a vouched-for integer's bytes (None: not one, or out of orjson's range).
pub fn integer_value(text: &[u8]) -> Option<i128> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut value: i128 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(d - b'0');
    }
    let value = if negative { -value } else { value };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&value)
        .then_some(value)
}

/// The top-level members of `line` when it is a canonical JSON object (see the module
/// docstring), appended to `members` in order; None otherwise.
pub fn top_members(line: &[u8], members: &mut Vec<Member>) -> Option<()> {
    members.clear();
    // Once for the line: a UTF-8 sequence holds no ASCII byte, so each string between its
    // (ASCII) quotes is valid UTF-8 when the line is.
    std::str::from_utf8(line).ok()?;
    let mut cursor = Cursor { s: line, i: 0 };
    let mut first = true;
    cursor.object(1, |key, value| {
        let start = if first { key.0 - 1 } else { key.0 - 2 };
        first = false;
        members.push(Member {
            key,
            value,
            cut: (start, value.1),
        });
    })?;
    (cursor.i == line.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(line: &str) -> bool {
        top_members(line.as_bytes(), &mut Vec::new()).is_some()
    }

    #[test]
    fn orjson_spellings_are_vouched_for() {
        for line in [
            r#"{}"#,
            r#"{"a":1,"b":[true,false,null,-5,0,{}],"c":{"x":"y"}}"#,
            "{\"a\":\"\u{7f}\u{2028}/é\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\"}",
            r#"{"a":18446744073709551615,"b":-9223372036854775808}"#,
        ] {
            assert!(canonical(line), "{line}");
        }
    }

    #[test]
    fn other_spellings_are_not() {
        for line in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"\n\"}",
            r#"{"a\n":1}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":tru}"#,
            r#"[1]"#,
            r#"{"a":1"#,
            "",
        ] {
            assert!(!canonical(line), "{line}");
        }
        assert!(top_members(b"{\"a\":\"\xff\"}", &mut Vec::new()).is_none());
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(!canonical(&deep));
    }

    #[test]
    fn members_are_cut_with_their_comma() {
        let line = br#"{"a":1,"mac":"x","z":[2]}"#;
        let mut members = Vec::new();
        top_members(line, &mut members).unwrap();
        let spans: Vec<_> = members
            .iter()
            .map(|m| {
                (
                    &line[m.key.0..m.key.1],
                    &line[m.value.0..m.value.1],
                    &line[m.cut.0..m.cut.1],
                )
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                (&b"a"[..], &b"1"[..], &br#""a":1"#[..]),
                (b"mac", br#""x""#, br#","mac":"x""#),
                (b"z", b"[2]", br#","z":[2]"#),
            ]
        );
    }
}
