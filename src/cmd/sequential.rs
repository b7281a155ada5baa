//! The flags of the commands that certify fixed-n or sequentially (`certify`, `eval`,
//! `replay`, `estimate`); the plan itself, and its one default rule, are
//! `robustify_pipeline::Plan`'s.

use robustify_pipeline::PlanRequest;
use robustify_smoothing::SequenceKind;

/// Fixed-n or sequential certification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// CERTIFY with exactly n draws.
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

/// `--mode`, `--target-radius`, `--max-draws`, `--sequence`.
#[derive(clap::Args)]
pub struct SequentialArgs {
    /// `fixed` (CERTIFY, exactly n draws) or `sequential` (stop as soon as an
    /// anytime-valid confidence sequence decides). Default: sequential when
    /// --target-radius is given, fixed otherwise (the proxy's rule too).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Decide certified / not certifiable at this radius (sequential mode).
    #[arg(long)]
    pub target_radius: Option<f64>,
    /// Sequential mode: most estimation draws per image [default: --n, else 10,000].
    #[arg(long)]
    pub max_draws: Option<u64>,
    /// Sequential mode: the confidence sequence.
    #[arg(long, value_enum, default_value = "betting")]
    pub sequence: SequenceArg,
}

impl From<Mode> for robustify_pipeline::Mode {
    fn from(m: Mode) -> robustify_pipeline::Mode {
        match m {
            Mode::Fixed => robustify_pipeline::Mode::Fixed,
            Mode::Sequential => robustify_pipeline::Mode::Sequential,
        }
    }
}

impl SequentialArgs {
    /// The mode these flags ask for, by the pipeline's one rule.
    pub fn mode(&self) -> Mode {
        match robustify_pipeline::Mode::for_certify(self.mode.map(Into::into), self.target_radius) {
            robustify_pipeline::Mode::Sequential => Mode::Sequential,
            _ => Mode::Fixed,
        }
    }

    /// The plan request for σ, n0, n (fixed mode's estimation draws, sequential mode's
    /// default cap) and α.
    pub fn request(&self, sigma: f64, n0: u64, n: Option<u64>, alpha: f64) -> PlanRequest {
        PlanRequest {
            sigma,
            n0: Some(n0),
            n,
            alpha,
            mode: Some(self.mode().into()),
            target_radius: self.target_radius,
            max_draws: self.max_draws,
            sequence: self.sequence.into(),
        }
    }
}
