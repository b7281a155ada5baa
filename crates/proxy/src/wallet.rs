//! A client's dollar budget: a request reserves its worst-case cost before anything is sent
//! and settles the actual cost after, so concurrent requests can never overshoot.

use std::sync::Mutex;

/// Dollars spent and held for requests in flight, under an optional cap.
#[derive(Debug, Default)]
pub struct Wallet {
    cap: Option<f64>,
    state: Mutex<(f64, f64)>, // (spent, reserved)
}

impl Wallet {
    /// A wallet of at most `cap` dollars (unlimited when `None`).
    pub fn new(cap: Option<f64>) -> Wallet {
        Wallet {
            cap,
            state: Mutex::new((0.0, 0.0)),
        }
    }

    /// Holds `usd`, or returns what is left when it does not fit. A hold that is not a
    /// finite, non-negative number (a NaN from hostile arithmetic) never fits.
    pub fn reserve(&self, usd: f64) -> Result<Hold<'_>, f64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let left = self
            .cap
            .map_or(f64::INFINITY, |cap| (cap - s.0 - s.1).max(0.0));
        if !(usd.is_finite() && usd >= 0.0) {
            return Err(left);
        }
        if let Some(cap) = self.cap
            && s.0 + s.1 + usd > cap + 1e-9
        {
            return Err(left);
        }
        s.1 += usd;
        Ok(Hold {
            wallet: self,
            usd,
            settled: false,
        })
    }

    /// Dollars spent.
    pub fn spent(&self) -> f64 {
        self.state.lock().map_or(0.0, |s| s.0)
    }

    /// The cap.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }
}

/// Dollars held for one request; released when dropped unless settled.
#[derive(Debug)]
pub struct Hold<'a> {
    wallet: &'a Wallet,
    usd: f64,
    settled: bool,
}

impl Hold<'_> {
    /// Spends `actual` (at most what was held) and releases the rest.
    pub fn settle(mut self, actual: f64) {
        let mut s = self.wallet.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 -= self.usd;
        s.0 += actual.clamp(0.0, self.usd);
        self.settled = true;
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut s = self.wallet.state.lock().unwrap_or_else(|e| e.into_inner());
            s.1 -= self.usd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_until_settled_or_dropped() {
        let w = Wallet::new(Some(1.0));
        let a = w.reserve(0.6).unwrap();
        assert!(w.reserve(0.5).is_err());
        a.settle(0.25);
        let b = w.reserve(0.75).unwrap();
        assert_eq!(w.reserve(0.01).unwrap_err(), 0.0);
        drop(b);
        assert!((w.spent() - 0.25).abs() < 1e-12);
        assert!(w.reserve(0.75).is_ok());
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(w.reserve(bad).is_err(), "{bad}");
            assert!(Wallet::new(None).reserve(bad).is_err(), "{bad}");
        }
    }
}
