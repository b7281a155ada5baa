//! The stand-in vision API over HTTP: one model behind six vendor wire formats.
//!
//! Every request passes the same gate, in this order (each vendor answers in its own shape):
//!
//! 1. count the request (`GET /stats`);
//! 2. credentials: missing or wrong → the vendor's 401/403;
//! 3. injected latency;
//! 4. rate limit (GCRA, `governor`) or an injected throttle → the vendor's throttling answer;
//! 5. injected faults: 5xx, no answer at all, or a malformed body;
//! 6. decode the images (non-image, truncated or oversize → the vendor's 400);
//! 7. classify through the [`batcher::Batcher`], which batches concurrent requests.
//!
//! [`serve`] takes a bound listener and a shutdown future (as mini-redis does), so tests
//! bind `127.0.0.1:0` and the CLI passes Ctrl-C.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use robustify_smoothing::{DecodeLimits, Image};

use crate::model::{Classifier, Scored};

pub mod batcher;
pub mod faults;
pub mod stats;
mod vendors;

pub use faults::{Fault, FaultConfig};
pub use stats::{Route, Stats};

/// Credentials the stand-in accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// The only accepted key (Azure, Google, Clarifai, Hugging Face); any non-empty key
    /// when `None`.
    pub key: Option<String>,
    /// The only accepted AWS key pair `(access key id, secret)`: requests must carry a valid
    /// SigV4 signature made with it. When `None`, any well-formed SigV4 header passes.
    pub aws: Option<(String, String)>,
}

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Accepted credentials.
    pub keys: Keys,
    /// Requests per second over all routes; unlimited when `None`.
    pub rate_limit: Option<f64>,
    /// Requests allowed at once after an idle period (at least 1).
    pub burst: u32,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Most images per model forward pass.
    pub max_batch: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            keys: Keys::default(),
            rate_limit: None,
            burst: 1,
            faults: FaultConfig::default(),
            max_batch: 32,
        }
    }
}

/// Shared by all handlers.
pub struct AppState {
    keys: Keys,
    limiter: Option<DefaultDirectRateLimiter>,
    rate: Option<f64>,
    faults: faults::Faults,
    stats: Stats,
    batcher: batcher::Batcher,
    model_name: String,
}

impl AppState {
    /// Builds the state and starts the model thread.
    pub fn new(model: Arc<dyn Classifier>, config: &ServerConfig) -> Result<Arc<AppState>, String> {
        config.faults.validate()?;
        let limiter = match config.rate_limit {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => {
                let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
                    .ok_or("rate limit too high")?
                    .allow_burst(burst);
                Some(RateLimiter::direct(quota))
            }
            Some(rate) => return Err(format!("invalid rate limit {rate}")),
        };
        Ok(Arc::new(AppState {
            keys: config.keys.clone(),
            limiter,
            rate: config.rate_limit,
            faults: faults::Faults::new(config.faults),
            stats: Stats::default(),
            batcher: batcher::Batcher::start(model.clone(), config.max_batch.max(1)),
            model_name: model.name().to_owned(),
        }))
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// Why credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials present but wrong.
    Invalid,
}

/// A vendor's error shapes.
pub(crate) trait Vendor {
    const ROUTE: Route;
    /// Most bytes of one encoded image.
    const MAX_IMAGE_BYTES: u64;
    fn unauthorized(err: AuthError) -> Response;
    fn bad_request(message: &str) -> Response;
    /// `injected`: a fault-injected throttle rather than the rate limiter.
    fn throttled(retry_after_secs: u64, injected: bool) -> Response;
    fn server_error() -> Response;
    fn garbage() -> Response {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"result\": [{\"name\": \"tru",
        )
            .into_response()
    }
}

