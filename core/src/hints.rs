//! The no-PHI proof, compiled: can this body need the transform at all?
//!
//! `FieldPolicy.may_need_transform` (proxy/transform/policy.py) answers "no" only when a body
//! provably holds no token and no key that could normalize to a selected name. Most responses
//! carry no PHI, so this check runs on nearly every body and is worth a native pass: one SIMD
//! search for the token prefix, one pass that lowercases ASCII and drops the separators (when
//! names fold them) into a scratch buffer, one SIMD search per needle, plus the checks for
//! disguises (`\uXXXX` escapes that decode to ASCII or a surrogate, non-ASCII characters whose
//! NFKC case fold contains ASCII). The rules are the pure-Python ones, rule for rule; the
//! property tests compare the two answers on random bodies, and the transform's own tests prove
//! the answer sound on both cores.

use memchr::memmem;
use pyo3::prelude::*;

/// The body contains the token prefix `phi1.`.
pub const HAS_PREFIX: u32 = 1;
/// The body contains a NUL byte (UTF-16/32 text may hide a prefix from a byte search).
pub const HAS_NUL: u32 = 2;
/// Some key in the body may normalize to a selected name.
pub const MAY_HOLD_NAMES: u32 = 4;

const PREFIX: &[u8] = b"phi1.";

/// Byte → its ASCII lowercase, and separators → 0 (dropped) when names fold them.
const fn fold_table(drop_separators: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.to_ascii_lowercase();
        if drop_separators && (b == b'_' || b == b'-' || b == b'.' || b == b' ') {
            table[byte] = 0;
        }
        byte += 1;
    }
    table
}

static FOLD_SEPARATORS: [u8; 256] = fold_table(true);

/// The body lowercased (ASCII) and, when `fold`, without separators: what the needles are
/// searched in. A branch-free compaction: each byte is written, and the length only grows for
/// bytes that stay (a NUL is dropped too, which can only join letters: a false "maybe").
fn fold_haystack(body: &[u8], fold: bool) -> Vec<u8> {
    if !fold {
        return body.to_ascii_lowercase();
    }
    let mut out = vec![0u8; body.len() + 1];
    let mut len = 0;
    for &b in body {
        let folded = FOLD_SEPARATORS[b as usize];
        out[len] = folded;
        len += usize::from(folded != 0);
    }
    out.truncate(len);
    out
}

/// Compiled name hints of one policy (`FieldPolicy` builds it once).
pub struct Hints {
    needles: Vec<Vec<u8>>,
    fold: bool,
    always: bool,
    /// Sorted, non-overlapping inclusive ranges of non-ASCII code points whose NFKC case fold
    /// contains ASCII (computed by Python from its own Unicode tables, never by us).
    revealing: Vec<(u32, u32)>,
}

impl Hints {
    pub fn new(
        needles: Vec<Vec<u8>>,
        fold: bool,
        always: bool,
        revealing: Vec<(u32, u32)>,
    ) -> Self {
        let mut revealing = revealing;
        revealing.sort_unstable();
        Hints {
            needles,
            fold,
            always,
            revealing,
        }
    }

