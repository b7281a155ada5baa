//! The confidence sequences: the Krichevsky–Trofimov betting martingale and the
//! union-bound Clopper–Pearson schedule, fed draw by draw.

use std::f64::consts::PI;

use statrs::function::beta::{beta_reg, ln_beta};

use super::SequenceKind;
use crate::Alpha;
use crate::stats::{clopper_pearson_lower, clopper_pearson_upper};

/// log M_n(m) of the KT mixture for `s` agreeing draws of `n`.
pub(super) fn kt_log_wealth(s: u64, n: u64, m: f64) -> f64 {
    let (s, f) = (s as f64, (n - s) as f64);
    let ln_mix = ln_beta(0.5 + s, 0.5 + f) - ln_beta(0.5, 0.5);
    let ln_null =
        if s > 0.0 { s * m.ln() } else { 0.0 } + if f > 0.0 { f * (1.0 - m).ln() } else { 0.0 };
    ln_mix - ln_null
}

/// α_k of the union-bound schedule.
pub(super) fn union_alpha(alpha: f64, k: u64) -> f64 {
    6.0 * alpha / (PI * PI * ((k + 1) * (k + 1)) as f64)
}

/// Check times of the union-bound schedule: ⌈10 · 1.25^k⌉, strictly increasing.
pub(super) fn schedule() -> impl Iterator<Item = u64> {
    let mut last = 0u64;
    (0u32..).map(move |k| {
        let t = (10.0 * 1.25f64.powi(k as i32)).ceil() as u64;
        last = t.max(last + 1);
        last
    })
}

/// P(Bin(n, p) ≥ s) for s ≥ 1: the regularized incomplete beta I_p(s, n − s + 1).
pub(super) fn upper_tail(s: u64, n: u64, p: f64) -> f64 {
    if s == 0 {
        return 1.0;
    }
    beta_reg(s as f64, (n - s + 1) as f64, p)
}

/// P(Bin(n, p) ≤ s).
pub(super) fn lower_tail(s: u64, n: u64, p: f64) -> f64 {
    if s >= n {
        return 1.0;
    }
    1.0 - beta_reg((s + 1) as f64, (n - s) as f64, p)
}

/// A confidence sequence for the candidate's probability, fed draw by draw.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub(super) kind: SequenceKind,
    pub(super) alpha: f64,
    pub(super) s: u64,
    pub(super) n: u64,
    /// Union bound: the next check (index, time).
    pub(super) next_check: (u64, u64),
    /// Union bound: the checks made, `(agreeing, draws, level of each tail)`.
    pub(super) checks: Vec<(u64, u64, f64)>,
    /// Union bound: for the last `p` asked, the checks examined and whether any excluded
    /// everything at or below `p` / at or above it (checks never change, so this caches).
    pub(super) seen: std::cell::Cell<(f64, usize, bool, bool)>,
}

impl Sequence {
    /// An empty sequence at level `alpha`.
    pub fn new(kind: SequenceKind, alpha: f64) -> Sequence {
        let first = schedule().next().unwrap_or(10);
        Sequence {
            kind,
            alpha,
            s: 0,
            n: 0,
            next_check: (0, first),
            checks: Vec::new(),
            seen: std::cell::Cell::new((f64::NAN, 0, false, false)),
        }
    }

    /// Draws so far.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Agreeing draws so far.
    pub fn agreeing(&self) -> u64 {
        self.s
    }

    /// Records one draw (in draw order).
    pub fn observe(&mut self, agrees: bool) {
        self.n += 1;
        self.s += u64::from(agrees);
        if self.kind == SequenceKind::UnionBound && self.n == self.next_check.1 {
            let (k, _) = self.next_check;
            self.checks
                .push((self.s, self.n, union_alpha(self.alpha, k) / 2.0));
            let next = schedule().nth(k as usize + 1).unwrap_or(u64::MAX);
            self.next_check = (k + 1, next);
        }
    }

