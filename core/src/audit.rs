//! The per-line checks of `phi-audit verify` over one segment of a trail file, without Python.
//!
//! proxy/audit/segments.py (`check_segment`) is the specification and stays the oracle: this
//! module only ever *accepts* a segment, or gives up (`None`) and the Python check runs the
//! segment again and names the problem in its own words. So it never has to reproduce a
//! problem text; it must only never accept a line the Python check would refuse. To keep that
//! provable it accepts only lines of the one shape the proxy writes — a JSON object in
//! canonical form with integers only (`crate::canonical`) — and gives up on anything else (a
//! float anywhere, a `seq` or `v` that is not an integer, a first line whose `prev` is neither
//! a plain string nor absent).
//!
//! Per line, as the Python check does, in effect: JSON object with an integer `seq`; canonical
//! form; the HMAC-SHA256 (over the line with its top-level `mac` member cut out, which for a
//! canonical line is `canonical(event without mac)`); a readable format version `v`; a file
//! opens with `genesis`; `seq` follows and `prev` is the SHA-256 of the line before. Checkpoint
//! signatures are not checked here: the lines of the checkpoints whose signature the Python
//! check would verify are returned, and the caller verifies them (with `cryptography`) before
//! it trusts the result.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::canonical::{integer_value, top_members, Member};
use crate::escape::json_string;

type HmacSha256 = Hmac<Sha256>;

/// What the report's event sink would look at: only lines that might pass it are handed back.
///
/// Mirrors the early returns of `Disclosures.add` (proxy/audit/report.py): a line is skipped
/// only when its top-level `type` is not the string "request", its `subject` is not a string
/// (or not `subject`), or its `ts` is a string (or absent, read as "") outside
/// [`since`, `until`), or — with `practice` — the line spells that practice nowhere as a
/// string. Anything else — `ts` of another type, or spelled with an escape — is handed back.
/// Strings are compared in their canonical spelling, which is unique.
#[derive(Debug, Clone, Default)]
pub struct SinkFilter {
    pub subject: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `--practice`: `add` counts a disclosure only from a group whose practice, or an event
    /// whose `practices` entry, is this text; a string that is this text is spelled
    /// `json_string(practice)` in a canonical line. The caller passes it only when no other
    /// value's `str()` can be this text (not "None", "True", "False", a number, `[…`, `{…`).
    pub practice: Option<String>,
}

/// The top-level members the checks read, as byte spans of the line's values.
#[derive(Default)]
struct Fields<'a> {
    seq: Option<&'a [u8]>,
    v: Option<&'a [u8]>,
    kind: Option<&'a [u8]>,
    prev: Option<&'a [u8]>,
    mac: Option<Member>,
    sig: Option<&'a [u8]>,
    continues: Option<&'a [u8]>,
    subject: Option<&'a [u8]>,
    ts: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn of(line: &'a [u8], members: &[Member]) -> Self {
        let mut out = Fields::default();
        for m in members {
            let value = &line[m.value.0..m.value.1];
            match &line[m.key.0..m.key.1] {
                b"seq" => out.seq = Some(value),
                b"v" => out.v = Some(value),
                b"type" => out.kind = Some(value),
                b"prev" => out.prev = Some(value),
                b"mac" => out.mac = Some(*m),
                b"sig" => out.sig = Some(value),
                b"continues" => out.continues = Some(value),
                b"subject" => out.subject = Some(value),
                b"ts" => out.ts = Some(value),
                _ => {}
            }
        }
        out
    }
}

/// The filter with its strings in their canonical spelling.
struct Wanted {
    subject: Option<Vec<u8>>,
    since: Option<String>,
    until: Option<String>,
    practice: Option<Vec<u8>>,
}

impl Wanted {
    fn new(filter: &SinkFilter) -> Self {
        Wanted {
            subject: filter
                .subject
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(json_string),
            since: filter.since.clone(),
            until: filter.until.clone(),
            practice: filter
                .practice
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(json_string),
        }
    }

    fn may_want(&self, line: &[u8], fields: &Fields<'_>) -> bool {
        if fields.kind != Some(&b"\"request\""[..]) {
            return false;
        }
        match fields.subject {
            Some(s) if s.first() == Some(&b'"') => {
                if matches!(&self.subject, Some(want) if want.as_slice() != s) {
                    return false;
                }
            }
            _ => return false,
        }
        if let Some(practice) = &self.practice {
            if memchr::memmem::find(line, practice).is_none() {
                return false;
            }
        }
        let ts: &[u8] = match fields.ts {
            None => b"",
            Some(t) if t.first() == Some(&b'"') && !t.contains(&b'\\') => &t[1..t.len() - 1],
            Some(_) => return true, // another type, or an escape: let Python decide
        };
        if matches!(&self.since, Some(since) if ts < since.as_bytes()) {
            return false;
        }
        !matches!(&self.until, Some(until) if ts >= until.as_bytes())
    }
}

