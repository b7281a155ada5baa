//! The selection step: the candidate label from up to `n0` draws, stopped once settled.

use crate::counts::LabelCounts;

use super::SequentialParams;

/// The selection step: draws `0..n0` in batches, stopping as soon as the leader is
/// settled — its lead over the runner-up exceeds the selection draws not yet made, so all
/// `n0` would choose it too.
pub(super) struct Selection {
    pub(super) counts: LabelCounts,
    pub(super) used: u64,
    n0: u64,
    pub(super) batch: u64,
}

impl Selection {
    pub(super) fn new(params: &SequentialParams) -> Selection {
        Selection {
            counts: LabelCounts::new(),
            used: 0,
            n0: params.n0,
            batch: params.batch_size as u64,
        }
    }

    /// The draws to make next, or `None` when the selection is over.
    pub(super) fn next_batch(&self) -> Option<std::ops::Range<u64>> {
        let (first, second) = self.counts.top_two_counts();
        let settled = first - second > self.n0 - self.used;
        (self.used < self.n0 && !settled).then(|| self.used..self.n0.min(self.used + self.batch))
    }

    /// Counts the labels of the batch [`Selection::next_batch`] gave.
    pub(super) fn add<'a>(&mut self, labels: impl Iterator<Item = &'a str>) {
        for l in labels {
            self.counts.add(l);
            self.used += 1;
        }
    }

    /// The candidate label and the selection draws made.
    pub(super) fn finish(self) -> (Option<String>, u64) {
        (self.counts.top().map(|(l, _)| l.to_owned()), self.used)
    }
}
