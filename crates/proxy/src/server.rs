//! The routes: `POST /v1/certify`, `POST /v1/predict`, `GET /v1/providers`, `GET /healthz`,
//! `GET /metrics`.
//!
//! A request passes, in order: the client key (401), the client's rate (429), its
//! parameters and image (400, 413), the client's wallet, which holds the request's
//! worst-case cost before anything is sent (402), then the provider's shared gate, budget
//! and log. The hold is settled to what the answers cost.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use robustify_denoiser::{Denoised, Denoiser, registry};
use robustify_providers::{
    BudgetLimits, Credentials, DrawContext, HttpProvider, Ledger, Provider, ProviderClassifier,
    ProviderDef, QueryLog, Traffic,
};
use robustify_smoothing::{CertifyParams, DecodeLimits, Image, PredictParams, SequentialParams};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, ProviderEntry, RequestLimits, hash_key};
use crate::wallet::Wallet;
use crate::{Error, Result};

/// One provider as served: shared by every client.
struct Served {
    def: ProviderDef,
    http: Arc<HttpProvider>,
    log: Option<Arc<QueryLog>>,
    denoisers: Vec<Arc<Denoiser>>,
}

impl Served {
    /// The denoiser a request asked for (`none` for none), or by default the one trained
    /// at σ (within 10%).
    fn denoiser(&self, asked: Option<&str>, sigma: f64) -> Result<Option<Arc<Denoiser>>, String> {
        let names = || {
            let n: Vec<&str> = self.denoisers.iter().map(|d| d.name()).collect();
            if n.is_empty() {
                "none".to_owned()
            } else {
                n.join(", ")
            }
        };
        match asked {
            Some("none") => Ok(None),
            Some(name) => self
                .denoisers
                .iter()
                .find(|d| d.name() == name)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("no denoiser {name:?} here; offered: {}", names())),
            None => registry::nearest_sigma(&self.denoisers, sigma, |d| d.sigma())
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "no denoiser for σ = {sigma} here (offered: {}); pass denoiser=none for plain randomized smoothing",
                        names()
                    )
                }),
        }
    }
}

/// Loads the denoisers `entry` offers (default: the shipped ones for `images`).
fn load_denoisers(entry: &ProviderEntry, images: &str) -> Result<Vec<Arc<Denoiser>>> {
    let err = |path: PathBuf, message: String| Error::Config { path, message };
    let dirs: Vec<PathBuf> = match &entry.denoisers {
        Some(names) => names
            .iter()
            .map(|n| registry::resolve(n).map_err(|e| err(n.into(), e.to_string())))
            .collect::<Result<_>>()?,
        None => registry::list()
            .map_err(|e| err(registry::shipped_dir(), e.to_string()))?
            .into_iter()
            .filter(|(c, _)| c.data == images)
            .map(|(_, dir)| dir)
            .collect(),
    };
    dirs.into_iter()
        .map(|d| {
            Denoiser::load(&d)
                .map(Arc::new)
                .map_err(|e| err(d, e.to_string()))
        })
        .collect()
}

