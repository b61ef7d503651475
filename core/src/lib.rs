//! phi_proxy_core: the compiled core of phi-proxy's JSON response transform.
//!
//! The pure-Python walk (proxy/transform/walk.py and friends) is the specification; this crate
//! reaches the same decisions faster, or gives up (`None`) so the Python twin decides the body.
//! Layout, one concept per module:
//!
//! * `scan`    strict JSON validation + structural index (spans, keys, subtree ends)
//! * `policy`  names table, classes and masks, path selectors as a bit-set NFA
//! * `masks`   fixed / null / keep-last masks
//! * `token`   token grammar and the TOKEN_PATTERN finder (no keys)
//! * `keys`    HKDF + AES-256-GCM / AES-256-SIV (RustCrypto) and the opened-token cache
//! * `walk`    the decisions (walk.py + reveal.py), producing edits and stats events
//! * `escape`  orjson-exact string rendering and the splice
//! * `escaped` the sound first look for escaped spellings of a token (escaped_tokens.py)
//! * `canonical` the audit trail's canonical line form, checked without building the document
//! * `audit`   the per-line checks of `phi-audit verify` over a segment (segments.py's twin)
//! * `py`      the Python bindings

#![forbid(unsafe_code)]

pub mod audit;
pub mod canonical;
pub mod escape;
pub mod escaped;
pub mod facts;
pub mod hints;
pub mod keys;
pub mod masks;
pub mod policy;
mod py;
pub mod scan;
pub mod token;
pub mod walk;

/// The body or a value in it is outside what the native core reproduces exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUp;

/// Why a walk stopped: give up (the Python twin decides), or a Python callback raised.
#[derive(Debug)]
pub enum Stop {
    GiveUp,
    Error(pyo3::PyErr),
}

/// Outcome of a native transform, independent of Python.
pub struct Transformed {
    /// None: nothing changed.
    pub out: Option<Vec<u8>>,
    pub events: Vec<(walk::Kind, String, Option<String>, Option<String>)>,
}

/// The whole transform of one body: scan, decide, splice. `Err(Stop::GiveUp)` = give up.
pub fn transform<H: walk::Host>(
    body: &[u8],
    policy: &policy::Policy,
    keys: &keys::Keys,
    route_practice: Option<&str>,
    host: &mut H,
) -> Result<Transformed, Stop> {
    let nodes = scan::scan_with(body, policy.max_depth, |k| policy.may_select(k))?;
    let text = std::str::from_utf8(body).map_err(|_| Stop::GiveUp)?;
    let mut walker = walk::Walker::new(text, &nodes, policy, keys, host, route_practice);
    walker.run()?;
    debug_assert!(
        walker.edits.windows(2).all(|w| w[0].end <= w[1].start),
        "edits out of document order"
    );
    let out = if walker.edits.is_empty() {
        None
    } else {
        let mut out = Vec::with_capacity(escape::spliced_len(body.len(), &walker.edits));
        escape::splice_into(&mut out, body, &walker.edits);
        Some(out)
    };
    let events = walker
        .events
        .iter()
        .map(|e| {
            (
                e.kind,
                walker.class_name(e.class).to_string(),
                e.practice.map(|p| walker.practices[p as usize].to_string()),
                e.record
                    .and_then(|r| walker.scalar_text(r))
                    .map(|t| t.into_owned()),
            )
        })
        .collect();
    Ok(Transformed { out, events })
}