    fn reveals(&self, point: u32) -> bool {
        self.revealing
            .binary_search_by(|&(lo, hi)| {
                if hi < point {
                    std::cmp::Ordering::Less
                } else if lo > point {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// Any `\uXXXX` (four hex digits) decoding to ASCII, a surrogate or a revealing point.
    fn escape_reveals(&self, body: &[u8]) -> bool {
        for at in memmem::find_iter(body, b"\\u") {
            let Some(hex) = body.get(at + 2..at + 6) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(hex) else {
                continue;
            };
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(point) = u32::from_str_radix(text, 16) else {
                continue;
            };
            if point < 0x80 || (0xD800..0xE000).contains(&point) || self.reveals(point) {
                return true;
            }
        }
        false
    }

    /// Invalid UTF-8 (let the parser refuse it), or a character that normalizes to ASCII.
    fn non_ascii_reveals(&self, body: &[u8]) -> bool {
        match std::str::from_utf8(body) {
            Err(_) => true,
            Ok(text) => text
                .chars()
                .any(|c| !c.is_ascii() && self.reveals(c as u32)),
        }
    }

    /// `may_hold_selected_keys`: false only if no key can normalize to a selected name.
    pub fn may_hold_names(&self, body: &[u8]) -> bool {
        if self.always {
            return true;
        }
        if self.needles.is_empty() {
            return false;
        }
        if memchr::memchr(b'\\', body).is_some() && self.escape_reveals(body) {
            return true;
        }
        if !body.is_ascii() && self.non_ascii_reveals(body) {
            return true;
        }
        let haystack = fold_haystack(body, self.fold);
        self.needles
            .iter()
            .any(|needle| memmem::find(&haystack, needle).is_some())
    }

    /// The flags `may_need_transform` reads, in one call from Python. A body with the prefix
    /// needs the transform whatever else holds, so it returns at once with that flag alone.
    pub fn scan(&self, body: &[u8]) -> u32 {
        if memmem::find(body, PREFIX).is_some() {
            return HAS_PREFIX;
        }
        let mut flags = 0;
        if memchr::memchr(0, body).is_some() {
            flags |= HAS_NUL;
        }
        if self.may_hold_names(body) {
            flags |= MAY_HOLD_NAMES;
        }
        flags
    }
}

/// `phi_proxy_core.Hints(needles, fold_separators, always_inspect, revealing_ranges)`.
#[pyclass(frozen, module = "phi_proxy_core", name = "Hints")]
pub struct PyHints {
    inner: Hints,
}

#[pymethods]
impl PyHints {
    #[new]
    fn new(
        needles: Vec<Vec<u8>>,
        fold_separators: bool,
        always_inspect: bool,
        revealing_ranges: Vec<(u32, u32)>,
    ) -> Self {
        PyHints {
            inner: Hints::new(needles, fold_separators, always_inspect, revealing_ranges),
        }
    }

    /// Flags: 1 token prefix (alone: the rest is not computed), 2 NUL byte, 4 may hold a
    /// selected name.
    fn scan(&self, body: &[u8]) -> u32 {
        self.inner.scan(body)
    }

    /// Only the name check (`FieldPolicy.may_hold_selected_keys`).
    fn may_hold_names(&self, body: &[u8]) -> bool {
        self.inner.may_hold_names(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints() -> Hints {
        Hints::new(
            vec![b"ssn".to_vec(), b"memberid".to_vec()],
            true,
            false,
            vec![(0xFF21, 0xFF5A), (0x17F, 0x17F)],
        )
    }

    #[test]
    fn plain_ascii_names_fold_case_and_separators() {
        let h = hints();
        assert!(h.may_hold_names(br#"{"SSN": 1}"#));
        assert!(h.may_hold_names(br#"{"Member_ID": 1}"#));
        assert!(h.may_hold_names(br#"{"member-i.d": 1}"#));
        assert!(!h.may_hold_names(br#"{"name": "x"}"#));
    }

    #[test]
    fn escapes_and_revealing_characters_are_suspect() {
        let h = hints();
        assert!(h.may_hold_names(br#"{"\u0073": 1}"#));
        assert!(h.may_hold_names(br#"{"\ud800": 1}"#));
        assert!(!h.may_hold_names(br#"{"\u00e9": 1}"#));
        assert!(h.may_hold_names("{\"\u{FF53}sn\": 1}".as_bytes()));
        assert!(h.may_hold_names("{\"\u{17F}\": 1}".as_bytes()));
        assert!(!h.may_hold_names("{\"é\": 1}".as_bytes()));
        assert!(h.may_hold_names(b"{\"\xff\": 1}"));
    }

    #[test]
    fn flags_report_prefix_and_nul() {
        let h = hints();
        assert_eq!(h.scan(b"x phi1.r y"), HAS_PREFIX);
        assert_eq!(h.scan(b"a\0b"), HAS_NUL);
        assert_eq!(h.scan(b"ssn phi1."), HAS_PREFIX);
        assert_eq!(h.scan(b"ssn\0"), HAS_NUL | MAY_HOLD_NAMES);
    }

    #[test]
    fn no_needles_never_inspect_and_always_always_does() {
        assert!(!Hints::new(vec![], true, false, vec![]).may_hold_names(b"ssn"));
        assert!(Hints::new(vec![], true, true, vec![]).may_hold_names(b"x"));
    }
}
