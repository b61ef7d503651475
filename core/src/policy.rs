//! The compiled field policy as the walk needs it: one table from normalized key name to its
//! roles (selected class, practice key, id rank, path name), the field classes with their
//! masks, and the path selectors as one NFA over at most 64 states (a bit set per node).
//!
//! Everything here is built once from what the Python `FieldPolicy` already resolved, so both
//! sides agree on names by construction; only non-ASCII key spellings need the Python
//! normalizer (NFKC + casefold), and its answers are memoized here (bounded).

use std::sync::Mutex;

use crate::masks::Mask;

/// Characters dropped from names when `fold_separators` is on.
const SEPARATORS: &[u8] = b"_-. ";
const NORMALIZE_MEMO_LIMIT: usize = 8192;

/// What one normalized key name means to the policy, packed in 8 bytes (one per member node
/// per call): selected class, path name id, rank in `record.id_keys`, practice-key flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    class: u32,
    name_id: u16,
    id_rank: u8,
    bits: u8,
}

const NONE32: u32 = u32::MAX;
const NONE16: u16 = u16::MAX;
const NONE8: u8 = u8::MAX;
const PRACTICE: u8 = 1;
/// Set on every role handed out, so a zeroed slot means "not computed yet".
const KNOWN: u8 = 2;

impl Default for Role {
    fn default() -> Self {
        Role {
            class: NONE32,
            name_id: NONE16,
            id_rank: NONE8,
            bits: KNOWN,
        }
    }
}

impl Role {
    /// The "not computed yet" marker of a per-node role table.
    pub const UNKNOWN: Role = Role {
        class: NONE32,
        name_id: NONE16,
        id_rank: NONE8,
        bits: 0,
    };

    pub fn is_known(&self) -> bool {
        self.bits & KNOWN != 0
    }
    /// Class of the key selector naming it (first selector wins).
    pub fn class(&self) -> Option<u32> {
        (self.class != NONE32).then_some(self.class)
    }
    pub fn practice(&self) -> bool {
        self.bits & PRACTICE != 0
    }
    /// Rank in `record.id_keys` (lower wins).
    pub fn id_rank(&self) -> Option<u32> {
        (self.id_rank != NONE8).then_some(self.id_rank as u32)
    }
    /// Id of this name in the path selectors (steps and filter members).
    pub fn name_id(&self) -> Option<u32> {
        (self.name_id != NONE16).then_some(self.name_id as u32)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    /// Any number: comparing numbers gives up (Python's int/float equality is not ours).
    Number,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Exists,
    Eq,
    Ne,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub members: Vec<u32>,
    pub op: Op,
    pub literal: Literal,
}

/// One filter condition in input form: member names, operator, literal.
pub type RawCondition = (Vec<String>, String, Literal);

/// One compiled path step (input form, before it becomes NFA bits).
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub descendant: bool,
    pub names: Option<Vec<String>>,
    pub index: Option<i64>,
    pub conditions: Option<Vec<RawCondition>>,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Names,
    Index(i64),
    Filter(Vec<Condition>),
    Wild,
}

/// All path selectors as one NFA; state = global step number (config order), as in PathMatcher.
#[derive(Debug, Clone, Default)]
pub struct Nfa {
    pub kinds: Vec<StepKind>,
    pub class_of: Vec<u32>,
    pub initial: u64,
    pub last: u64,
    pub descendant: u64,
    pub wild: u64,
    pub index_states: u64,
    pub filter_states: u64,
    /// Per path name id: the Names states that accept it.
    pub name_states: Vec<u64>,
    /// Paths with a `root_filter`: their first state's bit, and what the root must meet.
    pub guards: Vec<(u64, Vec<Condition>)>,
}

