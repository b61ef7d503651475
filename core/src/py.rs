//! Python bindings: `Keys`, `Policy`, `transform_json` and `ABI` (the API the proxy's glue
//! is written against; see tests/native/test_native_parity.py for a reference glue).
//!
//! No decision is made here: arguments are converted once (policy, keys) or per call (the
//! callbacks), and results turned into bytes and event tuples.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

use crate::escape;
use crate::keys;
use crate::masks::Mask;
use crate::policy::{self, Literal, PolicySpec, StepSpec};
use crate::scan;
use crate::walk::{Host, Kind, Walker};
use crate::Stop;

/// Decrypting keys of one keyring snapshot (ACTIVE / DECRYPT_ONLY only).
#[pyclass(frozen, module = "phi_proxy_core", name = "Keys")]
pub struct PyKeys {
    inner: keys::Keys,
}

#[pymethods]
impl PyKeys {
    #[new]
    fn new(entries: Vec<(String, String, Vec<u8>)>) -> PyResult<Self> {
        keys::Keys::new(entries)
            .map(|inner| PyKeys { inner })
            .map_err(|e| PyValueError::new_err(e.0))
    }

    /// (practice, field_class, plaintext); ValueError (no detail) whenever it cannot open.
    fn open(&self, token: &Bound<'_, PyAny>) -> PyResult<(String, String, String)> {
        let Ok(token) = token.cast::<PyString>() else {
            return Err(PyValueError::new_err(()));
        };
        let Ok(text) = token.to_str() else {
            return Err(PyValueError::new_err(()));
        };
        // The class is the token's own (authenticated) header class.
        let opened = self.inner.open(text);
        let class = crate::token::parse_header(text).map(|p| p.class);
        match (opened, class) {
            (Some(o), Some(class)) => Ok((
                o.practice.to_string(),
                class.to_string(),
                o.plaintext.clone(),
            )),
            _ => Err(PyValueError::new_err(())),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Tokens remembered by the opened-token cache (for metrics; never what they hold).
    #[getter]
    fn cached(&self) -> usize {
        self.inner.cached()
    }

    fn __repr__(&self) -> String {
        format!("<phi_proxy_core.Keys keys={} [secure]>", self.inner.len())
    }
}

/// The compiled field policy plus its name normalizer.
#[pyclass(frozen, module = "phi_proxy_core", name = "Policy")]
pub struct PyPolicy {
    inner: policy::Policy,
    normalize: Py<PyAny>,
}

fn mask_of(t: &Bound<'_, PyAny>) -> PyResult<Mask> {
    let t = t
        .cast::<PyTuple>()
        .map_err(|_| PyValueError::new_err("a mask is a tuple"))?;
    let kind: String = t.get_item(0)?.extract()?;
    match kind.as_str() {
        "fixed" => Ok(Mask::fixed(&t.get_item(1)?.extract::<String>()?)),
        "null" => Ok(Mask::null(&t.get_item(1)?.extract::<String>()?)),
        "remove" => Ok(Mask::remove(&t.get_item(1)?.extract::<String>()?)),
        "keep_last" => {
            let keep: usize = t.get_item(1)?.extract()?;
            if keep == 0 {
                return Err(PyValueError::new_err("keep_last must be at least 1"));
            }
            Ok(Mask::keep_last(
                keep,
                &t.get_item(2)?.extract::<String>()?,
                &t.get_item(3)?.extract::<String>()?,
                t.get_item(4)?.extract()?,
                &t.get_item(5)?.extract::<String>()?,
            ))
        }
        other => Err(PyValueError::new_err(format!(
            "unknown mask kind {other:?}"
        ))),
    }
}

fn literal_of(v: &Bound<'_, PyAny>) -> PyResult<Literal> {
    if v.is_none() {
        Ok(Literal::Null)
    } else if let Ok(b) = v.cast::<PyBool>() {
        Ok(Literal::Bool(b.is_true()))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(Literal::Str(s.to_str()?.to_string()))
    } else if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        Ok(Literal::Number)
    } else {
        Err(PyValueError::new_err(
            "a filter literal is str, int, float, bool or None",
        ))
    }
}

type RawCondition<'py> = (Vec<String>, String, Bound<'py, PyAny>);
type RawStep<'py> = (
    bool,
    Option<Bound<'py, PyAny>>,
    Option<i64>,
    Option<Vec<RawCondition<'py>>>,
);

/// A filter's conditions with their literals converted.
fn conditions_of(raw: Vec<RawCondition<'_>>) -> PyResult<Vec<(Vec<String>, String, Literal)>> {
    raw.into_iter()
        .map(|(members, op, literal)| Ok((members, op, literal_of(&literal)?)))
        .collect()
}

