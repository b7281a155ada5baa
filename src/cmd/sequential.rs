//! Flags and plan shared by the commands that certify fixed-n or sequentially (`certify`,
//! `eval`).

use robustify_smoothing::{
    BaseClassifier, Certificate, CertifyParams, Image, MemoryBudget, SequenceKind,
    SequentialCertificate, SequentialParams, certify, certify_sequential,
};

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

/// How each image is certified.
pub enum Plan {
    /// CERTIFY.
    Fixed(CertifyParams),
    /// A confidence sequence.
    Sequential(SequentialParams),
}

/// Either certificate.
pub enum Outcome {
    /// From CERTIFY.
    Fixed(Certificate),
    /// From a confidence sequence.
    Sequential(SequentialCertificate),
}

impl Outcome {
    /// The certified label (`None`: abstained, or not certified at the target radius).
    pub fn label(&self) -> Option<&str> {
        match self {
            Outcome::Fixed(c) => c.label.as_deref(),
            Outcome::Sequential(c) => c.label.as_deref(),
        }
    }

    /// The certified radius.
    pub fn radius(&self) -> f64 {
        match self {
            Outcome::Fixed(c) => c.radius,
            Outcome::Sequential(c) => c.radius,
        }
    }

    /// Draws sent: n0 + n.
    pub fn queries(&self) -> u64 {
        match self {
            Outcome::Fixed(c) => c.queries,
            Outcome::Sequential(c) => c.queries,
        }
    }
}

impl SequentialArgs {
    /// The mode these flags ask for: `--mode`, else sequential when a target radius is
    /// given, else fixed — one rule for every provider, the same as the proxy's (it used
    /// to be sequential only for paid providers here).
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(if self.target_radius.is_some() {
            Mode::Sequential
        } else {
            Mode::Fixed
        })
    }

    /// The plan for σ, n0, n (fixed mode's estimation draws, sequential mode's default
    /// cap), α and the provider's batch.
    pub fn plan(
        &self,
        (sigma, n0, n, alpha): (f64, u64, Option<u64>, f64),
        batch: usize,
    ) -> anyhow::Result<Plan> {
        Ok(match self.mode() {
            Mode::Fixed => {
                let n = n.ok_or_else(|| {
                    anyhow::anyhow!("fixed mode needs --n (or use --mode sequential)")
                })?;
                Plan::Fixed(CertifyParams::new(sigma, n0, n, alpha)?.with_batch_size(batch)?)
            }
            Mode::Sequential => {
                let max = self.max_draws.or(n).unwrap_or(10_000);
                Plan::Sequential(
                    SequentialParams::new(sigma, n0, max, alpha, self.target_radius)?
                        .with_kind(self.sequence.into())
                        .with_batch_size(batch)?,
                )
            }
        })
    }
}

impl Plan {
    /// The most draws one image can take.
    pub fn max_draws(&self) -> u64 {
        match self {
            Plan::Fixed(p) => p.draws(),
            Plan::Sequential(p) => p.draws(),
        }
    }

    /// This plan with its batch cut so that a `width × height` image stays under `memory`;
    /// an error when not even one draw at a time fits.
    pub fn fitted(&self, width: u32, height: u32, memory: &MemoryBudget) -> anyhow::Result<Plan> {
        Ok(match self {
            Plan::Fixed(p) => Plan::Fixed(p.with_batch_size(memory.batch_for(
                width,
                height,
                p.batch_size(),
            )?)?),
            Plan::Sequential(p) => Plan::Sequential(p.with_batch_size(memory.batch_for(
                width,
                height,
                p.batch_size(),
            )?)?),
        })
    }

    /// Certifies `image` through `classifier`.
    pub async fn run<C: BaseClassifier>(
        &self,
        classifier: &C,
        image: &Image,
        seed: u64,
    ) -> Result<Outcome, robustify_smoothing::Error> {
        Ok(match self {
            Plan::Fixed(p) => Outcome::Fixed(certify(classifier, image, p, seed).await?),
            Plan::Sequential(p) => {
                Outcome::Sequential(certify_sequential(classifier, image, p, seed).await?)
            }
        })
    }
}