    /// Whether the sequence now excludes every m ≤ `p` (`above`) or every m ≥ `p` (not
    /// `above`). Cheap: one evaluation, no bound search.
    pub fn excludes(&self, p: f64, above: bool) -> bool {
        match self.kind {
            SequenceKind::Betting => {
                let mean = if self.n == 0 {
                    0.5
                } else {
                    self.s as f64 / self.n as f64
                };
                let side = if above { mean > p } else { mean < p };
                side && kt_log_wealth(self.s, self.n, p) >= (1.0 / self.alpha).ln()
            }
            SequenceKind::UnionBound => {
                // A check excludes all m ≤ p when its Clopper–Pearson lower bound exceeds
                // p, i.e. P(Bin(n, p) ≥ s) < a; all m ≥ p when P(Bin(n, p) ≤ s) < a.
                let (mut q, mut done, mut lo_out, mut hi_out) = self.seen.get();
                if q != p {
                    (q, done, lo_out, hi_out) = (p, 0, false, false);
                }
                for &(s, n, a) in &self.checks[done..] {
                    lo_out |= upper_tail(s, n, p) < a;
                    hi_out |= lower_tail(s, n, p) < a;
                }
                self.seen.set((q, self.checks.len(), lo_out, hi_out));
                if above { lo_out } else { hi_out }
            }
        }
    }

    /// Whether `remaining` more draws, all agreeing, could still make the sequence exclude
    /// every m ≤ `p`. When not, certifying at `p` is out of reach within the budget and the
    /// run can stop (a budget decision, not a claim: validity is unaffected).
    pub fn could_exclude_below(&self, p: f64, remaining: u64) -> bool {
        if self.excludes(p, true) {
            return true;
        }
        match self.kind {
            SequenceKind::Betting => {
                let (s, n) = (self.s + remaining, self.n + remaining);
                n > 0
                    && s as f64 / n as f64 > p
                    && kt_log_wealth(s, n, p) >= (1.0 / self.alpha).ln()
            }
            SequenceKind::UnionBound => {
                let (mut k, mut t) = self.next_check;
                while t <= self.n + remaining {
                    let s = self.s + (t - self.n);
                    if upper_tail(s, t, p) < union_alpha(self.alpha, k) / 2.0 {
                        return true;
                    }
                    k += 1;
                    t = schedule().nth(k as usize).unwrap_or(u64::MAX);
                }
                false
            }
        }
    }

    /// The interval now: for the betting sequence, `{m : M_n(m) < 1/α}` found by bisection.
    pub fn bounds(&self) -> (f64, f64) {
        match self.kind {
            SequenceKind::UnionBound => {
                // The stats module's Clopper–Pearson bounds, at each check's α_k.
                self.checks.iter().fold((0.0, 1.0), |(lo, hi), &(s, n, a)| {
                    let Ok(a) = Alpha::new(a) else {
                        return (lo, hi);
                    };
                    (
                        lo.max(clopper_pearson_lower(s, n, a)),
                        hi.min(clopper_pearson_upper(s, n, a)),
                    )
                })
            }
            SequenceKind::Betting => {
                if self.n == 0 {
                    return (0.0, 1.0);
                }
                let mean = self.s as f64 / self.n as f64;
                let threshold = (1.0 / self.alpha).ln();
                let outside = |m: f64| kt_log_wealth(self.s, self.n, m) >= threshold;
                // M_n(mean) ≤ 1 (a mixture never beats the best fit), and the wealth grows
                // without bound as m moves to 0 (if S > 0) or to 1 (if S < n).
                let lo = if self.s == 0 {
                    0.0
                } else {
                    bisect(0.0, mean, |m| !outside(m))
                };
                let hi = if self.s == self.n {
                    1.0
                } else {
                    bisect(mean, 1.0, outside)
                };
                (lo, hi)
            }
        }
    }
}

/// The boundary in `[lo, hi]` where `is_right` turns true (it is false at `lo` and true at
/// `hi`, monotone between).
pub(super) fn bisect(mut lo: f64, mut hi: f64, is_right: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if is_right(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}
