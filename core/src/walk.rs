//! The decisions: walk.py / reveal.py over the structural index, in the same order.
//!
//! Every value is decided exactly as `Walk.value` decides it (selection by path, key selector
//! or inheritance; record practice and id; tokens via the caller's header facts; legacy
//! plaintext via its grant; masked containers). Decisions become `Edit`s (spans to replace)
//! and `Event`s (the stats the Python side applies). Whatever the Python twin would answer
//! with an error, an integrity event or a behaviour we cannot reproduce exactly ends the walk
//! with `Stop::GiveUp`.
//!
//! A `remove` mask makes a value `Fate::Removed`: its container cuts it out with its
//! separator, in runs of neighbours exactly as `splice.py` does (`Cuts`), and a container left
//! with no members is itself removed from its parent. The document root is never cut: a
//! removed root scalar becomes the redacted text, an emptied root keeps its brackets.

use std::borrow::Cow;
use std::sync::Arc;

use crate::escape::{Edit, Repl};
use crate::keys::{Keys, Opened};
use crate::masks::Mask;
use crate::policy::{Condition, Literal, Op, Policy, Role, StepKind};
use crate::scan::{self, Node};
use crate::token;
use crate::{GiveUp, Stop};

/// The Python side of one call: the normalizer, the header facts and the grant question.
pub trait Host {
    /// `FieldSettings.normalize` for a key that is not plain ASCII.
    fn normalize(&mut self, name: &str) -> Result<String, Stop>;
    /// (practice, allowed) for a token header "phi1.<m>.<kid>.<class>", or None.
    fn facts(&mut self, head: &str) -> Result<Option<(String, bool)>, Stop>;
    /// May the caller see `class` values of `practice`?
    fn allows(&mut self, practice: &str, class: &str) -> Result<bool, Stop>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Decrypted,
    Masked,
    Kept,
}

/// One stats event; `record` is the node holding the record id (string or integer).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub kind: Kind,
    pub class: u32,
    pub practice: Option<u32>,
    pub record: Option<u32>,
}

/// The record practice in force: none (use the route's), unusable, or an interned practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prac {
    None,
    Unknown,
    Known(u32),
}

/// What became of a value: kept (perhaps rewritten in place) or left out of its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Removed,
}

/// The runs of removed members met so far in one container (`splice.py`'s rule): a run
/// followed by a kept member is cut from the run's first member up to that member; a run that
/// ends the container, from the end of the last kept member; a run of every member (the root
/// only: any other container is removed whole), from the first member to the last.
#[derive(Debug, Default)]
struct Cuts {
    /// Start of the run of removed members being passed over, if one is.
    run_start: Option<u32>,
    /// End of the last removed member.
    run_end: u32,
    /// End of the last kept member, if any.
    kept_end: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Facts {
    practice: u32,
    class: u32,
    allowed: bool,
}

enum Revealed {
    Plain(Arc<Opened>),
    Masked {
        class: u32,
        value: Option<Arc<Opened>>,
    },
}

pub struct Walker<'a, H: Host> {
    body: &'a str,
    nodes: &'a [Node],
    policy: &'a Policy,
    keys: &'a Keys,
    host: &'a mut H,
    route: Option<u32>,
    pub practices: Vec<Box<str>>,
    practice_ids: ahash::AHashMap<Box<str>, u32>,
    extra_classes: Vec<Box<str>>,
    extra_class_ids: ahash::AHashMap<Box<str>, u32>,
    allows_memo: ahash::AHashMap<(u32, u32), bool>,
    facts_memo: ahash::AHashMap<Box<[u8]>, Option<Facts>>,
    /// Role of each member node's key, computed once (path filters look at children early).
    roles: Vec<Role>,
    buf: Vec<u8>,
    pub events: Vec<Event>,
    pub edits: Vec<Edit>,
}

impl<'a, H: Host> Walker<'a, H> {
    pub fn new(
        body: &'a str,
        nodes: &'a [Node],
        policy: &'a Policy,
        keys: &'a Keys,
        host: &'a mut H,
        route_practice: Option<&str>,
    ) -> Self {
        let mut w = Walker {
            body,
            nodes,
            policy,
            keys,
            host,
            route: None,
            practices: Vec::new(),
            practice_ids: ahash::AHashMap::new(),
            extra_classes: Vec::new(),
            extra_class_ids: ahash::AHashMap::new(),
            allows_memo: ahash::AHashMap::new(),
            facts_memo: ahash::AHashMap::new(),
            roles: vec![Role::UNKNOWN; nodes.len()],
            buf: Vec::with_capacity(64),
            events: Vec::new(),
            edits: Vec::new(),
        };
        w.route = route_practice.map(|p| w.intern_practice(p));
        w
    }

    /// Walk the whole document (the root at depth 0, with the paths' initial states).
    pub fn run(&mut self) -> Result<(), Stop> {
        if self.nodes.is_empty() {
            return Err(Stop::GiveUp);
        }
        let policy = self.policy;
        let mut initial = policy.nfa.initial;
        for (bit, conditions) in &policy.nfa.guards {
            if !self.conditions_hold(conditions, 0)? {
                initial &= !bit; // `root_filter` not met: the path does not apply here
            }
        }
        if self.cold(0, initial, None) {
            return Ok(());
        }
        // Never Removed: the root is not cut out (see `edit` and `finish_cuts`).
        self.value(0, 0, Prac::None, None, initial, None)?;
        Ok(())
    }