/// Steps 1–5 of the gate; `Err` carries the response to send instead.
pub(crate) async fn gate<V: Vendor>(
    state: &AppState,
    auth: Result<(), AuthError>,
) -> Result<(), Response> {
    use stats::Event;
    state.stats.record(V::ROUTE, Event::Request);
    if let Err(err) = auth {
        state.stats.record(V::ROUTE, Event::Rejected);
        return Err(V::unauthorized(err));
    }
    let fault = state.faults.next();
    let latency = state.faults.config().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // When the limiter refuses, it says how long until the next request would pass.
    let wait = match &state.limiter {
        Some(limiter) => limiter.check().err().map(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            not_until.wait_time_from(DefaultClock::default().now())
        }),
        None => None,
    };
    if wait.is_some() || fault == Fault::Throttle {
        state.stats.record(V::ROUTE, Event::Throttled);
        let secs = match wait {
            Some(w) => w.as_secs_f64(),
            None => state.rate.map_or(1.0, |r| 1.0 / r),
        };
        return Err(V::throttled(secs.ceil().max(1.0) as u64, wait.is_none()));
    }
    match fault {
        Fault::None | Fault::Throttle => Ok(()),
        Fault::Fail => {
            state.stats.record(V::ROUTE, Event::Fault);
            Err(V::server_error())
        }
        Fault::Garbage => {
            state.stats.record(V::ROUTE, Event::Fault);
            Err(V::garbage())
        }
        Fault::Timeout => {
            state.stats.record(V::ROUTE, Event::Fault);
            std::future::pending::<()>().await;
            Err(V::server_error())
        }
    }
}

/// Decodes one image under the vendor's byte limit.
pub(crate) fn decode<V: Vendor>(bytes: &[u8]) -> Result<Image, String> {
    let limits = DecodeLimits {
        max_bytes: V::MAX_IMAGE_BYTES,
        ..DecodeLimits::default()
    };
    Image::decode(bytes, &limits).map_err(|e| e.to_string())
}

/// Classifies decoded images and records them; a model failure becomes the vendor's 5xx.
pub(crate) async fn classify<V: Vendor>(
    state: &AppState,
    images: Vec<Image>,
    top_k: usize,
) -> Result<Vec<Vec<Scored>>, Response> {
    let n = images.len() as u64;
    state.stats.record_pixels(&images);
    match state.batcher.classify(images, top_k).await {
        Ok(labels) => {
            state.stats.record(V::ROUTE, stats::Event::Images(n));
            Ok(labels)
        }
        Err(_) => Err(V::server_error()),
    }
}

/// Decodes one raw image body and classifies it: the labels and the image's `(width,
/// height)`, or the vendor's error response.
pub(crate) async fn classify_one<V: Vendor>(
    state: &AppState,
    body: &[u8],
    top_k: usize,
) -> Result<(Vec<Scored>, u32, u32), Response> {
    let image = decode::<V>(body).map_err(|msg| reject::<V>(state, &msg))?;
    let (w, h) = (image.width(), image.height());
    let mut labels = classify::<V>(state, vec![image], top_k).await?;
    Ok((labels.pop().unwrap_or_default(), w, h))
}

/// A request rejected for its content (bad image, bad JSON): counted and answered.
pub(crate) fn reject<V: Vendor>(state: &AppState, message: &str) -> Response {
    state.stats.record(V::ROUTE, stats::Event::Rejected);
    V::bad_request(message)
}

/// Checks a presented key against the configured one.
pub(crate) fn check_key(keys: &Keys, presented: Option<&str>) -> Result<(), AuthError> {
    match presented.map(str::trim) {
        None | Some("") => Err(AuthError::Missing),
        Some(k) => match &keys.key {
            Some(expected) if expected != k => Err(AuthError::Invalid),
            _ => Ok(()),
        },
    }
}

async fn stats_handler(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.stats.snapshot()).into_response()
}

/// The router: every vendor route, `/stats` and `/healthz`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/computervision/imageanalysis:analyze",
            post(vendors::azure::analyze_v4),
        )
        .route("/vision/v3.2/tag", post(vendors::azure::tag_v32))
        .route("/v1/images:annotate", post(vendors::google::annotate))
        .route("/", post(vendors::aws::detect_labels))
        .route(
            "/v2/users/{user}/apps/{app}/models/{model}/outputs",
            post(vendors::clarifai::outputs),
        )
        .route(
            "/v2/models/{model}/outputs",
            post(vendors::clarifai::outputs_short),
        )
        .route("/models/{*id}", post(vendors::huggingface::classify_image))
        // The inference router's form of the same route.
        .route(
            "/hf-inference/models/{*id}",
            post(vendors::huggingface::classify_image),
        )
        .route("/stats", get(stats_handler))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `modelVersion`-style string for responses.
pub(crate) fn model_version(state: &AppState) -> String {
    format!("standin-{}", state.model_name)
}