struct Client {
    name: String,
    key_sha256: String,
    wallet: Wallet,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Everything the handlers share.
pub struct ProxyState {
    providers: Vec<Served>,
    clients: Vec<Client>,
    limits: RequestLimits,
    max_body: usize,
    responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl ProxyState {
    /// Sets up every provider (credentials from `env`, failing on a missing one) and client.
    pub fn new(config: &Config, env: impl Fn(&str) -> Option<String>) -> Result<Arc<ProxyState>> {
        let mut providers = Vec::new();
        for entry in &config.providers {
            let def = ProviderDef::load(&entry.name)?;
            let creds = Credentials::from_lookup(&def, &env)?;
            let http = HttpProvider::new(
                &def,
                entry.endpoint.as_deref(),
                creds,
                Arc::new(Traffic::from_limits(&def.limits)),
                Arc::new(Ledger::new(
                    def.pricing.clone(),
                    BudgetLimits {
                        max_usd: entry.budget_usd,
                        max_queries: None,
                    },
                )),
            )?;
            let log = match &config.log_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Config {
                        path: dir.clone(),
                        message: e.to_string(),
                    })?;
                    let path = dir.join(format!("{}.jsonl", def.name));
                    let resume = path.exists().then_some(path.as_path());
                    Some(Arc::new(QueryLog::open(&path, resume)?))
                }
                None => None,
            };
            let denoisers = load_denoisers(entry, &def.images)?;
            providers.push(Served {
                def,
                http: Arc::new(http),
                log,
                denoisers,
            });
        }
        let clients = config
            .clients
            .iter()
            .map(|c| Client {
                name: c.name.clone(),
                key_sha256: c.key_sha256.to_ascii_lowercase(),
                wallet: Wallet::new(c.budget_usd),
                limiter: c
                    .requests_per_minute
                    .and_then(NonZeroU32::new)
                    .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm).allow_burst(rpm))),
            })
            .collect();
        Ok(Arc::new(ProxyState {
            providers,
            clients,
            limits: config.limits.clone(),
            max_body: config.max_body_bytes,
            responses: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Syncs every query log to disk.
    pub fn flush(&self) {
        for p in &self.providers {
            if let Some(log) = &p.log
                && let Err(e) = log.sync()
            {
                eprintln!("warning: {e}");
            }
        }
    }

    fn count(&self, route: &'static str, status: StatusCode) {
        let mut m = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route, status.as_u16())).or_default() += 1;
    }

    fn client(&self, headers: &HeaderMap) -> Option<&Client> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))?;
        let hash = hash_key(presented.trim());
        // Compare every entry in full, so timing says nothing about which key is close.
        let mut found = None;
        for c in &self.clients {
            let equal = c
                .key_sha256
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if equal {
                found = Some(c);
            }
        }
        found
    }
}

/// A JSON error `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Parameters, from the query string or a multipart `params` part (JSON).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    provider: Option<String>,
    sigma: Option<f64>,
    n0: Option<u64>,
    n: Option<u64>,
    alpha: Option<f64>,
    seed: Option<u64>,
    /// `fixed` or `sequential`; sequential is the default when `target_radius` is given.
    mode: Option<String>,
    /// Sequential mode: the radius to decide about.
    target_radius: Option<f64>,
    /// Sequential mode: most estimation draws (default `n`).
    max_draws: Option<u64>,
    /// A denoiser the provider offers, or `none`; default: the one trained at σ.
    denoiser: Option<String>,
}

/// The image bytes and parameters of a request: raw body, or multipart with an `image` part
/// and an optional `params` part.
async fn read_request(request: Request, query: Params) -> Result<(Bytes, Params), Response> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let too_big = |e: String| {
        if e.contains("length limit") {
            error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e)
        } else {
            error(StatusCode::BAD_REQUEST, "bad_request", e)
        }
    };
    if !multipart {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| too_big(e.body_text()))?;
        return Ok((body, query));
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| too_big(e.body_text()))?;
    let (mut image, mut params) = (None, query);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| too_big(e.body_text()))?
    {
        match field.name() {
            Some("image") => image = Some(field.bytes().await.map_err(|e| too_big(e.body_text()))?),
            Some("params") => {
                let bytes = field.bytes().await.map_err(|e| too_big(e.body_text()))?;
                params = serde_json::from_slice(&bytes).map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_params",
                        format!("params part: {e}"),
                    )
                })?;
            }
            _ => {}
        }
    }
    let image = image.ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "no_image",
            "multipart request without an `image` part",
        )
    })?;
    Ok((image, params))
}

enum Job {
    Certify(CertifyParams),
    Sequential(SequentialParams),
    Predict(PredictParams),
}

impl Job {
    fn draws(&self) -> u64 {
        match self {
            Job::Certify(p) => p.n0() + p.n(),
            Job::Sequential(p) => p.n0() + p.max_draws(),
            Job::Predict(p) => p.n(),
        }
    }
}

async fn run(
    state: Arc<ProxyState>,
    route: &'static str,
    headers: HeaderMap,
    query: Params,
    request: Request,
) -> Response {
    let response = handle(&state, route, headers, query, request).await;
    state.count(route, response.status());
    response
}

