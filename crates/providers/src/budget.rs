//! The one reserve-then-settle ledger: every request reserves its worst-case cost before it
//! is sent and settles what it actually used after, so concurrent requests can never spend
//! past the limit (admission checks spent + reserved, not spent alone). A provider's budget
//! counts billed images priced at the vendor's tiers ([`Ledger::new`]); a proxy client's
//! wallet counts micro-dollars ([`Ledger::dollars`]) — the same ledger.

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
    /// Why nothing more may be reserved ([`Ledger::close`]).
    closed: Option<String>,
}

/// What one unit of a ledger is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// A billed image, priced at the vendor's tiers.
    Image,
    /// A millionth of a dollar (a client's wallet).
    MicroDollar,
}

/// Micro-dollars in a dollar.
const MICRO: f64 = 1e6;

/// `usd` in micro-dollars, rounded up — except for the float dust of a product that is
/// meant to be whole ($0.0015 × 10⁶ = 1500.0000000000002, one micro-dollar too many); 0 for
/// what is not a finite amount > 0. `as` saturates: an astronomical amount becomes
/// `u64::MAX`, never a wrap.
pub fn micro_usd_up(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * MICRO - 1e-6).ceil().max(0.0) as u64
    } else {
        0
    }
}

/// Billed units and their price, with reservations.
#[derive(Debug)]
pub struct Ledger {
    pricing: Pricing,
    limits: BudgetLimits,
    unit: Unit,
    state: Mutex<State>,
}

impl Ledger {
    /// A ledger charging `pricing` under `limits`.
    pub fn new(pricing: Pricing, limits: BudgetLimits) -> Ledger {
        Ledger {
            pricing,
            limits,
            unit: Unit::Image,
            state: Mutex::new(State::default()),
        }
    }

    /// A ledger of dollars, at most `cap` (unlimited when `None`): a proxy client's wallet.
    /// Its unit is a micro-dollar; holds round up and the cap rounds down, so rounding
    /// never lets a client spend past it.
    pub fn dollars(cap: Option<f64>) -> Ledger {
        let micro = cap.map(|c| {
            if c.is_finite() && c > 0.0 {
                (c * MICRO).floor() as u64
            } else {
                0
            }
        });
        Ledger {
            pricing: Pricing {
                tiers: vec![crate::cost::Tier {
                    from_units: 0,
                    usd_per_1000: 1000.0 / MICRO,
                }],
                free_units_per_month: 0,
                source: "micro-dollars".into(),
                verified: true,
            },
            limits: BudgetLimits {
                max_usd: None,
                max_queries: micro,
            },
            unit: Unit::MicroDollar,
            state: Mutex::new(State::default()),
        }
    }

    /// A [`Ledger::dollars`] ledger that has already spent `spent_usd` (read back from a
    /// store after a restart).
    pub fn dollars_spent(cap: Option<f64>, spent_usd: f64) -> Ledger {
        let ledger = Ledger::dollars(cap);
        ledger.lock().spent = micro_usd_up(spent_usd);
        ledger
    }

    /// Starts a new period: what was spent no longer counts (holds in flight still do,
    /// and what they settle counts in the new period).
    pub fn reset_spent(&self) {
        self.lock().spent = 0;
    }

