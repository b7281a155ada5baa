//! Flags shared by the commands that certify fixed-n or sequentially.

use robustify_smoothing::SequenceKind;

/// Fixed-n or sequential certification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// CERTIFY with exactly n estimation draws.
    Fixed,
    /// Stop as soon as the confidence sequence decides.
    Sequential,
}

/// The confidence sequence of sequential mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SequenceArg {
    /// Krichevsky–Trofimov mixture martingale (betting).
    Betting,
    /// Clopper–Pearson on a geometric schedule with a union bound.
    UnionBound,
}

impl From<SequenceArg> for SequenceKind {
    fn from(s: SequenceArg) -> SequenceKind {
        match s {
            SequenceArg::Betting => SequenceKind::Betting,
            SequenceArg::UnionBound => SequenceKind::UnionBound,
        }
    }
}