async fn handle(
    state: &ProxyState,
    route: &'static str,
    headers: HeaderMap,
    query: Params,
    request: Request,
) -> Response {
    let Some(client) = state.client(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is needed (Authorization: Bearer KEY, or x-api-key)",
        );
    };
    if let Some(limiter) = &client.limiter
        && let Err(not_until) = limiter.check()
    {
        use governor::clock::{Clock, DefaultClock};
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        );
        if let Ok(v) = (wait.as_secs() + 1).to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let (body, p) = match read_request(request, query).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let served = match &p.provider {
        Some(name) => state.providers.iter().find(|s| &s.def.name == name),
        None => state.providers.first(),
    };
    let Some(served) = served else {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_provider",
            "no such provider here (see /v1/providers)",
        );
    };
    let bad = |e: String| error(StatusCode::BAD_REQUEST, "bad_params", e);
    let sequential = match p.mode.as_deref() {
        None => route == "certify" && p.target_radius.is_some(),
        Some("sequential") => true,
        Some("fixed") => false,
        Some(other) => return bad(format!("mode must be fixed or sequential, not {other:?}")),
    };
    let (Some(sigma), Some(n)) = (p.sigma, p.n.or(p.max_draws)) else {
        return bad("sigma and n are required".into());
    };
    let alpha = p.alpha.unwrap_or(0.001);
    let batch = served.http.preferred_batch();
    let job = match route {
        "certify" if sequential => {
            let Some(n0) = p.n0 else {
                return bad("n0 is required".into());
            };
            match SequentialParams::new(sigma, n0, p.max_draws.unwrap_or(n), alpha, p.target_radius)
                .and_then(|c| c.with_batch_size(batch))
            {
                Ok(c) => Job::Sequential(c),
                Err(e) => return bad(e.to_string()),
            }
        }
        "certify" => {
            let Some(n0) = p.n0 else {
                return bad("n0 is required".into());
            };
            match CertifyParams::new(sigma, n0, n, alpha).and_then(|c| c.with_batch_size(batch)) {
                Ok(c) => Job::Certify(c),
                Err(e) => return bad(e.to_string()),
            }
        }
        _ => match PredictParams::new(sigma, n, alpha).and_then(|c| c.with_batch_size(batch)) {
            Ok(c) => Job::Predict(c),
            Err(e) => return bad(e.to_string()),
        },
    };
    if job.draws() > state.limits.max_n {
        return bad(format!("at most {} draws per request", state.limits.max_n));
    }
    let denoiser = match served.denoiser(p.denoiser.as_deref(), sigma) {
        Ok(d) => d,
        Err(message) => {
            return error(StatusCode::BAD_REQUEST, "no_denoiser", message);
        }
    };
    let denoiser_name = denoiser.as_ref().map_or("none", |d| d.name()).to_owned();
    let image = match Image::decode(&body, &DecodeLimits::default()) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_image", e.to_string()),
    };
    let worst = served.def.pricing.cost_usd(job.draws(), false);
    let hold = match client.wallet.reserve(worst) {
        Ok(h) => h,
        Err(left) => {
            return (
                StatusCode::PAYMENT_REQUIRED,
                axum::Json(json!({"error": {
                    "code": "budget_exhausted",
                    "message": format!("this request may cost ${worst:.4}; ${left:.4} of the client's budget is left"),
                    "remaining_usd": left,
                }})),
            )
                .into_response();
        }
    };
    let seed = p.seed.unwrap_or(0);
    let mut classifier = ProviderClassifier::new(served.http.clone() as Arc<dyn Provider>);
    if let Some(log) = &served.log {
        classifier = classifier.with_log(
            log.clone(),
            DrawContext {
                image: hex::encode(Sha256::digest(&body)),
                provider: served.def.name.clone(),
                denoiser: denoiser_name.clone(),
                sigma,
                seed,
            },
        );
    }
    let classifier = Denoised::new(classifier, denoiser);
    let result = match &job {
        Job::Certify(params) => robustify_smoothing::certify(&classifier, &image, params, seed)
            .await
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
        Job::Sequential(params) => {
            robustify_smoothing::certify_sequential(&classifier, &image, params, seed)
                .await
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        }
        Job::Predict(params) => robustify_smoothing::predict(&classifier, &image, params, seed)
            .await
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
    };
    let cost = classifier.inner().spent_usd();
    hold.settle(cost);
    match result {
        Ok(mut v) => {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("provider".into(), served.def.name.clone().into());
                obj.insert("cost_usd".into(), cost.into());
                obj.insert("reused".into(), classifier.inner().reused().into());
                obj.insert("denoiser".into(), denoiser_name.into());
                obj.insert("client".into(), client.name.clone().into());
            }
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        Err(e) => {
            if robustify_providers::Error::is_budget_in(&e) {
                error(
                    StatusCode::PAYMENT_REQUIRED,
                    "provider_budget_exhausted",
                    e.to_string(),
                )
            } else {
                error(StatusCode::BAD_GATEWAY, "provider_failed", e.to_string())
            }
        }
    }
}

