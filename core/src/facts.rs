//! The walk's events, grouped the way `TransformStats` keeps them.
//!
//! A 100-record page yields hundreds of events; handing each to Python as a tuple and counting
//! it there cost more than the whole native walk. Grouped here, Python receives a handful of
//! counters, two practice lists and one entry per disclosed record, and adds them to its stats
//! in a few C-level updates (`TransformStats.count_core_summary`). Orders are first-seen, as
//! Python's dicts and Counters keep them, so the access line and the audit event come out the
//! same as when the pure-Python walk counts.

use ahash::AHashMap;

use crate::walk::{Event, Kind};

/// Counts and disclosures of one transform (ids are the walker's class and practice ids).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// (class, count) of values decrypted, in first-seen order.
    pub decrypted: Vec<(u32, u64)>,
    /// (class, count) of values masked (tokens withheld, plaintext, whole objects).
    pub masked: Vec<(u32, u64)>,
    /// (class, count) of legacy plaintext values kept.
    pub kept: Vec<(u32, u64)>,
    /// Practices whose tokens were withheld from this caller.
    pub withheld: Vec<u32>,
    /// Practices of every value shown (decrypted or kept).
    pub practices: Vec<u32>,
    /// (practice, record id, classes shown there): one entry per record, first-seen order.
    pub disclosures: Vec<(u32, String, Vec<u32>)>,
}

fn count(counts: &mut Vec<(u32, u64)>, class: u32) {
    match counts.iter_mut().find(|(c, _)| *c == class) {
        Some((_, n)) => *n += 1,
        None => counts.push((class, 1)),
    }
}

fn note(list: &mut Vec<u32>, practice: u32) {
    if !list.contains(&practice) {
        list.push(practice);
    }
}

/// Group `events` (walk order); `record_text` gives a record node's id text (None: no id).
pub fn summarize<'a>(
    events: &[Event],
    mut record_text: impl FnMut(u32) -> Option<std::borrow::Cow<'a, str>>,
) -> Summary {
    let mut summary = Summary::default();
    let mut records: AHashMap<(u32, String), usize> = AHashMap::new();
    let mut last: Option<(u32, Option<String>)> = None;
    for event in events {
        match event.kind {
            Kind::Masked => {
                count(&mut summary.masked, event.class);
                if let Some(practice) = event.practice {
                    note(&mut summary.withheld, practice);
                }
                continue;
            }
            Kind::Decrypted => count(&mut summary.decrypted, event.class),
            Kind::Kept => count(&mut summary.kept, event.class),
        }
        // A shown value always carries its practice (the walk only shows with one).
        let Some(practice) = event.practice else {
            continue;
        };
        note(&mut summary.practices, practice);
        let Some(node) = event.record else { continue };
        let text = match &last {
            Some((at, text)) if *at == node => text.clone(),
            _ => {
                let text = record_text(node).map(std::borrow::Cow::into_owned);
                last = Some((node, text.clone()));
                text
            }
        };
        let Some(text) = text else { continue };
        let at = *records.entry((practice, text.clone())).or_insert_with(|| {
            summary.disclosures.push((practice, text, Vec::new()));
            summary.disclosures.len() - 1
        });
        let classes = &mut summary.disclosures[at].2;
        if !classes.contains(&event.class) {
            classes.push(event.class);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Kind, class: u32, practice: Option<u32>, record: Option<u32>) -> Event {
        Event {
            kind,
            class,
            practice,
            record,
        }
    }

    #[test]
    fn groups_like_the_python_stats() {
        let events = [
            event(Kind::Decrypted, 0, Some(0), Some(10)),
            event(Kind::Decrypted, 1, Some(0), Some(10)),
            event(Kind::Masked, 2, Some(1), None),
            event(Kind::Masked, 2, None, None),
            event(Kind::Kept, 1, Some(0), Some(20)),
            event(Kind::Decrypted, 0, Some(0), Some(30)),
            event(Kind::Decrypted, 0, Some(2), None),
        ];
        let names = |node: u32| match node {
            10 | 30 => Some(std::borrow::Cow::Borrowed("r1")),
            20 => Some(std::borrow::Cow::Borrowed("r2")),
            _ => None,
        };
        let summary = summarize(&events, names);
        assert_eq!(summary.decrypted, vec![(0, 3), (1, 1)]);
        assert_eq!(summary.masked, vec![(2, 2)]);
        assert_eq!(summary.kept, vec![(1, 1)]);
        assert_eq!(summary.withheld, vec![1]);
        assert_eq!(summary.practices, vec![0, 2]);
        assert_eq!(
            summary.disclosures,
            vec![
                (0, "r1".to_string(), vec![0, 1]),
                (0, "r2".to_string(), vec![1]),
            ]
        );
    }
}
