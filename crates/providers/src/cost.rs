//! Prices: tiered per-unit pricing and what a number of units costs.

use serde::{Deserialize, Serialize};

/// One price tier: units from `from_units` (counted within the month) on cost
/// `usd_per_1000` per thousand, up to the next tier's `from_units`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// First unit (0-based, within the billing month) this tier applies to.
    pub from_units: u64,
    /// Price per 1,000 units in US dollars.
    pub usd_per_1000: f64,
}

/// A provider's price list. One unit is one image analysed by one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Tiers in increasing `from_units`; the first must start at 0.
    pub tiers: Vec<Tier>,
    /// Units free each month (only counted with `--free-tier`).
    #[serde(default)]
    pub free_units_per_month: u64,
    /// Where the figures come from, and when they were read.
    pub source: String,
    /// False when the figures could not be checked against the vendor's page.
    #[serde(default)]
    pub verified: bool,
}

impl Pricing {
    /// Checks that tiers start at 0, increase, and have finite non-negative prices.
    pub fn validate(&self) -> Result<(), String> {
        if self.tiers.first().map(|t| t.from_units) != Some(0) {
            return Err("pricing.tiers must start with from_units = 0".into());
        }
        for pair in self.tiers.windows(2) {
            if pair[1].from_units <= pair[0].from_units {
                return Err("pricing.tiers must have increasing from_units".into());
            }
        }
        if let Some(t) = self
            .tiers
            .iter()
            .find(|t| !(t.usd_per_1000.is_finite() && t.usd_per_1000 >= 0.0))
        {
            return Err(format!("invalid price {} per 1,000", t.usd_per_1000));
        }
        Ok(())
    }

    /// Whether every unit is free (the stand-ins): no default log, no budget to watch.
    pub fn is_free(&self) -> bool {
        self.tiers.iter().all(|t| t.usd_per_1000 == 0.0)
    }

    /// The cost in USD of `units` units, counted from the start of a billing month.
    ///
    /// Without `free_tier`, the free monthly units are assumed spent already (the safe
    /// figure for a budget); with it, the first `free_units_per_month` cost nothing.
    pub fn cost_usd(&self, units: u64, free_tier: bool) -> f64 {
        let start = if free_tier {
            self.free_units_per_month.min(units)
        } else {
            0
        };
        let mut cost = 0.0;
        for (i, tier) in self.tiers.iter().enumerate() {
            let end = self.tiers.get(i + 1).map_or(u64::MAX, |t| t.from_units);
            let lo = tier.from_units.max(start);
            let hi = end.min(units);
            if hi > lo {
                cost += (hi - lo) as f64 * tier.usd_per_1000 / 1000.0;
            }
        }
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google() -> Pricing {
        Pricing {
            tiers: vec![
                Tier {
                    from_units: 0,
                    usd_per_1000: 1.5,
                },
                Tier {
                    from_units: 5_000_000,
                    usd_per_1000: 1.0,
                },
            ],
            free_units_per_month: 1000,
            source: "test".into(),
            verified: true,
        }
    }

    #[test]
    fn tiers_and_free_units() {
        let p = google();
        assert_eq!(p.cost_usd(0, false), 0.0);
        assert!((p.cost_usd(12_000, false) - 18.0).abs() < 1e-9);
        assert!((p.cost_usd(12_000, true) - 16.5).abs() < 1e-9);
        assert_eq!(p.cost_usd(800, true), 0.0);
        // 5M at 1.50 + 1M at 1.00
        assert!((p.cost_usd(6_000_000, false) - 8_500.0).abs() < 1e-6);
        assert!((p.cost_usd(6_000_000, true) - 8_498.5).abs() < 1e-6);
        assert!(p.validate().is_ok());
        let mut bad = google();
        bad.tiers[0].from_units = 5;
        assert!(bad.validate().is_err());
        let mut bad = google();
        bad.tiers.swap(0, 1);
        assert!(bad.validate().is_err());
    }
}