/// Strings from any iterable of str (a list, tuple, set or frozenset), but not from a str.
fn strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a collection of str, got a str"
        )));
    }
    obj.try_iter()?
        .map(|item| item?.extract::<String>())
        .collect()
}

#[pymethods]
impl PyPolicy {
    #[new]
    #[pyo3(signature = (
        key_classes, practice_names, id_names, paths, masks, default_mask, max_depth,
        fold_separators, normalize, root_filters = Vec::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        key_classes: &Bound<'_, PyDict>,
        practice_names: &Bound<'_, PyAny>,
        id_names: &Bound<'_, PyAny>,
        paths: Vec<(Vec<RawStep<'_>>, String)>,
        masks: &Bound<'_, PyDict>,
        default_mask: &Bound<'_, PyAny>,
        max_depth: usize,
        fold_separators: bool,
        normalize: Py<PyAny>,
        root_filters: Vec<Option<Vec<RawCondition<'_>>>>,
    ) -> PyResult<Self> {
        if id_names.is_instance_of::<PySet>() || id_names.is_instance_of::<PyFrozenSet>() {
            return Err(PyTypeError::new_err(
                "id_names: expected an ordered sequence (rank order)",
            ));
        }
        let practice_names = strings(practice_names, "practice_names")?;
        let id_names = strings(id_names, "id_names")?;
        let mut kc = Vec::new();
        for (k, v) in key_classes.iter() {
            kc.push((k.extract::<String>()?, v.extract::<String>()?));
        }
        let mut ms = Vec::new();
        for (k, v) in masks.iter() {
            ms.push((k.extract::<String>()?, mask_of(&v)?));
        }
        let mut ps = Vec::new();
        for (steps, class) in paths {
            let mut out = Vec::new();
            for (descendant, names, index, conditions) in steps {
                let conditions = conditions.map(conditions_of).transpose()?;
                let names = match names {
                    Some(n) if !n.is_none() => Some(strings(&n, "step names")?),
                    _ => None,
                };
                out.push(StepSpec {
                    descendant,
                    names,
                    index,
                    conditions,
                });
            }
            ps.push((out, class));
        }
        let root_filters = root_filters
            .into_iter()
            .map(|f| f.map(conditions_of).transpose())
            .collect::<PyResult<_>>()?;
        let spec = PolicySpec {
            key_classes: kc,
            practice_names,
            id_names,
            paths: ps,
            root_filters,
            masks: ms,
            default_mask: mask_of(default_mask)?,
            max_depth,
            fold_separators,
        };
        let inner = policy::Policy::new(spec).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PyPolicy { inner, normalize })
    }

    fn __repr__(&self) -> String {
        format!(
            "<phi_proxy_core.Policy classes={} path_steps={}>",
            self.inner.class_names.len(),
            self.inner.nfa.kinds.len()
        )
    }
}

struct PyHost<'a, 'py> {
    normalize: &'a Bound<'py, PyAny>,
    facts: &'a Bound<'py, PyAny>,
    allows: &'a Bound<'py, PyAny>,
}

impl Host for PyHost<'_, '_> {
    fn normalize(&mut self, name: &str) -> Result<String, Stop> {
        self.normalize
            .call1((name,))
            .and_then(|v| v.extract::<String>())
            .map_err(Stop::Error)
    }

    fn facts(&mut self, head: &str) -> Result<Option<(String, bool)>, Stop> {
        let v = self.facts.call1((head,)).map_err(Stop::Error)?;
        if v.is_none() {
            return Ok(None);
        }
        let t = v.cast::<PyTuple>().map_err(|e| Stop::Error(e.into()))?;
        let practice: String = t
            .get_item(0)
            .and_then(|p| p.extract())
            .map_err(Stop::Error)?;
        let allowed = t
            .get_item(1)
            .and_then(|a| a.is_truthy())
            .map_err(Stop::Error)?;
        Ok(Some((practice, allowed)))
    }

    fn allows(&mut self, practice: &str, class: &str) -> Result<bool, Stop> {
        self.allows
            .call1((practice, class))
            .and_then(|v| v.is_truthy())
            .map_err(Stop::Error)
    }
}

/// Bodies at least this large are scanned without holding the GIL.
const DETACH_BYTES: usize = 64 * 1024;

/// (kind, class, practice, record node): equal keys make equal event tuples.
type EventKey = (u8, u32, Option<u32>, Option<u32>);

