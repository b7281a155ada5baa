//! Label counts that remember the order labels were first seen.

use std::collections::{BTreeMap, HashMap};

/// How often each label was returned, in order of first appearance.
///
/// The order matters: CERTIFY's selection step breaks ties in favour of the label seen
/// first, so the result does not depend on hash order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelCounts {
    entries: Vec<(String, u64)>,
    index: HashMap<String, usize>,
}

impl LabelCounts {
    /// No labels yet.
    pub fn new() -> LabelCounts {
        LabelCounts::default()
    }

    /// Counts the labels of an iterator, in order.
    pub fn from_labels<I, S>(labels: I) -> LabelCounts
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut counts = LabelCounts::new();
        for label in labels {
            counts.add(label.as_ref());
        }
        counts
    }

    /// Counts one more `label`.
    pub fn add(&mut self, label: &str) {
        match self.index.get(label) {
            Some(&i) => self.entries[i].1 += 1,
            None => {
                self.index.insert(label.to_owned(), self.entries.len());
                self.entries.push((label.to_owned(), 1));
            }
        }
    }

    /// The count of `label` (0 if never seen).
    pub fn get(&self, label: &str) -> u64 {
        self.index.get(label).map_or(0, |&i| self.entries[i].1)
    }

    /// The most frequent label and its count; ties go to the label seen first.
    pub fn top(&self) -> Option<(&str, u64)> {
        let mut best: Option<(&str, u64)> = None;
        for (label, count) in &self.entries {
            if best.is_none_or(|(_, c)| *count > c) {
                best = Some((label, *count));
            }
        }
        best
    }

    /// The two largest counts `(c1, c2)`, `c1 ≥ c2`, with 0 for a missing second label.
    pub fn top_two_counts(&self) -> (u64, u64) {
        let (mut c1, mut c2) = (0, 0);
        for &(_, c) in &self.entries {
            if c > c1 {
                c2 = c1;
                c1 = c;
            } else if c > c2 {
                c2 = c;
            }
        }
        (c1, c2)
    }

    /// Total number of labels counted.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|(_, c)| c).sum()
    }

    /// `(label, count)` in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(l, c)| (l.as_str(), *c))
    }

    /// A sorted map, for stable serialisation.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_first_seen_label() {
        let c = LabelCounts::from_labels(["b", "a", "a", "b", "c"]);
        assert_eq!(c.top(), Some(("b", 2)));
        assert_eq!(c.top_two_counts(), (2, 2));
        assert_eq!(c.total(), 5);
        assert_eq!(c.get("z"), 0);
        let c = LabelCounts::from_labels(["x", "y", "y"]);
        assert_eq!(c.top(), Some(("y", 2)));
        assert_eq!(c.top_two_counts(), (2, 1));
        assert_eq!(LabelCounts::new().top(), None);
    }
}