    pub fn class_name(&self, class: u32) -> &str {
        let n = self.policy.class_names.len() as u32;
        if class < n {
            &self.policy.class_names[class as usize]
        } else {
            &self.extra_classes[(class - n) as usize]
        }
    }

    fn mask(&self, class: u32) -> &'a Mask {
        self.policy
            .masks
            .get(class as usize)
            .unwrap_or(&self.policy.default_mask)
    }

    /// Class id of a token's class: the policy's, or one interned for this call (a class the
    /// configuration does not know is masked with the default mask, as in Python).
    fn class_of_token(&mut self, class: &str) -> u32 {
        if let Some(id) = self.policy.class_id(class) {
            return id;
        }
        if let Some(&id) = self.extra_class_ids.get(class) {
            return id;
        }
        let id = (self.policy.class_names.len() + self.extra_classes.len()) as u32;
        self.extra_classes.push(class.into());
        self.extra_class_ids.insert(class.into(), id);
        id
    }

    fn intern_practice(&mut self, practice: &str) -> u32 {
        if let Some(&id) = self.practice_ids.get(practice) {
            return id;
        }
        let id = self.practices.len() as u32;
        self.practices.push(practice.into());
        self.practice_ids.insert(practice.into(), id);
        id
    }

    fn raw(&self, start: u32, end: u32) -> &'a str {
        &self.body[start as usize..end as usize]
    }

    /// The decoded text of a string node.
    pub fn text(&self, idx: u32) -> Cow<'a, str> {
        let n = &self.nodes[idx as usize];
        let raw = self.raw(n.start + 1, n.end - 1);
        if n.has(scan::F_ESCAPED) {
            Cow::Owned(scan::decode(raw.as_bytes()))
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// `_scalar_text`: a string without the prefix, or an integer's canonical decimal.
    pub fn scalar_text(&self, idx: u32) -> Option<Cow<'a, str>> {
        let n = &self.nodes[idx as usize];
        match n.kind {
            scan::STRING => {
                let t = self.text(idx);
                if t.contains("phi1.") {
                    None
                } else {
                    Some(t)
                }
            }
            scan::NUMBER if n.has(scan::F_INT) => {
                scan::int_value(self.raw(n.start, n.end)).map(Cow::Owned)
            }
            _ => None,
        }
    }

    fn role(&mut self, idx: u32) -> Result<Role, Stop> {
        let known = self.roles[idx as usize];
        if known.is_known() {
            return Ok(known);
        }
        let n = self.nodes[idx as usize];
        let raw = self.raw(n.key_start, n.key_end);
        let decoded: Cow<'a, str> = if n.has(scan::F_KEY_ESCAPED) {
            Cow::Owned(scan::decode(raw.as_bytes()))
        } else {
            Cow::Borrowed(raw)
        };
        let mut buf = std::mem::take(&mut self.buf);
        let ascii = self.policy.ascii_role(decoded.as_bytes(), &mut buf);
        self.buf = buf;
        let role = if let Some(role) = ascii {
            role
        } else {
            let normalized = match self.policy.memo_get(&decoded) {
                Some(n) => n,
                None => {
                    let n = self.host.normalize(&decoded)?;
                    self.policy.memo_put(&decoded, &n);
                    n.into_boxed_str()
                }
            };
            self.policy.role(normalized.as_bytes())
        };
        self.roles[idx as usize] = role;
        Ok(role)
    }

    /// True if `idx` is a container nothing below which can be decided: no path state and no
    /// inherited class reach it, and the scan found no token, escape or selectable key below.
    #[inline]
    fn cold(&self, idx: u32, states: u64, class: Option<u32>) -> bool {
        let n = &self.nodes[idx as usize];
        states == 0 && class.is_none() && n.kind <= scan::ARRAY && !n.has(scan::F_HOT)
    }

    /// Write `repl` over value `idx`. A removal is not written here but reported, for the
    /// container to cut; the root cannot be cut and gets the redacted text instead.
    fn edit(&mut self, idx: u32, repl: Repl) -> Fate {
        let repl = match repl {
            Repl::Remove(root) if idx == 0 => Repl::Json(root),
            Repl::Remove(_) => return Fate::Removed,
            other => other,
        };
        let n = &self.nodes[idx as usize];
        self.edits.push(Edit {
            start: n.start,
            end: n.end,
            repl,
        });
        Fate::Kept
    }

    /// Account for one member (starting at `start`, its key's quote or the element) whose
    /// fate is `fate`; `mark` is the edit count before the member was walked.
    fn note_fate(&mut self, cuts: &mut Cuts, child: u32, start: u32, fate: Fate, mark: usize) {
        let end = self.nodes[child as usize].end;
        match fate {
            Fate::Removed => {
                cuts.run_start.get_or_insert(start);
                cuts.run_end = end;
            }
            Fate::Kept => {
                if let Some(run_start) = cuts.run_start.take() {
                    // Before the member's own edits: edits stay in document order.
                    self.edits.insert(
                        mark,
                        Edit {
                            start: run_start,
                            end: start,
                            repl: Repl::Cut,
                        },
                    );
                }
                cuts.kept_end = Some(end);
            }
        }
    }

    /// The container `idx`'s fate once all its members are accounted for in `cuts`.
    fn finish_cuts(&mut self, idx: u32, cuts: Cuts) -> Fate {
        let Some(run_start) = cuts.run_start else {
            return Fate::Kept;
        };
        let start = match cuts.kept_end {
            Some(kept_end) => kept_end,
            None if idx == 0 => run_start,
            None => return Fate::Removed,
        };
        self.edits.push(Edit {
            start,
            end: cuts.run_end,
            repl: Repl::Cut,
        });
        Fate::Kept
    }

    fn allows(&mut self, practice: u32, class: u32) -> Result<bool, Stop> {
        if let Some(&a) = self.allows_memo.get(&(practice, class)) {
            return Ok(a);
        }
        let p = self.practices[practice as usize].clone();
        let c: Box<str> = self.class_name(class).into();
        let a = self.host.allows(&p, &c)?;
        self.allows_memo.insert((practice, class), a);
        Ok(a)
    }

    fn value(
        &mut self,
        idx: u32,
        depth: usize,
        prac: Prac,
        rec: Option<u32>,
        states: u64,
        class: Option<u32>,
    ) -> Result<Fate, Stop> {
        let n = self.nodes[idx as usize];
        match n.kind {
            scan::STRING => {
                if let Some(class) = class {
                    self.selected_string(idx, class, prac, rec)
                } else if n.has(scan::F_PREFIX) || n.has(scan::F_ESCAPED) {
                    let text = self.text(idx);
                    if text.contains("phi1.") {
                        self.unselected_string(idx, &text, rec)
                    } else {
                        Ok(Fate::Kept)
                    }
                } else {
                    Ok(Fate::Kept)
                }
            }
            scan::OBJECT => self.mapping(idx, depth + 1, prac, rec, states, class),
            scan::ARRAY => self.sequence(idx, depth + 1, prac, rec, states, class),
            scan::NULL => Ok(Fate::Kept),
            _ => match class {
                None => Ok(Fate::Kept),
                Some(class) => self.selected_scalar(idx, class, prac, rec),
            },
        }
    }

    /// A selected number or boolean: legacy plaintext.
    fn selected_scalar(
        &mut self,
        idx: u32,
        class: u32,
        prac: Prac,
        rec: Option<u32>,
    ) -> Result<Fate, Stop> {
        if self.allow_plaintext(class, prac, rec)? {
            return Ok(Fate::Kept);
        }
        self.events.push(Event {
            kind: Kind::Masked,
            class,
            practice: None,
            record: None,
        });
        let mask = self.mask(class);
        let n = self.nodes[idx as usize];
        let text: Option<&str> = if !mask.needs_value() {
            None
        } else {
            match n.kind {
                scan::TRUE => Some("true"),
                scan::FALSE => Some("false"),
                // An integer's raw text keeps the same letters/digits as orjson's spelling
                // ("-0" vs "0"); a float's may not ("8E+1" vs "80.0"): give up.
                scan::NUMBER if n.has(scan::F_INT) => Some(self.raw(n.start, n.end)),
                _ => return Err(Stop::GiveUp),
            }
        };
        let repl = mask.for_json(text)?;
        Ok(self.edit(idx, repl))
    }

    fn selected_string(
        &mut self,
        idx: u32,
        class: u32,
        prac: Prac,
        rec: Option<u32>,
    ) -> Result<Fate, Stop> {
        let text = self.text(idx);
        if text.starts_with("phi1.") {
            let revealed = self.reveal(&text, rec)?;
            let repl = self.render_json(revealed)?;
            return Ok(self.edit(idx, repl));
        }
        if self.allow_plaintext(class, prac, rec)? {
            if text.contains("phi1.") {
                return self.unselected_string(idx, &text, rec);
            }
            return Ok(Fate::Kept);
        }
        self.events.push(Event {
            kind: Kind::Masked,
            class,
            practice: None,
            record: None,
        });
        let repl = self.mask(class).for_json(Some(&text))?;
        Ok(self.edit(idx, repl))
    }

    /// Decide every token inside a string that is not selected (or kept plaintext).
    fn unselected_string(&mut self, idx: u32, text: &str, rec: Option<u32>) -> Result<Fate, Stop> {
        if token::is_whole_token(text.as_bytes()) {
            let revealed = self.reveal(text, rec)?;
            let repl = self.render_json(revealed)?;
            return Ok(self.edit(idx, repl));
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in token::find_tokens(text.as_bytes()) {
            out.push_str(&text[at..start]);
            let revealed = self.reveal(&text[start..end], rec)?;
            self.render_text(revealed, &mut out)?;
            at = end;
        }
        out.push_str(&text[at..]);
        if out.contains("phi1.") {
            return Err(Stop::GiveUp); // Python: integrity event + redacted text
        }
        Ok(self.edit(idx, Repl::Text(out)))
    }

    fn facts(&mut self, head: &str, class: &str) -> Result<Facts, Stop> {
        if let Some(f) = self.facts_memo.get(head.as_bytes()) {
            return f.ok_or(Stop::GiveUp);
        }
        let found = self.host.facts(head)?.map(|(practice, allowed)| Facts {
            practice: self.intern_practice(&practice),
            class: self.class_of_token(class),
            allowed,
        });
        self.facts_memo.insert(head.as_bytes().into(), found);
        found.ok_or(Stop::GiveUp)
    }

    /// `reveal_token`: the decision for one token, with its stats event.
    fn reveal(&mut self, tok: &str, rec: Option<u32>) -> Result<Revealed, Stop> {
        let (head, class_text) = token::parse_head(tok).ok_or(Stop::GiveUp)?;
        let facts = self.facts(head, class_text)?;
        let class = facts.class;
        let practice = Some(facts.practice);
        if !facts.allowed && !self.mask(class).needs_value() {
            self.events.push(Event {
                kind: Kind::Masked,
                class,
                practice,
                record: None,
            });
            return Ok(Revealed::Masked { class, value: None });
        }
        let opened = self.keys.open(tok).ok_or(Stop::GiveUp)?;
        // The opened class is the token's own header class (authenticated as AAD), the same
        // text `facts` was asked about; only the practice can differ (a key's owner).
        if opened.nested || *opened.practice != *self.practices[facts.practice as usize] {
            return Err(Stop::GiveUp);
        }
        if facts.allowed {
            self.events.push(Event {
                kind: Kind::Decrypted,
                class,
                practice,
                record: rec,
            });
            return Ok(Revealed::Plain(opened));
        }
        self.events.push(Event {
            kind: Kind::Masked,
            class,
            practice,
            record: None,
        });
        Ok(Revealed::Masked {
            class,
            value: Some(opened),
        })
    }

    fn render_json(&self, revealed: Revealed) -> Result<Repl, Stop> {
        Ok(match revealed {
            Revealed::Plain(o) => Repl::Opened(o),
            Revealed::Masked { class, value } => self
                .mask(class)
                .for_json(value.as_ref().map(|o| &*o.plaintext))?,
        })
    }

    fn render_text(&self, revealed: Revealed, out: &mut String) -> Result<(), Stop> {
        match revealed {
            Revealed::Plain(o) => out.push_str(&o.plaintext),
            Revealed::Masked { class, value } => self
                .mask(class)
                .for_text(value.as_ref().map(|o| &*o.plaintext), out)?,
        }
        Ok(())
    }

    /// `allow_plaintext`: may legacy plaintext of `class` show here (counted as kept if so)?
    fn allow_plaintext(&mut self, class: u32, prac: Prac, rec: Option<u32>) -> Result<bool, Stop> {
        let practice = match prac {
            Prac::Unknown => return Ok(false),
            Prac::Known(p) => p,
            Prac::None => match self.route {
                Some(p) => p,
                None => return Ok(false),
            },
        };
        if self.allows(practice, class)? {
            self.events.push(Event {
                kind: Kind::Kept,
                class,
                practice: Some(practice),
                record: rec,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// `_record_context`: the practice and record id in force inside object `idx`.
    fn record_context(
        &mut self,
        idx: u32,
        prac: Prac,
        rec: Option<u32>,
    ) -> Result<(Prac, Option<u32>), Stop> {
        let end = self.nodes[idx as usize].next;
        let mut own: Prac = Prac::None;
        let mut own_text: Option<Cow<'a, str>> = None;
        let mut best: Option<(u32, u32)> = None; // (rank, node)
        let mut child = idx + 1;
        while child < end {
            let role = self.role(child)?;
            if role.practice() {
                match self.scalar_text(child) {
                    None => own = Prac::Unknown,
                    Some(t) => match own {
                        Prac::None => {
                            own = Prac::Known(0);
                            own_text = Some(t);
                        }
                        Prac::Known(_) if own_text.as_deref() != Some(&*t) => own = Prac::Unknown,
                        _ => {}
                    },
                }
            } else if let Some(rank) = role.id_rank() {
                if best.is_none_or(|(r, _)| rank < r) && self.scalar_text(child).is_some() {
                    best = Some((rank, child));
                }
            }
            child = self.nodes[child as usize].next;
        }
        let prac = match own {
            Prac::None => prac,
            Prac::Unknown => Prac::Unknown,
            Prac::Known(_) => Prac::Known(self.intern_practice(own_text.as_deref().unwrap_or(""))),
        };
        Ok((prac, best.map(|(_, node)| node).or(rec)))
    }

    fn mapping(
        &mut self,
        idx: u32,
        depth: usize,
        prac: Prac,
        rec: Option<u32>,
        states: u64,
        inherited: Option<u32>,
    ) -> Result<Fate, Stop> {
        if depth > self.policy.max_depth {
            return Err(Stop::GiveUp); // the scan refuses this already; kept for clarity
        }
        let end = self.nodes[idx as usize].next;
        let mut context = false;
        let mut child = idx + 1;
        while child < end {
            let role = self.role(child)?;
            context |= role.practice() || role.id_rank().is_some();
            child = self.nodes[child as usize].next;
        }
        let (prac, rec) = if context {
            self.record_context(idx, prac, rec)?
        } else {
            (prac, rec)
        };
        if let Some(class) = inherited {
            if end > idx + 1 && !self.allow_plaintext(class, prac, rec)? {
                // The whole object becomes its class's mask: its keys are PHI too.
                self.events.push(Event {
                    kind: Kind::Masked,
                    class,
                    practice: None,
                    record: None,
                });
                let repl = self.mask(class).for_json(None)?;
                return Ok(self.edit(idx, repl));
            }
        }
        let mut cuts = Cuts::default();
        let mut child = idx + 1;
        while child < end {
            let role = self.role(child)?;
            let (child_states, path_class) = if states != 0 {
                self.step(states, role.name_id(), None, child)?
            } else {
                (0, None)
            };
            let class = path_class.or(role.class()).or(inherited);
            let mark = self.edits.len();
            let fate = if self.cold(child, child_states, class) {
                Fate::Kept
            } else {
                self.value(child, depth, prac, rec, child_states, class)?
            };
            // A member starts at its key's opening quote.
            let start = self.nodes[child as usize].key_start - 1;
            self.note_fate(&mut cuts, child, start, fate, mark);
            child = self.nodes[child as usize].next;
        }
        Ok(self.finish_cuts(idx, cuts))
    }

    fn sequence(
        &mut self,
        idx: u32,
        depth: usize,
        prac: Prac,
        rec: Option<u32>,
        states: u64,
        inherited: Option<u32>,
    ) -> Result<Fate, Stop> {
        if depth > self.policy.max_depth {
            return Err(Stop::GiveUp);
        }
        let end = self.nodes[idx as usize].next;
        let mut cuts = Cuts::default();
        let mut child = idx + 1;
        let mut index: i64 = 0;
        while child < end {
            let mark = self.edits.len();
            let fate = if states == 0 {
                if self.cold(child, 0, inherited) {
                    Fate::Kept
                } else {
                    self.value(child, depth, prac, rec, 0, inherited)?
                }
            } else {
                let (child_states, path_class) = self.step(states, None, Some(index), child)?;
                self.value(
                    child,
                    depth,
                    prac,
                    rec,
                    child_states,
                    path_class.or(inherited),
                )?
            };
            let start = self.nodes[child as usize].start;
            self.note_fate(&mut cuts, child, start, fate, mark);
            child = self.nodes[child as usize].next;
            index += 1;
        }
        Ok(self.finish_cuts(idx, cuts))
    }

    /// `PathMatcher.step`: the child's states, and the class of the first path ending there.
    /// `name` is the member's path name id (members), `index` the element index (arrays).
    fn step(
        &mut self,
        states: u64,
        name: Option<u32>,
        index: Option<i64>,
        child: u32,
    ) -> Result<(u64, Option<u32>), Stop> {
        let nfa = &self.policy.nfa;
        let mut hit = states & nfa.wild;
        if index.is_none() {
            if let Some(id) = name {
                hit |= states & nfa.name_states[id as usize];
            }
        }
        let mut pending = states & nfa.index_states;
        while pending != 0 {
            let s = pending.trailing_zeros();
            pending &= pending - 1;
            if let (StepKind::Index(want), Some(i)) = (&nfa.kinds[s as usize], index) {
                if *want == i {
                    hit |= 1 << s;
                }
            }
        }
        let mut pending = states & nfa.filter_states;
        while pending != 0 {
            let s = pending.trailing_zeros();
            pending &= pending - 1;
            if self.filter_holds(s as usize, child)? {
                hit |= 1 << s;
            }
        }
        let nfa = &self.policy.nfa;
        let selected = hit & nfa.last;
        let class = (selected != 0).then(|| nfa.class_of[selected.trailing_zeros() as usize]);
        Ok(((states & nfa.descendant) | ((hit & !nfa.last) << 1), class))
    }

    fn filter_holds(&mut self, state: usize, child: u32) -> Result<bool, Stop> {
        let policy = self.policy;
        let StepKind::Filter(conditions) = &policy.nfa.kinds[state] else {
            return Ok(false);
        };
        self.conditions_hold(conditions, child)
    }

    /// `all(_holds(c, child) for c in conditions)`: a filter step's test, or a root filter's.
    fn conditions_hold(&mut self, conditions: &[Condition], child: u32) -> Result<bool, Stop> {
        for c in conditions {
            if c.members.len() == 1 {
                // The common form (@.system == '…'): no intermediate node lists.
                if !self.holds_direct(c.members[0], c.op, &c.literal, child)? {
                    return Ok(false);
                }
                continue;
            }
            // nodes = members at the condition's path below the child (`_members` per name).
            let mut nodes: Vec<u32> = vec![child];
            for &name in &c.members {
                let mut next = Vec::new();
                for &n in &nodes {
                    let node = self.nodes[n as usize];
                    if node.kind != scan::OBJECT {
                        continue;
                    }
                    let mut m = n + 1;
                    while m < node.next {
                        if self.role(m)?.name_id() == Some(name) {
                            next.push(m);
                        }
                        m = self.nodes[m as usize].next;
                    }
                }
                nodes = next;
            }
            let holds = match c.op {
                Op::Exists => !nodes.is_empty(),
                Op::Eq => {
                    let mut any = false;
                    for &n in &nodes {
                        if self.same(n, &c.literal)? {
                            any = true;
                            break;
                        }
                    }
                    any
                }
                Op::Ne => {
                    let mut any = nodes.is_empty();
                    for &n in &nodes {
                        if any {
                            break;
                        }
                        if !self.same(n, &c.literal)? {
                            any = true;
                        }
                    }
                    any
                }
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `_holds` for a one-member condition: the child's members named `name`, tested in place.
    fn holds_direct(
        &mut self,
        name: u32,
        op: Op,
        literal: &Literal,
        child: u32,
    ) -> Result<bool, Stop> {
        let node = self.nodes[child as usize];
        let mut found = false;
        if node.kind == scan::OBJECT {
            let mut m = child + 1;
            while m < node.next {
                if self.role(m)?.name_id() == Some(name) {
                    found = true;
                    match op {
                        Op::Exists => return Ok(true),
                        Op::Eq if self.same(m, literal)? => return Ok(true),
                        Op::Ne if !self.same(m, literal)? => return Ok(true),
                        _ => {}
                    }
                }
                m = self.nodes[m as usize].next;
            }
        }
        // No member matched the test: exists/== fail; != holds only when there was no member.
        Ok(op == Op::Ne && !found)
    }

    /// `_same`: JSON equality of a node and a literal; numbers on either side give up.
    fn same(&self, idx: u32, literal: &Literal) -> Result<bool, Stop> {
        let n = &self.nodes[idx as usize];
        if n.kind == scan::NUMBER || *literal == Literal::Number {
            return Err(Stop::GiveUp);
        }
        Ok(match literal {
            Literal::Bool(b) => n.kind == if *b { scan::TRUE } else { scan::FALSE },
            Literal::Null => n.kind == scan::NULL,
            Literal::Str(s) => n.kind == scan::STRING && *self.text(idx) == **s,
            Literal::Number => false,
        })
    }
}

impl From<GiveUp> for Stop {
    fn from(_: GiveUp) -> Stop {
        Stop::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySpec, StepSpec};
    use crate::transform;

    /// Grants every (practice, class) in `allowed`; every kid belongs to practice "A".
    struct TestHost {
        allowed: Vec<(&'static str, &'static str)>,
        facts_calls: usize,
    }

    impl Host for TestHost {
        fn normalize(&mut self, name: &str) -> Result<String, Stop> {
            Ok(name.to_lowercase())
        }
        fn facts(&mut self, head: &str) -> Result<Option<(String, bool)>, Stop> {
            self.facts_calls += 1;
            let class = head.rsplit('.').next().unwrap_or("");
            let allowed = self.allowed.iter().any(|&(p, c)| p == "A" && c == class);
            Ok(Some(("A".into(), allowed)))
        }
        fn allows(&mut self, practice: &str, class: &str) -> Result<bool, Stop> {
            Ok(self
                .allowed
                .iter()
                .any(|&(p, c)| p == practice && c == class))
        }
    }

    fn names(n: &[&str]) -> Option<Vec<String>> {
        Some(n.iter().map(|s| s.to_string()).collect())
    }

    fn step(descendant: bool, n: Option<&[&str]>, index: Option<i64>) -> StepSpec {
        StepSpec {
            descendant,
            names: n.and_then(names),
            index,
            conditions: None,
        }
    }

    fn filter(descendant: bool, member: &str, op: &str, lit: Literal) -> StepSpec {
        StepSpec {
            descendant,
            names: None,
            index: None,
            conditions: Some(vec![(vec![member.to_string()], op.to_string(), lit)]),
        }
    }

    fn policy(paths: Vec<(Vec<StepSpec>, String)>) -> Policy {
        Policy::new(PolicySpec {
            key_classes: vec![
                ("ssn".into(), "ssn".into()),
                ("history".into(), "history".into()),
            ],
            practice_names: vec!["practiceid".into()],
            id_names: vec!["patientid".into(), "id".into()],
            paths,
            root_filters: vec![],
            masks: vec![
                ("ssn".into(), Mask::fixed("[s]")),
                ("history".into(), Mask::null("[r]")),
                ("other".into(), Mask::fixed("[o]")),
            ],
            default_mask: Mask::fixed("[redacted]"),
            max_depth: 8,
            fold_separators: true,
        })
        .unwrap()
    }

    fn run(p: &Policy, body: &str, allowed: Vec<(&'static str, &'static str)>) -> Option<String> {
        let keys = Keys::new(vec![]).unwrap();
        let mut host = TestHost {
            allowed,
            facts_calls: 0,
        };
        match transform(body.as_bytes(), p, &keys, Some("A"), &mut host) {
            Ok(t) => Some(
                t.out
                    .map_or(body.to_string(), |o| String::from_utf8(o).unwrap()),
            ),
            Err(_) => None,
        }
    }

    #[test]
    fn key_selectors_and_route_practice() {
        let p = policy(vec![]);
        let body = r#"{"SSN": "1", "x": [ {"History":{"a":1}} ], "n": 2}"#;
        assert_eq!(
            run(&p, body, vec![]).unwrap(),
            r#"{"SSN": "[s]", "x": [ {"History":null} ], "n": 2}"#
        );
        assert_eq!(
            run(&p, body, vec![("A", "ssn"), ("A", "history")]).unwrap(),
            body
        );
        // Record practice B overrides the route's A; an unusable practice masks.
        let body = r#"{"practice_id":"B","ssn":"1"}"#;
        assert_eq!(
            run(&p, body, vec![("A", "ssn")]).unwrap(),
            r#"{"practice_id":"B","ssn":"[s]"}"#
        );
        let body = r#"{"practice_id":["A"],"ssn":"1"}"#;
        assert_eq!(
            run(&p, body, vec![("A", "ssn")]).unwrap(),
            r#"{"practice_id":["A"],"ssn":"[s]"}"#
        );
        let body = r#"{"practice_id":"A","practice-id":"B","ssn":"1"}"#;
        assert!(run(&p, body, vec![("A", "ssn")]).unwrap().contains("[s]"));
    }

    #[test]
    fn fhir_filter_path() {
        let p = policy(vec![(
            vec![
                step(true, Some(&["identifier"]), None),
                filter(false, "system", "==", Literal::Str("urn:ssn".into())),
                step(false, Some(&["value"]), None),
            ],
            "other".into(),
        )]);
        let body =
            r#"{"a":{"identifier":[{"system":"urn:ssn","value":"1"},{"system":"x","value":"2"}]}}"#;
        assert_eq!(
            run(&p, body, vec![]).unwrap(),
            r#"{"a":{"identifier":[{"system":"urn:ssn","value":"[o]"},{"system":"x","value":"2"}]}}"#
        );
        // A numeric member compared: give up.
        assert!(run(&p, r#"{"identifier":[{"system":1,"value":"1"}]}"#, vec![]).is_none());
    }

    #[test]
    fn first_path_wins_and_indexes() {
        let p = policy(vec![
            (
                vec![step(false, Some(&["a"]), None), step(false, None, Some(1))],
                "ssn".into(),
            ),
            (vec![step(true, None, None)], "other".into()),
        ]);
        // $.a[1] is ssn (listed first); every other value is "other" via $..*
        assert_eq!(
            run(&p, r#"{"a":["x","y"],"b":3}"#, vec![]).unwrap(),
            r#"{"a":["[o]","[s]"],"b":"[o]"}"#
        );
    }

    #[test]
    fn not_equal_matches_scalars_and_missing_members() {
        let p = policy(vec![(
            vec![
                filter(true, "flag", "!=", Literal::Bool(true)),
                step(false, Some(&["v"]), None),
            ],
            "other".into(),
        )]);
        assert_eq!(
            run(
                &p,
                r#"[{"flag":true,"v":"1"},{"v":"2"},{"flag":"x","v":"3"}]"#,
                vec![]
            )
            .unwrap(),
            r#"[{"flag":true,"v":"1"},{"v":"[o]"},{"flag":"x","v":"[o]"}]"#
        );
    }

    #[test]
    fn unselected_strings_with_prefix_give_up_when_malformed() {
        let p = policy(vec![]);
        assert!(run(&p, r#"{"note":"see phi1.nothing"}"#, vec![]).is_none());
        assert!(run(&p, r#"{"note":"\u0070hi1.x"}"#, vec![]).is_none());
        assert_eq!(
            run(&p, r#"{"note":"phi1"}"#, vec![]).unwrap(),
            r#"{"note":"phi1"}"#
        );
    }

    /// "gone" (remove mask) and "ssn" (fixed mask) by key; "other" (remove) by `paths`.
    fn remove_policy(paths: Vec<(Vec<StepSpec>, String)>) -> Policy {
        Policy::new(PolicySpec {
            key_classes: vec![("gone".into(), "gone".into()), ("ssn".into(), "ssn".into())],
            practice_names: vec!["practiceid".into()],
            id_names: vec!["id".into()],
            paths,
            root_filters: vec![],
            masks: vec![
                ("gone".into(), Mask::remove("[r]")),
                ("ssn".into(), Mask::fixed("[s]")),
                ("other".into(), Mask::remove("[r]")),
            ],
            default_mask: Mask::fixed("[redacted]"),
            max_depth: 8,
            fold_separators: true,
        })
        .unwrap()
    }

    #[test]
    fn a_removed_member_takes_one_separator_with_it() {
        let p = remove_policy(vec![]);
        let cases = [
            (r#"{"a": 1, "gone": "x", "b": 2}"#, r#"{"a": 1, "b": 2}"#),
            (r#"{"gone": "x", "a": 1}"#, r#"{"a": 1}"#),
            (r#"{"a":1,"gone":"x"}"#, r#"{"a":1}"#),
            (
                "{\n  \"a\": 1,\n  \"gone\": \"x\",\n  \"b\": 2\n}",
                "{\n  \"a\": 1,\n  \"b\": 2\n}",
            ),
            ("{\n  \"a\": 1,\n  \"gone\": true\n}", "{\n  \"a\": 1\n}"),
        ];
        for (body, want) in cases {
            assert_eq!(run(&p, body, vec![]).unwrap(), want, "{body}");
            assert_eq!(run(&p, body, vec![("A", "gone")]).unwrap(), body);
        }
    }

    #[test]
    fn runs_of_removed_elements_leave_the_array_shorter() {
        let p = remove_policy(vec![]);
        let g = r#"{"gone":"x"}"#;
        let cases = [
            (format!("[1, {g}, {g}, 2]"), "[1, 2]"),
            (format!("[{g}, {g}, 2]"), "[2]"),
            (format!("[1, {g} , {g}]"), "[1]"),
            (format!("[1, {g}, 2, {g}, 3]"), "[1, 2, 3]"),
        ];
        for (body, want) in cases {
            assert_eq!(run(&p, &body, vec![]).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn an_emptied_container_is_removed_from_its_parent_up_to_the_root() {
        let p = remove_policy(vec![]);
        assert_eq!(
            run(&p, r#"{"a": {"b": [{"gone": 1}]}, "c": 3}"#, vec![]).unwrap(),
            r#"{"c": 3}"#
        );
        // The root is never cut: emptied, it keeps its brackets and the blanks inside them.
        assert_eq!(run(&p, r#"{ "gone": 1 }"#, vec![]).unwrap(), "{  }");
        assert_eq!(
            run(&p, r#"[{"gone": 1}, {"gone": 2}]"#, vec![]).unwrap(),
            "[]"
        );
        // Empty containers and null were not emptied by us: they stay.
        let body = r#"{"gone": {}, "x": {"gone": []}, "y": {"gone": null}}"#;
        assert_eq!(run(&p, body, vec![]).unwrap(), body);
    }

    #[test]
    fn a_selected_object_the_caller_may_not_see_is_removed_whole() {
        let p = remove_policy(vec![]);
        assert_eq!(
            run(&p, r#"{"gone": {"HIV positive": true}, "a": 1}"#, vec![]).unwrap(),
            r#"{"a": 1}"#
        );
    }

    #[test]
    fn edits_after_a_removed_run_stay_in_document_order() {
        let p = remove_policy(vec![]);
        assert_eq!(
            run(
                &p,
                r#"[{"gone":"x"}, {"ssn":"1", "n": {"ssn": "2"}}]"#,
                vec![]
            )
            .unwrap(),
            r#"[{"ssn":"[s]", "n": {"ssn": "[s]"}}]"#
        );
    }

    #[test]
    fn a_path_selected_member_is_removed() {
        let p = remove_policy(vec![(
            vec![
                step(true, Some(&["coding"]), None),
                step(false, None, None),
                step(false, Some(&["display"]), None),
            ],
            "other".into(),
        )]);
        let body = r#"{"code": {"coding": [{"code": "1", "display": "Flu"}], "text": "t"}}"#;
        assert_eq!(
            run(&p, body, vec![]).unwrap(),
            r#"{"code": {"coding": [{"code": "1"}], "text": "t"}}"#
        );
    }

    #[test]
    fn a_root_filter_decides_whether_its_path_applies_to_the_document() {
        let code = || {
            vec![(
                vec![step(false, Some(&["code"]), None)],
                "other".to_string(),
            )]
        };
        let p = remove_policy(code());
        let guarded = Policy::new(PolicySpec {
            key_classes: vec![],
            practice_names: vec![],
            id_names: vec![],
            paths: code(),
            root_filters: vec![Some(vec![(
                vec!["resourcetype".into()],
                "==".into(),
                Literal::Str("Condition".into()),
            )])],
            masks: vec![("other".into(), Mask::remove("[r]"))],
            default_mask: Mask::fixed("[redacted]"),
            max_depth: 8,
            fold_separators: true,
        })
        .unwrap();
        let condition = r#"{"resourceType": "Condition", "code": {"text": "Flu"}, "id": "1"}"#;
        let observation = r#"{"resourceType": "Observation", "code": {"text": "Weight"}}"#;
        assert_eq!(
            run(&guarded, condition, vec![]).unwrap(),
            r#"{"resourceType": "Condition", "id": "1"}"#
        );
        assert_eq!(run(&guarded, observation, vec![]).unwrap(), observation);
        assert_eq!(run(&guarded, "[1]", vec![]).unwrap(), "[1]");
        // Without the filter the path applies to every document.
        assert_eq!(
            run(&p, observation, vec![]).unwrap(),
            r#"{"resourceType": "Observation"}"#
        );
    }

    #[test]
    fn a_removed_whole_document_becomes_the_redacted_text() {
        let p = remove_policy(vec![]);
        let token = format!("phi1.r.{}.gone.{}", "0123456789abcdef", "A".repeat(40));
        assert_eq!(
            run(&p, &format!(" \"{token}\" "), vec![]).unwrap(),
            r#" "[r]" "#
        );
        // Inside a longer string nothing can be cut: the redacted text too.
        assert_eq!(
            run(&p, &format!(r#"{{"n": "see {token}"}}"#), vec![]).unwrap(),
            r#"{"n": "see [r]"}"#
        );
        // A whole token as a member's value is cut like any removed value.
        assert_eq!(
            run(&p, &format!(r#"{{"n": "{token}", "m": 1}}"#), vec![]).unwrap(),
            r#"{"m": 1}"#
        );
    }

    #[test]
    fn withheld_token_masked_without_opening() {
        // No keys at all: the token cannot be opened, but the caller may not see it and the
        // mask needs no value, so (as in Python) it is masked without being opened.
        let p = policy(vec![]);
        let token = format!("phi1.r.{}.ssn.{}", "0123456789abcdef", "A".repeat(40));
        let body = format!(r#"{{"ssn":"{token}","n":"{token}"}}"#);
        assert_eq!(
            run(&p, &body, vec![]).unwrap(),
            r#"{"ssn":"[s]","n":"[s]"}"#
        );
        assert!(run(&p, &body, vec![("A", "ssn")]).is_none()); // must open: cannot
    }
}