async fn certify(
    State(state): State<Arc<ProxyState>>,
    Query(query): Query<Params>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    run(state, "certify", headers, query, request).await
}

async fn predict(
    State(state): State<Arc<ProxyState>>,
    Query(query): Query<Params>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    run(state, "predict", headers, query, request).await
}

async fn providers(State(state): State<Arc<ProxyState>>) -> Response {
    let list: Vec<Value> = state
        .providers
        .iter()
        .map(|s| {
            json!({
                "name": s.def.name,
                "description": s.def.description,
                "adapter": s.def.adapter,
                "usd_per_1000": s.def.pricing.tiers.first().map(|t| t.usd_per_1000),
                "denoisers": s.denoisers.iter().map(|d| json!({
                    "name": d.name(),
                    "sigma": d.sigma(),
                    "arch": d.card().arch.name(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// Prometheus text format.
async fn metrics(State(state): State<Arc<ProxyState>>) -> Response {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    let per_provider = |f: &dyn Fn(&Served) -> f64| -> Vec<(String, f64)> {
        state
            .providers
            .iter()
            .map(|s| (format!("provider=\"{}\"", s.def.name), f(s)))
            .collect()
    };
    let t = |s: &Served| s.http.traffic().stats().snapshot();
    family(
        "robustify_provider_requests_total",
        "HTTP requests sent to the provider.",
        "counter",
        per_provider(&|s| t(s).requests as f64),
    );
    family(
        "robustify_provider_images_total",
        "Images the provider answered (paid queries).",
        "counter",
        per_provider(&|s| t(s).images as f64),
    );
    family(
        "robustify_provider_spend_usd_total",
        "Dollars billed by the provider.",
        "counter",
        per_provider(&|s| s.http.ledger().spent_usd()),
    );
    family(
        "robustify_provider_throttled_total",
        "Throttling answers.",
        "counter",
        per_provider(&|s| t(s).throttled as f64),
    );
    family(
        "robustify_provider_retries_total",
        "Retried requests.",
        "counter",
        per_provider(&|s| t(s).retries as f64),
    );
    family(
        "robustify_provider_latency_seconds_sum",
        "Sum of request latencies.",
        "counter",
        per_provider(&|s| t(s).latency_seconds),
    );
    family(
        "robustify_provider_latency_seconds_count",
        "Requests timed.",
        "counter",
        per_provider(&|s| t(s).requests as f64),
    );
    let clients: Vec<(String, f64)> = state
        .clients
        .iter()
        .map(|c| (format!("client=\"{}\"", c.name), c.wallet.spent()))
        .collect();
    family(
        "robustify_client_spend_usd_total",
        "Dollars spent per client.",
        "counter",
        clients,
    );
    let responses: Vec<(String, f64)> = state
        .responses
        .lock()
        .map(|m| {
            m.iter()
                .map(|((route, status), n)| {
                    (format!("route=\"{route}\",status=\"{status}\""), *n as f64)
                })
                .collect()
        })
        .unwrap_or_default();
    family(
        "robustify_responses_total",
        "Responses by route and status.",
        "counter",
        responses,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The router.
pub fn router(state: Arc<ProxyState>) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/v1/certify", post(certify))
        .route("/v1/predict", post(predict))
        .route("/v1/providers", get(providers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then waits for requests in flight and
/// syncs the query logs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flush = state.clone();
    let syncing: Vec<_> = state
        .providers
        .iter()
        .filter_map(|s| s.log.as_ref().map(QueryLog::spawn_syncer))
        .collect();
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    for s in syncing {
        s.abort();
    }
    flush.flush();
    served
}