/// How to check a segment.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The raw HMAC key (None: no MACs checked, as with `--public-key` alone).
    pub key: Option<&'a [u8]>,
    /// A public key was given: checkpoints with a `sig` are to be verified (by the caller).
    pub check_signatures: bool,
    /// The segment starts at byte 0 of its file (its first line must be `genesis`).
    pub at_file_start: bool,
    /// Line format versions this phi-audit reads.
    pub readable: &'a [i64],
    /// None: no event sink (verify); Some: the report's filter.
    pub sink: Option<SinkFilter>,
}

/// A segment's first line, as the stitcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct First {
    pub seq: i128,
    pub prev: Option<String>,
    pub continues: bool,
}

/// An accepted segment: every line passed (signatures pending), and what `SegmentResult` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub lines: usize,
    pub checkpoints: usize,
    pub first: Option<First>,
    pub last_seq: Option<i128>,
    pub last_hash: Option<String>,
    pub unauth_head: Option<i128>,
    pub unauth_reset: bool,
    pub unauth_tail: Option<i128>,
    /// (start, end) byte spans of the checkpoints whose signature must verify, in order.
    pub signatures: Vec<(usize, usize)>,
    /// (start, end) byte spans of the lines the sink may want, in order.
    pub sink_lines: Vec<(usize, usize)>,
}

/// The lines of `data` as iterating the file gives them: split at `\n`, none after a final one.
pub fn lines(data: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |at| start + at);
        let span = (start, end);
        start = end + 1;
        Some(span)
    })
}

/// Python's `isinstance(x, int)` on a vouched-for value: integers only (`true` is refused and
/// left to the Python check, where a bool counts as an int).
fn integer(value: Option<&[u8]>) -> Option<i128> {
    integer_value(value?)
}

/// Python's truth value of a vouched-for value (`bool(event.get("continues"))`): in canonical
/// spelling each falsy JSON value has exactly one form.
fn truthy(value: Option<&[u8]>) -> bool {
    !matches!(
        value,
        None | Some(b"false" | b"null" | b"0" | b"\"\"" | b"[]" | b"{}")
    )
}