/// Everything `transform_json` needs to know about the configuration.
pub struct Policy {
    names: ahash::AHashMap<Box<[u8]>, Role>,
    /// Bit n set when some table name has normalized length n (63 = 63 or longer).
    name_lengths: u64,
    /// Per normalized length (63 = 63 or longer): bit (first byte % 64) of the table's names.
    first_bytes: [u64; 64],
    /// The same two filters for the names key selectors select (classes only).
    class_lengths: u64,
    class_first_bytes: [u64; 64],
    pub class_names: Vec<Box<str>>,
    class_ids: ahash::AHashMap<Box<str>, u32>,
    pub masks: Vec<Mask>,
    pub default_mask: Mask,
    pub nfa: Nfa,
    pub max_depth: usize,
    pub fold: bool,
    normalized: Mutex<ahash::AHashMap<Box<str>, Box<str>>>,
}

pub struct PolicySpec {
    pub key_classes: Vec<(String, String)>,
    pub practice_names: Vec<String>,
    pub id_names: Vec<String>,
    pub paths: Vec<(Vec<StepSpec>, String)>,
    /// Per path (same order, may be shorter: missing = none): its `root_filter` conditions.
    pub root_filters: Vec<Option<Vec<RawCondition>>>,
    pub masks: Vec<(String, Mask)>,
    pub default_mask: Mask,
    pub max_depth: usize,
    pub fold_separators: bool,
}

#[derive(Debug)]
pub struct PolicyError(pub String);

impl Policy {
    pub fn new(spec: PolicySpec) -> Result<Policy, PolicyError> {
        let mut p = Policy {
            names: ahash::AHashMap::new(),
            name_lengths: 0,
            first_bytes: [0; 64],
            class_lengths: 0,
            class_first_bytes: [0; 64],
            class_names: Vec::new(),
            class_ids: ahash::AHashMap::new(),
            masks: Vec::new(),
            default_mask: spec.default_mask.clone(),
            nfa: Nfa::default(),
            max_depth: spec.max_depth,
            fold: spec.fold_separators,
            normalized: Mutex::new(ahash::AHashMap::new()),
        };
        for (class, mask) in &spec.masks {
            let id = p.class_id_or_add(class);
            p.masks[id as usize] = mask.clone();
        }
        for (name, class) in &spec.key_classes {
            let id = p.class_id_or_add(class);
            let role = p.role_entry(name);
            if role.class == NONE32 {
                role.class = id;
            }
            let len = name.len().min(63);
            p.class_lengths |= 1 << len;
            if let Some(&first) = name.as_bytes().first() {
                p.class_first_bytes[len] |= 1 << (first & 63);
            }
        }
        for name in &spec.practice_names {
            p.role_entry(name).bits |= PRACTICE;
        }
        if spec.id_names.len() >= NONE8 as usize {
            return Err(PolicyError("too many record.id_keys".into()));
        }
        for (rank, name) in spec.id_names.iter().enumerate() {
            let role = p.role_entry(name);
            if role.id_rank == NONE8 {
                role.id_rank = rank as u8;
            }
        }
        let total: usize = spec.paths.iter().map(|(steps, _)| steps.len()).sum();
        if total > 64 {
            return Err(PolicyError(
                "more than 64 path steps in all: not supported natively".into(),
            ));
        }
        if spec.root_filters.len() > spec.paths.len() {
            return Err(PolicyError("more root filters than paths".into()));
        }
        let mut state = 0usize;
        for (number, (steps, class)) in spec.paths.iter().enumerate() {
            if steps.is_empty() {
                return Err(PolicyError("a path must have at least one step".into()));
            }
            let class_id = p.class_id_or_add(class);
            p.nfa.initial |= 1 << state;
            if let Some(Some(root)) = spec.root_filters.get(number) {
                let conditions = p.conditions(root)?;
                p.nfa.guards.push((1 << state, conditions));
            }
            for (n, step) in steps.iter().enumerate() {
                let bit = 1u64 << state;
                if step.descendant {
                    p.nfa.descendant |= bit;
                }
                if n + 1 == steps.len() {
                    p.nfa.last |= bit;
                }
                let kind = if let Some(names) = &step.names {
                    for name in names {
                        let id = p.name_id(name);
                        p.nfa.name_states[id as usize] |= bit;
                    }
                    StepKind::Names
                } else if let Some(index) = step.index {
                    p.nfa.index_states |= bit;
                    StepKind::Index(index)
                } else if let Some(conditions) = &step.conditions {
                    p.nfa.filter_states |= bit;
                    StepKind::Filter(p.conditions(conditions)?)
                } else {
                    p.nfa.wild |= bit;
                    StepKind::Wild
                };
                p.nfa.kinds.push(kind);
                p.nfa.class_of.push(class_id);
                state += 1;
            }
        }
        Ok(p)
    }