    /// Holds `usd` in a [`Ledger::dollars`] ledger. A hold that is not a finite,
    /// non-negative number (a NaN from hostile arithmetic) never fits.
    pub fn reserve_usd(&self, usd: f64) -> Result<Reservation<'_>> {
        if !(usd.is_finite() && usd >= 0.0) {
            return Err(Error::BudgetExhausted {
                message: format!("a hold of {usd} dollars is not a finite amount ≥ 0"),
            });
        }
        self.reserve(micro_usd_up(usd))
    }

    /// Dollars left under the cap (spent and held subtracted); `None` without a cap.
    pub fn remaining_usd(&self) -> Option<f64> {
        let s = self.lock();
        let committed = s.spent.saturating_add(s.reserved);
        match self.unit {
            Unit::MicroDollar => self
                .limits
                .max_queries
                .map(|m| m.saturating_sub(committed) as f64 / MICRO),
            Unit::Image => self
                .limits
                .max_usd
                .map(|m| (m - self.cost(committed)).max(0.0)),
        }
    }

    fn cost(&self, units: u64) -> f64 {
        self.pricing.cost_usd(units, false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent integers; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses every later reservation with `why` (a proxy client that hung up: no new
    /// draw is sent for it); reservations already made still settle.
    pub fn close(&self, why: &str) {
        let mut s = self.lock();
        if s.closed.is_none() {
            s.closed = Some(why.to_owned());
        }
    }

    /// Whether [`Ledger::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Reserves `units` units, or says which limit they would break.
    pub fn reserve(&self, units: u64) -> Result<Reservation<'_>> {
        let mut s = self.lock();
        if let Some(why) = &s.closed {
            return Err(Error::BudgetExhausted {
                message: why.clone(),
            });
        }
        // Checked: a hostile count is refused, never wrapped past the limit (nor, without
        // a limit, into the counters).
        let Some(committed) = s
            .spent
            .checked_add(s.reserved)
            .and_then(|c| c.checked_add(units))
        else {
            return Err(Error::BudgetExhausted {
                message: format!("{units} units cannot be held (the count overflows)"),
            });
        };
        // The messages say what the next request would need, not what is spent: requests
        // in flight settle after this, and the run's closing summary has the final spend.
        if let Some(max) = self.limits.max_queries
            && committed > max
        {
            let message = match self.unit {
                Unit::Image => format!(
                    "--max-queries {max}: {units} more images would pass it (with those billed \
                     and in flight)"
                ),
                Unit::MicroDollar => format!(
                    "budget ${:.6}: ${:.6} more would pass it (with what is spent and held)",
                    max as f64 / MICRO,
                    units as f64 / MICRO
                ),
            };
            return Err(Error::BudgetExhausted { message });
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
    /// Settles a [`Ledger::dollars`] hold at `usd`, rounded up to a micro-dollar and at
    /// most the hold (what is not a finite amount > 0 bills nothing), and releases the
    /// rest; returns the dollars spent.
    pub fn settle_usd(self, usd: f64) -> f64 {
        self.settle(micro_usd_up(usd))
    }

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
    fn a_closed_ledger_refuses_new_holds_and_settles_old_ones() {
        let l = Ledger::new(pricing(1.5), BudgetLimits::default());
        let held = l.reserve(4).unwrap();
        l.close("the client went away");
        assert!(l.is_closed());
        let e = l.reserve(1).unwrap_err().to_string();
        assert!(e.contains("the client went away"), "{e}");
        held.settle(3);
        assert_eq!(l.spent_units(), 3);
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
    fn a_dollar_ledger_holds_until_settled_or_dropped() {
        let w = Ledger::dollars(Some(1.0));
        let a = w.reserve_usd(0.6).unwrap();
        assert!(w.reserve_usd(0.5).is_err());
        assert!((w.remaining_usd().unwrap() - 0.4).abs() < 1e-9);
        assert!((a.settle_usd(0.25) - 0.25).abs() < 1e-9);
        let b = w.reserve_usd(0.75).unwrap();
        assert!(w.reserve_usd(0.01).is_err());
        assert_eq!(w.remaining_usd(), Some(0.0));
        drop(b);
        assert!((w.spent_usd() - 0.25).abs() < 1e-9);
        // A settlement never bills past its hold.
        let c = w.reserve_usd(0.5).unwrap();
        assert!((c.settle_usd(9.0) - 0.5).abs() < 1e-9);
        assert!(w.reserve_usd(0.25).is_ok());
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            assert!(w.reserve_usd(bad).is_err(), "{bad}");
        }
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(Ledger::dollars(None).reserve_usd(bad).is_err(), "{bad}");
        }
        let unlimited = Ledger::dollars(None);
        assert_eq!(unlimited.remaining_usd(), None);
        let _huge = unlimited.reserve_usd(1e300).unwrap();
        assert!(
            unlimited.reserve_usd(1e300).is_err(),
            "the counters would wrap"
        );
        // Rounding cannot overshoot: a cap of $0.0000015 holds one micro-dollar, not two.
        let tiny = Ledger::dollars(Some(0.0000015));
        let _one = tiny.reserve_usd(0.000001).unwrap();
        assert!(tiny.reserve_usd(0.0000001).is_err());
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
