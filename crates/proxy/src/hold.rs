//! What a request holds before anything is sent: its worst case in every budget it draws
//! on — the client's wallets (ever, per day, per month) and, with replicas, the provider's
//! budget — in this process ([`Wallets`]) or in the Redis every replica shares, where a
//! hold is renewed while the request runs and lapses if this replica dies.

use std::sync::Arc;
use std::time::Duration;

use robustify_providers::AnswerBackend;

use robustify_providers::budget::micro_usd_up as micro;
use robustify_redis::{ChargedAnswers, Hold, SharedLedger};

use crate::api_error::ApiError;
use crate::state::{Client, ProxyState, Served, Shared};
use crate::wallets::{Holds, Period, now_ms};

/// A request's holds.
pub(crate) enum RequestHold<'a> {
    /// In this process.
    Local(Holds<'a>),
    /// In the replicas' Redis.
    Shared(SharedHolds),
}

/// Holds in Redis, renewed every third of the lease until settled (or dropped: then they
/// lapse).
pub(crate) struct SharedHolds {
    held: Vec<(SharedLedger, Hold)>,
    renewer: tokio::task::JoinHandle<()>,
    /// The request's answer store, billing these holds per vendor response.
    answers: Arc<ChargedAnswers>,
}

impl Drop for SharedHolds {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The client's wallets in Redis, now: `(period, its name, ledger)`.
pub(crate) fn client_ledgers(
    shared: &Shared,
    client: &Client,
) -> Vec<(&'static str, Option<String>, SharedLedger)> {
    let cap = |usd: Option<f64>| usd.map(micro);
    let mut out = vec![(
        "total",
        None,
        shared.redis.ledger(
            &format!("wallet:{}:total", client.name),
            cap(client.budget_usd),
            shared.lease,
        ),
    )];
    for (period, usd, what) in [
        (Period::Day, client.budget_usd_per_day, "day"),
        (Period::Month, client.budget_usd_per_month, "month"),
    ] {
        if let Some(usd) = usd {
            let (name, _) = period.at(now_ms());
            let ledger = shared.redis.ledger(
                &format!("wallet:{}:{what}:{name}", client.name),
                Some(micro(usd)),
                shared.lease,
            );
            out.push((what, Some(name), ledger));
        }
    }
    out
}

/// The provider's budget over all clients and replicas, in Redis.
pub(crate) fn provider_ledger(shared: &Shared, served: &Served) -> SharedLedger {
    shared.redis.ledger(
        &format!("provider:{}", served.def.name),
        served.budget_usd.map(micro),
        shared.lease,
    )
}

/// Holds `worst` dollars for a request of `client` to `served`; 402 when a budget cannot.
pub(crate) async fn hold<'a>(
    state: &ProxyState,
    client: &'a Client,
    served: &Served,
    worst: f64,
) -> Result<RequestHold<'a>, ApiError> {
    let Some(shared) = &state.shared else {
        return client
            .wallet
            .reserve_usd(worst)
            .map(RequestHold::Local)
            .map_err(|left| ApiError::BudgetExhausted {
                worst_usd: worst,
                remaining_usd: left,
            });
    };
    let redis_down = |e: robustify_redis::Error| ApiError::Busy(format!("shared budgets: {e}"));
    let units = micro(worst);
    let mut held: Vec<(SharedLedger, Hold)> = Vec::new();
    let mut ledgers: Vec<(bool, SharedLedger)> = client_ledgers(shared, client)
        .into_iter()
        .map(|(_, _, l)| (true, l))
        .collect();
    ledgers.push((false, provider_ledger(shared, served)));
    for (is_client, ledger) in ledgers {
        match ledger.reserve(units).await {
            Ok(Some(h)) => held.push((ledger, h)),
            outcome => {
                for (l, h) in &held {
                    let _ = l.release(h).await;
                }
                outcome.map_err(redis_down)?;
                return Err(if is_client {
                    ApiError::BudgetExhausted {
                        worst_usd: worst,
                        remaining_usd: remaining(shared, client).await.unwrap_or(0.0),
                    }
                } else {
                    ApiError::ProviderBudget(format!(
                        "provider {}: its budget cannot hold ${worst:.4} more",
                        served.def.name
                    ))
                });
            }
        }
    }
    let to_renew: Vec<(SharedLedger, Hold)> =
        held.iter().map(|(l, h)| (l.clone(), h.clone())).collect();
    let every = shared.lease / 3;
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every.max(Duration::from_millis(10))).await;
            for (l, h) in &to_renew {
                let _ = l.renew(h).await;
            }
        }
    });
    let answers = Arc::new(shared.redis.answers().charging(held.clone()));
    Ok(RequestHold::Shared(SharedHolds {
        held,
        renewer,
        answers,
    }))
}

/// The least any of the client's shared wallets has left; `None` when none has a cap.
pub(crate) async fn remaining(shared: &Shared, client: &Client) -> Option<f64> {
    let mut least: Option<f64> = None;
    for (_, _, l) in client_ledgers(shared, client) {
        if let Some(cap) = l.cap() {
            let used = l.spent().await.ok()? + l.held().await.ok()?;
            let left = cap.saturating_sub(used) as f64 / 1e6;
            least = Some(least.map_or(left, |x| x.min(left)));
        }
    }
    least
}

impl RequestHold<'_> {
    /// Where the request keeps and finds answers: with shared holds, the replicas' store
    /// billing the holds as each response arrives; else the process's store (its charges
    /// are written with the answers, and the wallets settle at the end).
    pub(crate) fn answers(&self, state: &ProxyState) -> Option<Arc<dyn AnswerBackend>> {
        match self {
            RequestHold::Local(_) => state.answers(),
            RequestHold::Shared(s) => Some(s.answers.clone()),
        }
    }

    /// Bills `usd` (what the vendor billed, at most what was held) in every budget: with
    /// shared holds, what the responses have not billed already.
    pub(crate) async fn settle_usd(self, usd: f64) {
        match self {
            RequestHold::Local(h) => h.settle_usd(usd),
            RequestHold::Shared(s) => {
                s.renewer.abort();
                let rest = micro(usd).saturating_sub(s.answers.drawn());
                for (l, h) in &s.held {
                    if let Err(e) = l.settle(h, rest).await {
                        tracing::error!("settling a shared budget: {e}");
                    }
                }
            }
        }
    }
}