    /// A filter's conditions, member names interned.
    fn conditions(&mut self, raw: &[RawCondition]) -> Result<Vec<Condition>, PolicyError> {
        let mut out = Vec::new();
        for (members, op, literal) in raw {
            let op = match op.as_str() {
                "exists" => Op::Exists,
                "==" => Op::Eq,
                "!=" => Op::Ne,
                other => return Err(PolicyError(format!("unknown operator {other:?}"))),
            };
            let members = members.iter().map(|m| self.name_id(m)).collect();
            out.push(Condition {
                members,
                op,
                literal: literal.clone(),
            });
        }
        Ok(out)
    }

    fn class_id_or_add(&mut self, class: &str) -> u32 {
        if let Some(&id) = self.class_ids.get(class) {
            return id;
        }
        let id = self.class_names.len() as u32;
        self.class_names.push(class.into());
        self.class_ids.insert(class.into(), id);
        self.masks.push(self.default_mask.clone());
        id
    }

    pub fn class_id(&self, class: &str) -> Option<u32> {
        self.class_ids.get(class).copied()
    }

    fn role_entry(&mut self, name: &str) -> &mut Role {
        let len = name.len().min(63);
        self.name_lengths |= 1 << len;
        if let Some(&first) = name.as_bytes().first() {
            self.first_bytes[len] |= 1 << (first & 63);
        }
        self.names.entry(name.as_bytes().into()).or_default()
    }

    fn name_id(&mut self, name: &str) -> u32 {
        // At most 64 steps, each naming few members: far below the u16 sentinel.
        let next = self.nfa.name_states.len().min(NONE16 as usize - 1) as u32;
        let role = self.role_entry(name);
        if role.name_id != NONE16 {
            return role.name_id as u32;
        }
        role.name_id = next as u16;
        self.nfa.name_states.push(0);
        next
    }

    /// The role of an already normalized name.
    #[inline]
    pub fn role(&self, normalized: &[u8]) -> Role {
        if self.name_lengths & (1 << normalized.len().min(63)) == 0 {
            return Role::default();
        }
        self.names.get(normalized).copied().unwrap_or_default()
    }

    /// (normalized length, first normalized byte, any byte >= 0x80) of a raw key, in one pass.
    #[inline]
    fn ascii_shape(&self, name: &[u8]) -> (usize, u8, bool) {
        let mut len = 0usize;
        let mut first = 0u8;
        let mut high = 0u8;
        for &c in name {
            high |= c;
            if self.fold && SEPARATORS.contains(&c) {
                continue;
            }
            if len == 0 {
                first = c.to_ascii_lowercase();
            }
            len += 1;
        }
        (len.min(63), first, high >= 0x80)
    }

    /// False only if the raw, unescaped key cannot normalize to a name a key selector selects
    /// (non-ASCII keys answer true: their normalization is Python's).
    #[inline]
    pub fn may_select(&self, raw: &[u8]) -> bool {
        let (slot, first, non_ascii) = self.ascii_shape(raw);
        non_ascii
            || (self.class_lengths & (1 << slot) != 0
                && self.class_first_bytes[slot] & (1 << (first & 63)) != 0)
    }

    /// The role of a name that is plain ASCII (None if it is not): one pass finds its
    /// normalized length and first byte, and most names are rejected by those alone, without
    /// normalizing or hashing.
    #[inline]
    pub fn ascii_role(&self, name: &[u8], buf: &mut Vec<u8>) -> Option<Role> {
        let (slot, first, non_ascii) = self.ascii_shape(name);
        if non_ascii {
            return None;
        }
        if self.name_lengths & (1 << slot) == 0 || self.first_bytes[slot] & (1 << (first & 63)) == 0
        {
            return Some(Role::default());
        }
        self.normalize_ascii(name, buf);
        Some(self.role(buf))
    }

