//! What a caller sees instead of a value they may not read (proxy/transform/masks.py).
//!
//! Fixed text, JSON null (text form: the redacted text), nothing (`remove`: the member is left
//! out; text form and at the document root: the redacted text), or the last N letters/digits
//! inside a template. Python's `str.isalnum` covers all of Unicode, Rust's ASCII test does not, so a
//! keep-last mask over a non-ASCII value gives up rather than risk a different answer.

use std::sync::Arc;

use crate::escape::{json_string, Repl};
use crate::GiveUp;

#[derive(Debug, Clone)]
pub enum Mask {
    Fixed {
        text: Arc<str>,
        json: Arc<[u8]>,
    },
    Null {
        redacted: Arc<str>,
    },
    Remove {
        redacted: Arc<str>,
        /// The redacted text as JSON: what a removed document root becomes.
        redacted_json: Arc<[u8]>,
    },
    KeepLast {
        keep: usize,
        before: String,
        after: String,
        min_length: usize,
        fallback: Arc<str>,
        fallback_json: Arc<[u8]>,
    },
}

impl Mask {
    pub fn fixed(text: &str) -> Mask {
        Mask::Fixed {
            text: text.into(),
            json: json_string(text).into(),
        }
    }

    pub fn null(redacted: &str) -> Mask {
        Mask::Null {
            redacted: redacted.into(),
        }
    }

    pub fn remove(redacted: &str) -> Mask {
        Mask::Remove {
            redacted: redacted.into(),
            redacted_json: json_string(redacted).into(),
        }
    }

    pub fn keep_last(
        keep: usize,
        before: &str,
        after: &str,
        min_length: usize,
        fallback: &str,
    ) -> Mask {
        Mask::KeepLast {
            keep,
            before: before.into(),
            after: after.into(),
            min_length,
            fallback: fallback.into(),
            fallback_json: json_string(fallback).into(),
        }
    }

    /// True if rendering needs the decrypted value (so a withheld token must still be opened).
    pub fn needs_value(&self) -> bool {
        matches!(self, Mask::KeepLast { .. })
    }

    /// `before + last N + after`, or None for the fallback; GiveUp on non-ASCII input.
    fn last(&self, value: Option<&str>) -> Result<Option<String>, GiveUp> {
        let Mask::KeepLast {
            keep,
            before,
            after,
            min_length,
            ..
        } = self
        else {
            return Ok(None);
        };
        let Some(value) = value else { return Ok(None) };
        if !value.is_ascii() {
            return Err(GiveUp);
        }
        let kept: Vec<u8> = value.bytes().filter(u8::is_ascii_alphanumeric).collect();
        if kept.len() < *min_length {
            return Ok(None);
        }
        let tail = &kept[kept.len().saturating_sub(*keep)..];
        let mut out = String::with_capacity(before.len() + tail.len() + after.len());
        out.push_str(before);
        out.extend(tail.iter().map(|&c| c as char));
        out.push_str(after);
        Ok(Some(out))
    }

    /// `Mask.for_json(value)`.
    pub fn for_json(&self, value: Option<&str>) -> Result<Repl, GiveUp> {
        Ok(match self {
            Mask::Fixed { json, .. } => Repl::Json(json.clone()),
            Mask::Null { .. } => Repl::Null,
            Mask::Remove { redacted_json, .. } => Repl::Remove(redacted_json.clone()),
            Mask::KeepLast { fallback_json, .. } => match self.last(value)? {
                Some(text) => Repl::Text(text),
                None => Repl::Json(fallback_json.clone()),
            },
        })
    }

    /// `Mask.for_text(value)`: inside a string (never null).
    pub fn for_text(&self, value: Option<&str>, out: &mut String) -> Result<(), GiveUp> {
        match self {
            Mask::Fixed { text, .. } => out.push_str(text),
            Mask::Null { redacted } | Mask::Remove { redacted, .. } => out.push_str(redacted),
            Mask::KeepLast { fallback, .. } => match self.last(value)? {
                Some(text) => out.push_str(&text),
                None => out.push_str(fallback),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::render;

    #[test]
    fn keep_last_like_python() {
        let m = Mask::keep_last(4, "***-**-", "", 8, "[redacted]");
        let json = |v: Option<&str>| render(&m.for_json(v).unwrap());
        assert_eq!(json(Some("123-45-6789")), b"\"***-**-6789\"");
        assert_eq!(json(Some("12-34")), b"\"[redacted]\"");
        assert_eq!(json(None), b"\"[redacted]\"");
        assert!(m.for_json(Some("é12345678")).is_err());
        let mut s = String::new();
        m.for_text(Some("ab cd ef gh"), &mut s).unwrap();
        assert_eq!(s, "***-**-efgh");
        let mut s = String::new();
        Mask::null("[r]").for_text(None, &mut s).unwrap();
        assert_eq!(s, "[r]");
        assert_eq!(
            render(&Mask::null("[r]").for_json(Some("x")).unwrap()),
            b"null"
        );
        assert_eq!(
            render(&Mask::fixed("a\"b").for_json(None).unwrap()),
            b"\"a\\\"b\""
        );
    }

    #[test]
    fn remove_is_nothing_in_json_and_the_redacted_text_in_text() {
        let m = Mask::remove("[r\"]");
        assert!(!m.needs_value());
        let Repl::Remove(root) = m.for_json(Some("x")).unwrap() else {
            panic!("remove must render as Repl::Remove");
        };
        assert_eq!(&*root, b"\"[r\\\"]\"");
        assert_eq!(render(&m.for_json(None).unwrap()), b"");
        let mut s = String::new();
        m.for_text(Some("x"), &mut s).unwrap();
        assert_eq!(s, "[r\"]");
    }
}
