//! The HTTP server: the router on a bound listener until a shutdown future resolves, with
//! timeouts no client can hold open: a request head must arrive within `header_s` of the
//! connection opening or of the previous response (slow headers and idle keep-alive
//! connections are closed), and a body within `body_s` (408).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use robustify_providers::QueryLog;

use crate::api_error::ApiError;
use crate::spend;
use crate::state::ProxyState;
use crate::{metrics, routes};

/// The router: every error, 404 and 405 included, is the JSON of [`ApiError`].
pub fn router(state: Arc<ProxyState>) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/v1/certify", post(routes::certify))
        .route("/v1/predict", post(routes::predict))
        .route("/v1/providers", get(routes::providers))
        .route("/v1/spend", get(spend::spend))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Longest wait for requests in flight at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /readyz`: whether the proxy can take paid work now — its answer store writable
/// (SQLite: no paid answers waiting in memory for a locked or failing file; Redis:
/// answering within 2 s). 200 `ready`, else 503 with the reason. `/healthz` only says
/// that the process answers.
async fn readyz(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let problem = if let Some(store) = &state.store {
        // The same check that stops new paid work (it writes what waits, off the workers).
        robustify_providers::AnswerBackend::ready(store.as_ref())
            .await
            .err()
            .map(|e| e.to_string())
    } else if let Some(shared) = &state.shared {
        match tokio::time::timeout(std::time::Duration::from_secs(2), shared.redis.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("redis: {e}")),
            Err(_) => Some("redis: no answer within 2 s".into()),
        }
    } else {
        None
    };
    match problem {
        None => "ready".into_response(),
        Some(why) => ApiError::Busy(format!("not ready: {why}")).into_response(),
    }
}

/// Serves on `listener` until `shutdown` resolves, then waits for requests in flight and
/// syncs the query logs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let syncing: Vec<_> = state
        .providers
        .iter()
        .filter_map(|s| s.log.as_ref().map(QueryLog::spawn_syncer))
        .collect();
    let app = router(state.clone());
    let header_timeout = state.header_timeout();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    // Requests in flight finish (every vendor and store call has its own timeout); a
    // shutdown never waits past this, whatever still hangs.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open {} s after the shutdown began were cut off",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    for s in syncing {
        s.abort();
    }
    state.flush();
    Ok(())
}
