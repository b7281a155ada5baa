//! `GET /v1/spend`: what a client spent and what its budgets have left — with a store,
//! across restarts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::state::{Client, ProxyState};

/// `GET /v1/spend`: a client's own spend and what its budgets have left (its key), or
/// every client's and provider's (the operator's key).
pub(crate) async fn spend(
    State(state): State<Arc<ProxyState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if let Ok(client) = state.client(&headers) {
        return Ok(Json(view(&state, client).await?));
    }
    state.operator(&headers)?;
    let mut clients = Vec::new();
    for c in &state.clients {
        clients.push(view(&state, c).await?);
    }
    let mut providers = Vec::new();
    for s in &state.providers {
        let spent = match &state.shared {
            Some(sh) => {
                let ledger = sh
                    .redis
                    .ledger(&format!("provider:{}", s.def.name), None, sh.lease);
                ledger.spent().await.map_err(redis_down)? as f64 / 1e6
            }
            None => s.http.ledger().spent_usd(),
        };
        providers.push(json!({"provider": s.def.name, "spent_usd": spent}));
    }
    Ok(Json(json!({"clients": clients, "providers": providers})))
}

fn redis_down(e: robustify_redis::Error) -> ApiError {
    ApiError::Busy(format!("shared budgets: {e}"))
}

/// One client's spend: from the replicas' Redis, or this process's wallets (read back
/// from the SQLite store at start).
async fn view(state: &ProxyState, c: &Client) -> Result<Value, ApiError> {
    if let Some(sh) = &state.shared {
        // Each wallet read once; the client's remaining is the least of theirs.
        let usd = |micro: u64| micro as f64 / 1e6;
        let (mut wallets, mut total, mut least) = (Vec::new(), 0, None::<u64>);
        for (period, name, ledger) in crate::hold::client_ledgers(sh, c) {
            let spent = ledger.spent().await.map_err(redis_down)?;
            let held = ledger.held().await.map_err(redis_down)?;
            if period == "total" {
                total = spent;
            }
            let left = ledger
                .cap()
                .map(|cap| cap.saturating_sub(spent.saturating_add(held)));
            least = left.map_or(least, |l| Some(least.map_or(l, |x| x.min(l))));
            wallets.push(json!({
                "period": period,
                "name": name,
                "spent_usd": usd(spent),
                "budget_usd": ledger.cap().map(usd),
                "remaining_usd": left.map(usd),
            }));
        }
        return Ok(json!({
            "client": c.name,
            "spent_usd": usd(total),
            "remaining_usd": least.map(usd),
            "wallets": wallets,
            "by_provider": [],
            "persistent": true,
        }));
    }
    let by_provider: Vec<Value> = match &state.store {
        Some(store) => store
            .spent(&c.name, 0)
            .map_err(|e| ApiError::ProviderFailed(e.to_string()))?
            .into_iter()
            .map(|(p, usd)| json!({"provider": p, "spent_usd": usd}))
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "client": c.name,
        "spent_usd": c.wallet.spent_usd(),
        "remaining_usd": c.wallet.remaining_usd(),
        "wallets": c.wallet.views(c.budget_usd),
        "by_provider": by_provider,
        "persistent": state.store.is_some(),
    }))
}