    /// Normalize a plain ASCII name into `buf`: lower(), then drop separators if folding.
    #[inline]
    pub fn normalize_ascii(&self, name: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        if self.fold {
            buf.extend(
                name.iter()
                    .filter(|c| !SEPARATORS.contains(c))
                    .map(u8::to_ascii_lowercase),
            );
        } else {
            buf.extend(name.iter().map(u8::to_ascii_lowercase));
        }
    }

    /// A memoized non-ASCII normalization, if known.
    pub fn memo_get(&self, name: &str) -> Option<Box<str>> {
        self.normalized.lock().ok()?.get(name).cloned()
    }

    pub fn memo_put(&self, name: &str, normalized: &str) {
        if let Ok(mut memo) = self.normalized.lock() {
            if memo.len() >= NORMALIZE_MEMO_LIMIT {
                memo.clear();
            }
            memo.insert(name.into(), normalized.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn spec() -> PolicySpec {
        PolicySpec {
            key_classes: vec![
                ("ssn".into(), "ssn".into()),
                ("memberid".into(), "ins".into()),
            ],
            practice_names: vec!["practiceid".into()],
            id_names: vec!["patientid".into(), "id".into(), "id".into()],
            paths: vec![(
                vec![
                    StepSpec {
                        descendant: true,
                        names: Some(vec!["identifier".into()]),
                        index: None,
                        conditions: None,
                    },
                    StepSpec {
                        descendant: false,
                        names: None,
                        index: None,
                        conditions: Some(vec![(
                            vec!["system".into()],
                            "==".into(),
                            Literal::Str("x".into()),
                        )]),
                    },
                    StepSpec {
                        descendant: false,
                        names: Some(vec!["value".into()]),
                        index: None,
                        conditions: None,
                    },
                ],
                "ssn".into(),
            )],
            root_filters: vec![],
            masks: vec![(
                "ssn".into(),
                Mask::keep_last(4, "***-**-", "", 8, "[redacted]"),
            )],
            default_mask: Mask::fixed("[redacted]"),
            max_depth: 64,
            fold_separators: true,
        }
    }

    #[test]
    fn builds_tables() {
        let p = Policy::new(spec()).unwrap();
        let ssn = p.class_id("ssn").unwrap();
        assert_eq!(p.role(b"ssn").class(), Some(ssn));
        assert!(p.role(b"practiceid").practice());
        assert_eq!(p.role(b"id").id_rank(), Some(1));
        assert_eq!(p.role(b"nothing"), Role::default());
        assert!(p.role(b"nothing").is_known());
        assert!(!Role::UNKNOWN.is_known());
        assert!(p.role(b"system").name_id().is_some());
        assert_eq!(p.nfa.initial, 1);
        assert_eq!(p.nfa.last, 4);
        assert_eq!(p.nfa.descendant, 1);
        assert_eq!(p.nfa.filter_states, 2);
        assert!(!p.masks[p.class_id("ins").unwrap() as usize].needs_value());
        let mut buf = Vec::new();
        p.normalize_ascii(b"Social_Security-Number. X", &mut buf);
        assert_eq!(buf, b"socialsecuritynumberx");
        assert_eq!(p.ascii_role(b"S_S-N", &mut buf).unwrap().class(), Some(ssn));
        assert!(p.ascii_role(b"Practice_ID", &mut buf).unwrap().practice());
        assert_eq!(p.ascii_role(b"xyz", &mut buf), Some(Role::default()));
        assert_eq!(p.ascii_role("é".as_bytes(), &mut buf), None);
        assert_eq!(p.ascii_role(b"", &mut buf), Some(Role::default()));
        assert!(
            p.may_select(b"S_S-N") && p.may_select(b"Member_ID") && p.may_select("é".as_bytes())
        );
        assert!(!p.may_select(b"system") && !p.may_select(b"practice_id") && !p.may_select(b"x"));
    }
}
