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
    let view = |c: &Client| -> Result<Value, ApiError> {
        let by_provider = match &state.store {
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
    };
    if let Ok(client) = state.client(&headers) {
        return Ok(Json(view(client)?));
    }
    state.operator(&headers)?;
    let clients = state
        .clients
        .iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    let providers: Vec<Value> = state
        .providers
        .iter()
        .map(|s| json!({"provider": s.def.name, "spent_usd": s.http.ledger().spent_usd()}))
        .collect();
    Ok(Json(json!({"clients": clients, "providers": providers})))
}
