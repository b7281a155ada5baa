//! The cost ledger and hard budget: every request reserves its worst-case cost before it is
//! sent and settles what it actually used after, so concurrent requests can never spend
//! past the limit (admission checks spent + reserved, not spent alone).

use std::sync::Mutex;

use crate::cost::Pricing;
use crate::{Error, Result};

/// Spending limits of a run (or of a proxy client).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetLimits {
    /// Most dollars to spend, priced at the definition's tiers from the start of a month
    /// with no free units (the conservative figure).
    pub max_usd: Option<f64>,
    /// Most billed images.
    pub max_queries: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    spent: u64,
    reserved: u64,
}

/// Billed units and their price, with reservations.
#[derive(Debug)]
pub struct Ledger {
    pricing: Pricing,
    limits: BudgetLimits,
    state: Mutex<State>,
}

impl Ledger {
    /// A ledger charging `pricing` under `limits`.
    pub fn new(pricing: Pricing, limits: BudgetLimits) -> Ledger {
        Ledger {
            pricing,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn cost(&self, units: u64) -> f64 {
        self.pricing.cost_usd(units, false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent integers; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `units` units, or says which limit they would break.
    pub fn reserve(&self, units: u64) -> Result<Reservation<'_>> {
        let mut s = self.lock();
        // Saturating: a hostile count can only make the check fail, never wrap past it.
        let committed = s.spent.saturating_add(s.reserved).saturating_add(units);
        // The messages say what the next request would need, not what is spent: requests
        // in flight settle after this, and the run's closing summary has the final spend.
        if let Some(max) = self.limits.max_queries
            && committed > max
        {
            return Err(Error::BudgetExhausted {
                message: format!(
                    "--max-queries {max}: {units} more images would pass it (with those billed \
                     and in flight)"
                ),
            });
        }
        if let Some(max) = self.limits.max_usd
            && self.cost(committed) > max + 1e-9
        {
            return Err(Error::BudgetExhausted {
                message: format!(
                    "--budget-usd {max}: {units} more images (${:.4}) would pass it (with those \
                     billed and in flight)",
                    self.cost(committed) - self.cost(s.spent.saturating_add(s.reserved))
                ),
            });
        }
        s.reserved += units;
        Ok(Reservation {
            ledger: self,
            units,
        })
    }

    /// Units billed so far.
    pub fn spent_units(&self) -> u64 {
        self.lock().spent
    }

    /// Dollars billed so far.
    pub fn spent_usd(&self) -> f64 {
        self.cost(self.spent_units())
    }

    /// The limits.
    pub fn limits(&self) -> &BudgetLimits {
        &self.limits
    }
}

/// Units held for one request; released when dropped unless settled.
#[derive(Debug)]
pub struct Reservation<'a> {
    ledger: &'a Ledger,
    units: u64,
}

impl Reservation<'_> {
    /// Bills `used` of the reserved units (at most all of them) and releases the rest;
    /// returns what the used units cost.
    pub fn settle(mut self, used: u64) -> f64 {
        let used = used.min(self.units);
        let mut s = self.ledger.lock();
        s.reserved -= self.units;
        let before = self.ledger.cost(s.spent);
        s.spent = s.spent.saturating_add(used);
        let cost = self.ledger.cost(s.spent) - before;
        self.units = 0;
        cost
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.units > 0 {
            self.ledger.lock().reserved -= self.units;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::Tier;

    fn pricing(usd_per_1000: f64) -> Pricing {
        Pricing {
            tiers: vec![Tier {
                from_units: 0,
                usd_per_1000,
            }],
            free_units_per_month: 0,
            source: "test".into(),
            verified: true,
        }
    }

    #[test]
    fn reservations_count_against_the_limit() {
        let ledger = Ledger::new(
            pricing(1.5),
            BudgetLimits {
                max_usd: Some(0.015),
                max_queries: None,
            },
        );
        // $0.015 buys 10 images; 8 reserved + 3 more would overshoot.
        let a = ledger.reserve(8).unwrap();
        assert!(ledger.reserve(3).is_err());
        assert!((a.settle(5) - 0.0075).abs() < 1e-12);
        let b = ledger.reserve(5).unwrap();
        assert!(ledger.reserve(1).is_err());
        drop(b); // released unbilled
        assert_eq!(ledger.spent_units(), 5);
        let c = ledger.reserve(5).unwrap();
        c.settle(5);
        assert!((ledger.spent_usd() - 0.015).abs() < 1e-12);
        assert!(matches!(
            ledger.reserve(1),
            Err(Error::BudgetExhausted { .. })
        ));
    }

    #[test]
    fn huge_counts_are_refused_not_wrapped() {
        let ledger = Ledger::new(
            pricing(1.5),
            BudgetLimits {
                max_usd: Some(0.375),
                max_queries: None,
            },
        );
        let held = ledger.reserve(200).unwrap();
        // 200 + (2^64 − 100) wraps to 100 in plain u64 arithmetic.
        assert!(ledger.reserve(u64::MAX - 99).is_err());
        assert!(ledger.reserve(u64::MAX).is_err());
        held.settle(200);
        let capped = Ledger::new(
            pricing(1.5),
            BudgetLimits {
                max_usd: None,
                max_queries: Some(10),
            },
        );
        let _a = capped.reserve(5).unwrap();
        assert!(capped.reserve(u64::MAX - 2).is_err());
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let ledger = std::sync::Arc::new(Ledger::new(
            pricing(1.0),
            BudgetLimits {
                max_usd: None,
                max_queries: Some(1000),
            },
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    while let Ok(r) = ledger.reserve(3) {
                        r.settle(3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ledger.spent_units(), 999);
    }

    proptest::proptest! {
        /// Any sequence of reservations (hostile sizes included), each settled for any
        /// part of what it held or dropped: the units billed never pass the limit.
        #[test]
        fn no_sequence_of_reservations_overshoots(
            steps in proptest::collection::vec(
                (proptest::prop_oneof![0u64..50, proptest::prelude::any::<u64>()], 0u64..60, proptest::prelude::any::<bool>()),
                1..60,
            ),
            max in 1u64..500,
        ) {
            let ledger = Ledger::new(
                pricing(1.5),
                BudgetLimits { max_usd: Some(max as f64 * 0.0015), max_queries: Some(max) },
            );
            for (units, used, settle) in steps {
                if let Ok(r) = ledger.reserve(units)
                    && settle
                {
                    r.settle(used);
                }
                proptest::prop_assert!(ledger.spent_units() <= max);
                proptest::prop_assert!(ledger.spent_usd() <= max as f64 * 0.0015 + 1e-9);
            }
        }
    }
}