/// Decide one JSON body; None = give up (run the Python transform), else (out, events), or
/// with `grouped`, (out, summary): the events grouped as `TransformStats` keeps them.
#[pyfunction]
#[pyo3(signature = (body, policy, keys, route_practice, facts, allows, grouped = false))]
#[allow(clippy::too_many_arguments)]
fn transform_json<'py>(
    py: Python<'py>,
    body: &[u8],
    policy: &Bound<'py, PyPolicy>,
    keys: &Bound<'py, PyKeys>,
    route_practice: Option<&str>,
    facts: &Bound<'py, PyAny>,
    allows: &Bound<'py, PyAny>,
    grouped: bool,
) -> PyResult<Py<PyAny>> {
    let pol = policy.get();
    let ks = keys.get();
    let normalize = pol.normalize.bind(py);
    let mut host = PyHost {
        normalize,
        facts,
        allows,
    };
    let inner = &pol.inner;
    let scan = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scan::scan_with(body, inner.max_depth, |k| inner.may_select(k))
        }))
    };
    // The scan touches no Python object: for large bodies, let other threads (the audit
    // writer, for one) run meanwhile. Small bodies are not worth the GIL round trip.
    let scanned = if body.len() >= DETACH_BYTES {
        py.detach(scan)
    } else {
        scan()
    };
    let nodes = match scanned {
        Ok(Ok(n)) => n,
        _ => return Ok(py.None()),
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(py.None());
    };
    let mut walker = Walker::new(
        text,
        &nodes,
        &pol.inner,
        &ks.inner,
        &mut host,
        route_practice,
    );
    // A panic would be a bug here; the safe answer to a bug is to give up (the Python twin
    // decides the body), never to fail the request or return a half-decided body.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| walker.run()));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(Stop::GiveUp)) | Err(_) => return Ok(py.None()),
        Ok(Err(Stop::Error(e))) => return Err(e),
    }
    let out: Py<PyAny> = if walker.edits.is_empty() {
        py.None()
    } else {
        let mut buf = Vec::with_capacity(escape::spliced_len(body.len(), &walker.edits));
        escape::splice_into(&mut buf, body, &walker.edits);
        PyBytes::new(py, &buf).into_any().unbind()
    };
    if grouped {
        let summary = summary_object(py, &walker)?;
        return Ok(PyTuple::new(py, [out.into_bound(py), summary])?
            .into_any()
            .unbind());
    }
    // Python strings built once per class / practice, and once per run of one record.
    let kinds = [
        PyString::intern(py, "decrypted"),
        PyString::intern(py, "masked"),
        PyString::intern(py, "kept"),
    ];
    let mut classes: Vec<Option<Bound<'py, PyString>>> = Vec::new();
    let mut practices: Vec<Option<Bound<'py, PyString>>> = vec![None; walker.practices.len()];
    let mut last_record: Option<(u32, Bound<'py, PyAny>)> = None;
    // Equal events share one (immutable) tuple: a listing masked for a caller without a grant
    // repeats the same few events per record, and fewer allocations mean fewer GC passes.
    let mut shared: ahash::AHashMap<EventKey, Bound<'py, PyTuple>> = ahash::AHashMap::new();
    let none = py.None().into_bound(py);
    let mut events = Vec::with_capacity(walker.events.len());
    for e in &walker.events {
        let key = (e.kind as u8, e.class, e.practice, e.record);
        if let Some(t) = shared.get(&key) {
            events.push(t.clone());
            continue;
        }
        let kind = match e.kind {
            Kind::Decrypted => &kinds[0],
            Kind::Masked => &kinds[1],
            Kind::Kept => &kinds[2],
        };
        let c = e.class as usize;
        if classes.len() <= c {
            classes.resize(c + 1, None);
        }
        let class = classes[c]
            .get_or_insert_with(|| PyString::new(py, walker.class_name(e.class)))
            .clone();
        let practice = match e.practice {
            None => none.clone(),
            Some(p) => practices[p as usize]
                .get_or_insert_with(|| PyString::new(py, &walker.practices[p as usize]))
                .clone()
                .into_any(),
        };
        let record = match e.record {
            None => none.clone(),
            Some(r) => match &last_record {
                Some((node, obj)) if *node == r => obj.clone(),
                _ => {
                    let obj = match walker.scalar_text(r) {
                        Some(t) => PyString::new(py, &t).into_any(),
                        None => none.clone(),
                    };
                    last_record = Some((r, obj.clone()));
                    obj
                }
            },
        };
        let tuple = PyTuple::new(
            py,
            [kind.clone().into_any(), class.into_any(), practice, record],
        )?;
        shared.insert(key, tuple.clone());
        events.push(tuple);
    }
    let events = PyList::new(py, events)?;
    Ok(PyTuple::new(py, [out.into_bound(py), events.into_any()])?
        .into_any()
        .unbind())
}

