//! A client's wallets: its budget ever, per UTC day and per UTC month, each one
//! reserve-then-settle ledger (the providers' [`Ledger`], in micro-dollars). A request holds
//! its worst case in every wallet before anything is sent and settles what the vendor
//! billed in all of them. With a store, what each client was charged is read back at start,
//! so a restart forgets no spend.

use std::sync::Mutex;

use robustify_providers::budget::Reservation;
use robustify_providers::{AnswerStore, Ledger};
use serde::Serialize;

use crate::Result;
use crate::config::ClientEntry;

/// A budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Period {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
}

const DAY_MS: u64 = 86_400_000;

/// The civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Period {
    /// The period `unix_ms` falls in: its name (`2026-12-01`, `2026-12`) and its first
    /// millisecond.
    pub(crate) fn at(self, unix_ms: u64) -> (String, u64) {
        let day = unix_ms / DAY_MS;
        let (y, m, d) = civil(day as i64);
        match self {
            Period::Day => (format!("{y:04}-{m:02}-{d:02}"), day * DAY_MS),
            Period::Month => (format!("{y:04}-{m:02}"), (day - u64::from(d - 1)) * DAY_MS),
        }
    }
}

/// One period's wallet.
struct PeriodWallet {
    period: Period,
    ledger: Ledger,
    /// The period the ledger counts now.
    current: Mutex<String>,
}

/// A client's wallets.
pub(crate) struct Wallets {
    total: Ledger,
    periods: Vec<PeriodWallet>,
}

/// What one request holds in every wallet; dropped unsettled, it releases them.
pub(crate) struct Holds<'a> {
    holds: Vec<Reservation<'a>>,
}

impl Holds<'_> {
    /// Spends `usd` (at most what was held) in every wallet.
    pub(crate) fn settle_usd(self, usd: f64) {
        for h in self.holds {
            h.settle_usd(usd);
        }
    }
}

/// One wallet as `GET /v1/spend` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct WalletView {
    /// `total`, `day` or `month`.
    pub(crate) period: &'static str,
    /// The period's name (`2026-12-01`), absent for the total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) spent_usd: f64,
    pub(crate) budget_usd: Option<f64>,
    pub(crate) remaining_usd: Option<f64>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn spent(store: Option<&AnswerStore>, payer: &str, since: u64) -> Result<f64> {
    Ok(match store {
        Some(s) => s.spent(payer, since)?.iter().map(|(_, usd)| usd).sum(),
        None => 0.0,
    })
}

impl Wallets {
    /// The wallets `entry` asks for, each with what `store` says the client already
    /// spent in it.
    pub(crate) fn open(entry: &ClientEntry, store: Option<&AnswerStore>) -> Result<Wallets> {
        let now = now_ms();
        let total = Ledger::dollars_spent(entry.budget_usd, spent(store, &entry.name, 0)?);
        let mut periods = Vec::new();
        for (period, cap) in [
            (Period::Day, entry.budget_usd_per_day),
            (Period::Month, entry.budget_usd_per_month),
        ] {
            if let Some(cap) = cap {
                let (name, start) = period.at(now);
                periods.push(PeriodWallet {
                    period,
                    ledger: Ledger::dollars_spent(Some(cap), spent(store, &entry.name, start)?),
                    current: Mutex::new(name),
                });
            }
        }
        Ok(Wallets { total, periods })
    }

    /// Starts a new period in the wallets whose period ended.
    fn roll(&self, now: u64) {
        for w in &self.periods {
            let (name, _) = w.period.at(now);
            let mut current = w.current.lock().unwrap_or_else(|e| e.into_inner());
            if *current != name {
                w.ledger.reset_spent();
                *current = name;
            }
        }
    }

    /// Holds `usd` in every wallet, or says the least any of them has left.
    pub(crate) fn reserve_usd(&self, usd: f64) -> std::result::Result<Holds<'_>, f64> {
        self.reserve_at(usd, now_ms())
    }

    fn reserve_at(&self, usd: f64, now: u64) -> std::result::Result<Holds<'_>, f64> {
        self.roll(now);
        let mut holds = Vec::new();
        for ledger in std::iter::once(&self.total).chain(self.periods.iter().map(|w| &w.ledger)) {
            match ledger.reserve_usd(usd) {
                Ok(h) => holds.push(h),
                // The holds taken so far are released as `holds` drops.
                Err(_) => return Err(self.remaining_usd().unwrap_or(0.0)),
            }
        }
        Ok(Holds { holds })
    }

    /// The least any wallet has left; `None` when none has a cap.
    pub(crate) fn remaining_usd(&self) -> Option<f64> {
        std::iter::once(&self.total)
            .chain(self.periods.iter().map(|w| &w.ledger))
            .filter_map(Ledger::remaining_usd)
            .reduce(f64::min)
    }

    /// Dollars spent, ever (since this process started, without a store).
    pub(crate) fn spent_usd(&self) -> f64 {
        self.total.spent_usd()
    }

    /// Every wallet, for `GET /v1/spend`.
    pub(crate) fn views(&self, cap: Option<f64>) -> Vec<WalletView> {
        self.roll(now_ms());
        let mut out = vec![WalletView {
            period: "total",
            name: None,
            spent_usd: self.total.spent_usd(),
            budget_usd: cap,
            remaining_usd: self.total.remaining_usd(),
        }];
        for w in &self.periods {
            out.push(WalletView {
                period: match w.period {
                    Period::Day => "day",
                    Period::Month => "month",
                },
                name: Some(w.current.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                spent_usd: w.ledger.spent_usd(),
                budget_usd: w.ledger.remaining_usd().map(|r| r + w.ledger.spent_usd()),
                remaining_usd: w.ledger.remaining_usd(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        // 2026-12-01T19:26:56Z.
        let t = 1_796_153_216_000;
        assert_eq!(Period::Day.at(t).0, "2026-12-01");
        assert_eq!(Period::Month.at(t), ("2026-12".into(), 1_796_083_200_000));
        assert_eq!(Period::Day.at(0), ("1970-01-01".into(), 0));
        // 2024-02-29 (a leap day) and the last millisecond of 2023.
        assert_eq!(Period::Day.at(1_709_164_800_000).0, "2024-02-29");
        assert_eq!(Period::Month.at(1_704_067_199_999).0, "2023-12");
    }

    fn entry() -> ClientEntry {
        ClientEntry {
            name: "a".into(),
            key_sha256: "0".repeat(64),
            budget_usd: Some(1.0),
            budget_usd_per_day: Some(0.25),
            budget_usd_per_month: None,
            requests_per_minute: None,
            max_concurrent_requests: 8,
        }
    }

    #[test]
    fn every_wallet_must_fit_and_a_new_day_starts_afresh() {
        let w = Wallets::open(&entry(), None).unwrap();
        let day1 = 1_796_153_216_000;
        w.reserve_at(0.2, day1).unwrap().settle_usd(0.2);
        // The day's cap binds before the total's: $0.05 left today.
        let left = w.reserve_at(0.1, day1).err().unwrap();
        assert!((left - 0.05).abs() < 1e-9, "{left}");
        // A refused request holds nothing in the wallets that had room.
        assert!((w.total.remaining_usd().unwrap() - 0.8).abs() < 1e-9);
        // The next UTC day: the day wallet is empty again, the total still counts.
        let day2 = day1 + DAY_MS;
        w.reserve_at(0.25, day2).unwrap().settle_usd(0.25);
        assert!((w.spent_usd() - 0.45).abs() < 1e-9);
        assert!(w.reserve_at(0.01, day2).is_err());
    }
}