/// A string value's text when it has no escapes (then its bytes are its text).
fn plain_string(value: &[u8]) -> Option<&str> {
    if value.len() < 2 || value[0] != b'"' || value.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(&value[1..value.len() - 1]).ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A `"…"` value of 64 lowercase hex digits (what `hexdigest()` writes) as 32 bytes.
fn unhex_lower(value: &[u8]) -> Option<[u8; 32]> {
    let raw = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if raw.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Check every line of `data` (a segment: whole lines, starting after a newline or at the
/// file's start). `Some` only when every line passes every check the Python `check_segment`
/// makes (signatures excepted: see `Accepted::signatures`); None: give up, the Python check
/// decides the segment.
pub fn check_segment(data: &[u8], options: &Options<'_>) -> Option<Accepted> {
    let mac_key = match options.key {
        Some(key) => Some(HmacSha256::new_from_slice(key).ok()?),
        None => None,
    };
    let wanted = options.sink.as_ref().map(Wanted::new);
    let mut out = Accepted::default();
    let mut prev: Option<(i128, [u8; 66])> = None; // seq, and `"<hex sha-256>"` of the line
    let mut unauth: Option<i128> = None;
    let mut members = Vec::with_capacity(32);
    for (index, (start, end)) in lines(data).enumerate() {
        let raw = &data[start..end];
        top_members(raw, &mut members)?;
        let fields = Fields::of(raw, &members);
        let seq = integer(fields.seq)?;
        if let Some(mac_key) = &mac_key {
            let mac = fields.mac?;
            let tag = unhex_lower(&raw[mac.value.0..mac.value.1])?;
            // The canonical line without its top-level `mac` member is, byte for byte,
            // canonical(event without mac): what the MAC is over.
            let mut state = mac_key.clone();
            if mac.cut.0 == 1 && raw.get(mac.cut.1) == Some(&b',') {
                state.update(&raw[..1]); // `mac` first: drop the comma after it instead
                state.update(&raw[mac.cut.1 + 1..]);
            } else {
                state.update(&raw[..mac.cut.0]);
                state.update(&raw[mac.cut.1..]);
            }
            state.verify_slice(&tag).ok()?;
        }
        let version = integer(fields.v)?;
        if !options.readable.iter().any(|v| i128::from(*v) == version) {
            return None;
        }
        if index == 0 && options.at_file_start && fields.kind != Some(&b"\"genesis\""[..]) {
            return None;
        }
        if let Some((prev_seq, prev_hash)) = &prev {
            if seq != prev_seq + 1 || fields.prev != Some(&prev_hash[..]) {
                return None;
            }
        }
        if index == 0 {
            let prev_value = match fields.prev {
                None => None,
                // any other value (or an escape): the stitcher's comparison is left to Python
                Some(p) => Some(plain_string(p)?.to_string()),
            };
            out.first = Some(First {
                seq,
                prev: prev_value,
                continues: truthy(fields.continues),
            });
        }
        if fields.kind == Some(&b"\"checkpoint\""[..]) {
            out.checkpoints += 1;
            let signed = !matches!(fields.sig, None | Some(b"null"));
            if options.check_signatures && signed {
                out.signatures.push((start, end));
                out.unauth_reset = true;
                unauth = None;
            }
        } else if options.key.is_none() && unauth.is_none() {
            unauth = Some(seq);
            if !out.unauth_reset {
                out.unauth_head = Some(seq);
            }
        }
        if let Some(wanted) = &wanted {
            if wanted.may_want(raw, &fields) {
                out.sink_lines.push((start, end));
            }
        }
        let mut quoted = [b'"'; 66];
        let digest = Sha256::digest(raw);
        quoted[1..65].copy_from_slice(hex(&digest).as_bytes());
        prev = Some((seq, quoted));
        out.lines = index + 1;
    }
    if let Some((seq, quoted)) = prev {
        out.last_seq = Some(seq);
        out.last_hash = Some(String::from_utf8_lossy(&quoted[1..65]).into_owned());
    }
    out.unauth_tail = unauth;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A sealed line: `{"client":…,"mac":…,<rest>` with the MAC over the line without `mac`.
    fn seal(rest: &str, key: &[u8]) -> Vec<u8> {
        let body = format!(r#"{{"client":"10.0.0.7",{rest}"#);
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(body.as_bytes());
        let tag = hex(&mac.finalize().into_bytes());
        format!(r#"{{"client":"10.0.0.7","mac":"{tag}",{rest}"#).into_bytes()
    }

    fn trail(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = "0".repeat(64);
        for seq in 1..=n {
            let kind = if seq == 1 { "genesis" } else { "request" };
            let subject = if seq % 2 == 0 { "idp|bob" } else { "idp|alice" };
            let day = seq % 9 + 1;
            let rest = format!(
                r#""prev":"{prev}","records":[{{"field_classes":["ssn"],"practice":"a","records":["p-1\u001bé"]}}],"seq":{seq},"subject":"{subject}","ts":"2026-03-0{day}T00:00:00.000Z","type":"{kind}","v":2}}"#
            );
            let line = seal(&rest, KEY);
            prev = hex(&Sha256::digest(&line));
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
        out
    }

    fn options(sink: Option<SinkFilter>) -> Options<'static> {
        Options {
            key: Some(KEY),
            check_signatures: false,
            at_file_start: true,
            readable: &[1, 2],
            sink,
        }
    }

    fn split(data: &[u8]) -> Vec<&[u8]> {
        lines(data).map(|(s, e)| &data[s..e]).collect()
    }

    fn join(lines: &[&[u8]]) -> Vec<u8> {
        lines.iter().flat_map(|l| [*l, b"\n"].concat()).collect()
    }

    #[test]
    fn an_untouched_trail_is_accepted_with_its_links() {
        let data = trail(5);
        let got = check_segment(&data, &options(None)).expect("accepted");
        assert_eq!(got.lines, 5);
        assert_eq!(got.last_seq, Some(5));
        let first = got.first.unwrap();
        assert_eq!(
            first,
            First {
                seq: 1,
                prev: Some("0".repeat(64)),
                continues: false
            }
        );
        let last = *split(&data).last().unwrap();
        assert_eq!(got.last_hash, Some(hex(&Sha256::digest(last))));
        assert_eq!((got.unauth_head, got.unauth_tail), (None, None));
    }

    #[test]
    fn without_the_key_unauthenticated_events_are_counted_from_the_first() {
        let data = trail(3);
        let got = check_segment(
            &data,
            &Options {
                key: None,
                ..options(None)
            },
        )
        .unwrap();
        assert_eq!(
            (got.unauth_head, got.unauth_reset, got.unauth_tail),
            (Some(1), false, Some(1))
        );
    }

    #[test]
    fn any_changed_byte_gives_up() {
        let data = trail(4);
        for at in 0..data.len() {
            if data[at] == b'\n' {
                continue;
            }
            let mut bad = data.clone();
            bad[at] ^= 1;
            assert!(
                check_segment(&bad, &options(None)).is_none(),
                "byte {at} flipped"
            );
        }
    }

    #[test]
    fn a_deleted_swapped_duplicated_or_foreign_line_gives_up() {
        let data = trail(4);
        let l = split(&data);
        let opts = options(None);
        assert!(check_segment(&join(&[l[0], l[2], l[3]]), &opts).is_none());
        assert!(check_segment(&join(&[l[0], l[2], l[1]]), &opts).is_none());
        assert!(check_segment(&join(&[l[0], l[1], l[1]]), &opts).is_none());
        assert!(check_segment(&join(&[l[0], b""]), &opts).is_none());
        let other = Options {
            key: Some(b"another key"),
            ..options(None)
        };
        assert!(check_segment(&data, &other).is_none());
        let mid_file = Options {
            at_file_start: false,
            ..options(None)
        };
        assert!(check_segment(&join(&l[1..]), &mid_file).is_some());
        assert!(
            check_segment(&join(&l[1..]), &opts).is_none(),
            "a file must open with genesis"
        );
        let old = Options {
            readable: &[1],
            ..options(None)
        };
        assert!(
            check_segment(&data, &old).is_none(),
            "v=2 is not readable there"
        );
    }

    #[test]
    fn unusual_shapes_give_up() {
        let opts = Options {
            key: None,
            at_file_start: false,
            ..options(None)
        };
        for line in [
            &br#"{"seq":1,"v":2,"x":1.0}"#[..],
            br#"{"v":2,"seq":1}"#,
            br#"{"seq":1, "v":2}"#,
            br#"{"seq":1,"v":2,"x":"\/"}"#,
            br#"{"seq":true,"v":2}"#,
            br#"{"seq":1,"v":true}"#,
            br#"{"prev":1,"seq":1,"v":2}"#,
            br#"[1]"#,
        ] {
            assert!(
                check_segment(line, &opts).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(check_segment(br#"{"prev":"ab","seq":1,"v":2}"#, &opts).is_some());
    }

    #[test]
    fn checkpoints_with_a_signature_are_handed_back_for_checking() {
        let opts = Options {
            key: None,
            at_file_start: false,
            check_signatures: true,
            ..options(None)
        };
        let data = b"{\"seq\":7,\"v\":2}\n{\"seq\":8,\"sig\":\"AA==\",\"type\":\"checkpoint\",\"v\":2}\n{\"seq\":9,\"v\":2}\n";
        let l = split(data);
        let mut linked: Vec<Vec<u8>> = vec![l[0].to_vec()];
        for i in 1..l.len() {
            let prev = hex(&Sha256::digest(&linked[i - 1]));
            let text = String::from_utf8(l[i].to_vec()).unwrap();
            linked.push(
                text.replacen('{', &format!(r#"{{"prev":"{prev}","#), 1)
                    .into_bytes(),
            );
        }
        let refs: Vec<&[u8]> = linked.iter().map(Vec::as_slice).collect();
        let data = join(&refs);
        let got = check_segment(&data, &opts).expect("accepted");
        assert_eq!(got.checkpoints, 1);
        assert_eq!(got.signatures.len(), 1);
        let (s, e) = got.signatures[0];
        assert_eq!(&data[s..e], refs[1]);
        assert_eq!(
            (got.unauth_head, got.unauth_reset, got.unauth_tail),
            (Some(7), true, Some(9))
        );
    }

    #[test]
    fn the_sink_gets_only_the_lines_its_filter_may_take() {
        let data = trail(9);
        let filter = SinkFilter {
            subject: Some("idp|bob".into()),
            since: Some("2026-03-03".into()),
            until: Some("2026-03-07".into()),
            practice: None,
        };
        let got = check_segment(&data, &options(Some(filter))).unwrap();
        let mut members = Vec::new();
        let seqs: Vec<i128> = got
            .sink_lines
            .iter()
            .map(|(s, e)| {
                let line = &data[*s..*e];
                top_members(line, &mut members).unwrap();
                integer(Fields::of(line, &members).seq).unwrap()
            })
            .collect();
        // even seqs are bob's; the day is seq % 9 + 1, so days 3..6 are seqs 2..5
        assert_eq!(seqs, vec![2, 4]);
        let everyone = check_segment(&data, &options(Some(SinkFilter::default()))).unwrap();
        assert_eq!(
            everyone.sink_lines.len(),
            8,
            "every request event, not the genesis"
        );
        for (practice, lines) in [("a", 8), ("b", 0), ("p-1", 0)] {
            let filter = SinkFilter {
                practice: Some(practice.into()),
                ..SinkFilter::default()
            };
            let got = check_segment(&data, &options(Some(filter))).unwrap();
            assert_eq!(got.sink_lines.len(), lines, "practice {practice}");
        }
    }
}