/// `facts::Summary` as Python objects: (decrypted, masked, kept) dicts class → count,
/// (withheld, practices) lists, and {(practice, record id): {classes}}.
fn summary_object<'py, H: crate::walk::Host>(
    py: Python<'py>,
    walker: &Walker<'_, H>,
) -> PyResult<Bound<'py, PyAny>> {
    let summary = crate::facts::summarize(&walker.events, |node| walker.scalar_text(node));
    let counts = |list: &[(u32, u64)]| -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (class, n) in list {
            dict.set_item(walker.class_name(*class), n)?;
        }
        Ok(dict)
    };
    let practice = |p: &u32| &*walker.practices[*p as usize];
    // {(practice, record id): {classes}}, first-seen order: the shape of
    // `TransformStats.disclosures`, so Python adds it with one dict update.
    let disclosures = PyDict::new(py);
    for (p, record, classes) in &summary.disclosures {
        let names = pyo3::types::PySet::new(py, classes.iter().map(|c| walker.class_name(*c)))?;
        disclosures.set_item((practice(p), record.as_str()), names)?;
    }
    let withheld: Vec<&str> = summary.withheld.iter().map(practice).collect();
    let practices: Vec<&str> = summary.practices.iter().map(practice).collect();
    Ok(PyTuple::new(
        py,
        [
            counts(&summary.decrypted)?.into_any(),
            counts(&summary.masked)?.into_any(),
            counts(&summary.kept)?.into_any(),
            PyList::new(py, withheld)?.into_any(),
            PyList::new(py, practices)?.into_any(),
            disclosures.into_any(),
        ],
    )?
    .into_any())
}

/// `phi_proxy_core.may_hold_escaped_token(body, *, json)`: the sound first look of
/// proxy/transform/escaped_tokens.py (False: the precise check would find nothing).
#[pyfunction]
#[pyo3(signature = (body, *, json))]
fn may_hold_escaped_token(body: &[u8], json: bool) -> bool {
    crate::escaped::may_hold_escaped_token(body, json)
}

/// `phi_proxy_core.audit_check_segment(data, key, *, check_signatures, at_file_start,
/// readable, sink)`: proxy/audit/segments.py's `check_segment` over one segment's bytes, or
/// None (give up: the Python check decides). Accepted: (lines, checkpoints, first, last_seq,
/// last_hash, unauth_head, unauth_reset, unauth_tail, signature spans, sink spans) — `first`
/// is (seq, prev, continues) or None; spans are flat [start, end, ...] lists of lines to
/// verify the signature of, and of lines the report's sink may take.
#[pyfunction]
#[pyo3(signature = (data, key, *, check_signatures, at_file_start, readable, sink))]
#[allow(clippy::type_complexity)]
fn audit_check_segment<'py>(
    py: Python<'py>,
    data: &[u8],
    key: Option<&[u8]>,
    check_signatures: bool,
    at_file_start: bool,
    readable: Vec<i64>,
    sink: Option<(
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    )>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let options = crate::audit::Options {
        key,
        check_signatures,
        at_file_start,
        readable: &readable,
        sink: sink.map(
            |(subject, since, until, practice)| crate::audit::SinkFilter {
                subject,
                since,
                until,
                practice,
            },
        ),
    };
    // Touches no Python object: the other worker (or a thread) runs meanwhile. A panic (a bug)
    // is a give-up too: the Python check then decides the segment.
    let check = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::audit::check_segment(data, &options)
        }))
    };
    let Ok(Some(got)) = py.detach(check) else {
        return Ok(None);
    };
    let first = got
        .first
        .map(|f| (f.seq, f.prev, f.continues).into_pyobject(py))
        .transpose()?;
    let flat = |spans: &[(usize, usize)]| -> Vec<usize> {
        spans.iter().flat_map(|(s, e)| [*s, *e]).collect()
    };
    Ok(Some(
        (
            got.lines,
            got.checkpoints,
            first,
            got.last_seq,
            got.last_hash,
            got.unauth_head,
            got.unauth_reset,
            got.unauth_tail,
            flat(&got.signatures),
            flat(&got.sink_lines),
        )
            .into_pyobject(py)?,
    ))
}

#[pymodule]
fn phi_proxy_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ABI", 1)?;
    m.add_class::<PyKeys>()?;
    m.add_class::<PyPolicy>()?;
    m.add_class::<crate::hints::PyHints>()?;
    m.add_function(wrap_pyfunction!(transform_json, m)?)?;
    m.add_function(wrap_pyfunction!(may_hold_escaped_token, m)?)?;
    m.add_function(wrap_pyfunction!(audit_check_segment, m)?)?;
    Ok(())
}
