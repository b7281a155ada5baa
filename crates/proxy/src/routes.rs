//! `POST /v1/certify`, `POST /v1/predict`, `GET /v1/providers`.
//!
//! A request passes, in order: the client key (401), the client's rate (429), its body
//! within the body timeout (408, 413), its parameters with every count checked (400), the
//! image's declared size against the request memory ceiling (413: draws go in smaller
//! batches where that is enough), the client's wallet, which holds the request's worst-case
//! cost before anything is sent (402), its share of the proxy's memory (503 when not free
//! in time), strict decoding (400), then the provider's shared gate, budget and log. The
//! hold is settled to what the vendor billed, timed-out requests included.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use robustify_pipeline::{
    Answers, CertificateRecord, Mode, Plan, PlanRequest, RecordContext, compose, draw_context,
    sha256_hex,
};
use robustify_providers::{BudgetLimits, LabelRule, Ledger, Provider};
use robustify_smoothing::{Image, MemoryBudget};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::state::{Client, MB, ProxyState, Served};

/// Parameters, from the query string or a multipart `params` part (JSON).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
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
    /// The image's name in the certificate [default: its SHA-256].
    name: Option<String>,
}

/// The plan `p` asks of `route` (`certify` or `predict`), by the pipeline's one rule (a
/// certification is sequential exactly when a target radius is given), refused when a
/// value is out of range or the draws exceed `max_n`.
pub(crate) fn plan(p: &Params, route: &str, max_n: u64) -> Result<Plan, ApiError> {
    let bad = |e: String| ApiError::bad("bad_params", e);
    let mode = if route == "predict" {
        Some(Mode::Predict)
    } else {
        p.mode
            .as_deref()
            .map(Mode::parse_certify)
            .transpose()
            .map_err(|e| bad(e.to_string()))?
    };
    let sigma = p.sigma.ok_or_else(|| bad("sigma is required".into()))?;
    let request = PlanRequest {
        n0: p.n0,
        n: p.n,
        mode,
        target_radius: p.target_radius,
        max_draws: p.max_draws,
        ..PlanRequest::new(sigma, p.alpha.unwrap_or(0.001))
    };
    // The batch is set once the image's size is known.
    let plan = Plan::new(&request, 1).map_err(|e| bad(e.to_string()))?;
    if plan.max_draws() > max_n {
        return Err(bad(format!(
            "{} draws asked; at most {max_n} draws per request",
            plan.max_draws()
        )));
    }
    Ok(plan)
}

/// The image bytes and parameters of a request: raw body, or multipart with an `image`
/// part and an optional `params` part; all of it within the body timeout.
async fn read_request(
    request: Request,
    query: Params,
    timeout: std::time::Duration,
) -> Result<(Bytes, Params), ApiError> {
    tokio::time::timeout(timeout, read_body(request, query))
        .await
        .unwrap_or(Err(ApiError::BodyTimeout(timeout.as_secs_f64())))
}

async fn read_body(request: Request, query: Params) -> Result<(Bytes, Params), ApiError> {
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let too_big = |e: String| {
        if e.contains("length limit") {
            ApiError::TooLarge(e)
        } else {
            ApiError::bad("bad_request", e)
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
                params = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad("bad_params", format!("params part: {e}")))?;
            }
            _ => {}
        }
    }
    let image = image
        .ok_or_else(|| ApiError::bad("no_image", "multipart request without an `image` part"))?;
    Ok((image, params))
}

/// A smoothing error as an answer: the provider's budget (402) or its failure (502).
fn provider_error(e: robustify_smoothing::Error) -> ApiError {
    if robustify_providers::Error::is_budget_in(&e) {
        ApiError::ProviderBudget(e.to_string())
    } else if robustify_providers::Error::is_store_in(&e) {
        // The answer store cannot be written: what was paid is kept in memory and charged;
        // nothing more is bought until it can (503: try again later).
        ApiError::Busy(e.to_string())
    } else {
        ApiError::ProviderFailed(e.to_string())
    }
}

async fn handle(
    state: &ProxyState,
    route: &'static str,
    headers: &HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
    request: Request,
    watch: &ClientWatch,
) -> Result<(CertificateRecord, String), ApiError> {
    let client = state.client(headers)?;
    check_rate(client)?;
    // One client cannot hold more than its share of connections open.
    let _slot = client.in_flight.clone().try_acquire_owned().map_err(|_| {
        ApiError::TooManyInFlight(format!(
            "client {} has {} requests in flight already (max_concurrent_requests)",
            client.name, client.max_in_flight
        ))
    })?;
    let Query(query) = query.map_err(|e| ApiError::bad("bad_params", e.body_text()))?;
    // The body's bytes come out of the same memory pool as the certifications: its
    // declared length (or the largest body allowed, when it declares none) is held before
    // a byte of it is read.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(state.max_body as u64)
        .min(state.max_body as u64);
    let body_mb = declared.div_ceil(MB).max(1);
    let _body_memory = memory_permit(state, body_mb).await?;
    let (body, p) = read_request(request, query, state.body_timeout()).await?;
    let served = served(state, p.provider.as_deref())?;
    let plan = plan(&p, route, state.limits.max_n)?;
    let denoiser = served
        .denoiser(p.denoiser.as_deref(), plan.sigma())
        .map_err(|m| ApiError::bad("no_denoiser", m))?;
    let (plan, megabytes) = fit_memory(state, served, &body, plan)?;

    // The client holds its draws plus the slack for billed timeouts; the vendor is asked
    // for no unit beyond that (the request's allowance), so the settlement never exceeds
    // the hold.
    let draws = plan.max_draws();
    let units =
        draws.saturating_add((draws as f64 * state.limits.billed_retry_slack).ceil() as u64);
    let allowance = Arc::new(Ledger::new(
        served.def.pricing.clone(),
        BudgetLimits {
            max_usd: None,
            max_queries: Some(units),
        },
    ));
    watch.watch(allowance.clone());
    let worst = served.def.pricing.cost_usd(units, false);
    let hold = crate::hold::hold(state, client, served, worst).await?;
    // The body's share counts towards the request's (the decoded image and its draws are
    // by far the larger part): only the rest is waited for.
    let whole = megabytes.min(u64::from(state.memory_mb));
    let _memory = memory_permit(state, whole.saturating_sub(body_mb)).await?;
    let image =
        Image::decode(&body, &state.request_memory().decode_limits()).map_err(|e| match e {
            robustify_smoothing::Error::TooLarge(m) => ApiError::TooLarge(m),
            e => ApiError::bad("bad_image", e.to_string()),
        })?;

    let seed = p.seed.unwrap_or(0);
    let denoiser_name = denoiser.as_ref().map_or("none", |d| d.name()).to_owned();
    let image_sha256 = sha256_hex(&body);
    let mut context = draw_context(
        &image_sha256,
        &served.answer_key,
        &denoiser_name,
        plan.sigma(),
        seed,
    );
    context.client = (!state.share_answers).then(|| client.name.clone());
    let answers = Answers {
        log: served.log.clone(),
        store: hold.answers(state),
        context,
        payer: client.name.clone(),
    };
    let classifier = compose(
        served.http.clone() as Arc<dyn Provider>,
        LabelRule::default(),
        answers,
        Some(allowance),
        denoiser,
    );
    let result = plan.run(&classifier, &image, seed).await;
    // What the vendor billed for this request, answered or not.
    let cost = classifier.inner().spent_usd();
    hold.settle_usd(cost).await;
    let outcome = result.map_err(provider_error)?;
    let record = CertificateRecord::new(
        &outcome,
        RecordContext {
            image: p.name.clone().unwrap_or_else(|| image_sha256.clone()),
            image_sha256: Some(image_sha256),
            provider: served.def.name.clone(),
            denoiser: denoiser_name,
            clean_label: None,
            reused: classifier.inner().reused(),
            cost_usd: cost,
        },
    );
    Ok((record, client.name.clone()))
}

/// 429 when the client is over its request rate.
fn check_rate(client: &Client) -> Result<(), ApiError> {
    if let Some(limiter) = &client.limiter
        && let Err(not_until) = limiter.check()
    {
        use governor::clock::{Clock, DefaultClock};
        return Err(ApiError::RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        });
    }
    Ok(())
}

/// The provider asked for (default: the first served).
fn served<'a>(state: &'a ProxyState, name: Option<&str>) -> Result<&'a Served, ApiError> {
    match name {
        Some(name) => state.providers.iter().find(|s| s.def.name == name),
        None => state.providers.first(),
    }
    .ok_or_else(|| {
        ApiError::bad(
            "unknown_provider",
            "no such provider here (see /v1/providers)",
        )
    })
}

/// Memory, from the image's header alone: the plan with the batch that fits the request's
/// ceiling and the megabytes it will hold, or a refusal before any work.
fn fit_memory(
    state: &ProxyState,
    served: &Served,
    body: &[u8],
    plan: Plan,
) -> Result<(Plan, u64), ApiError> {
    let (w, h) = Image::dimensions(body).map_err(|e| ApiError::bad("bad_image", e.to_string()))?;
    let batch = state
        .request_memory()
        .batch_for(w, h, served.http.preferred_batch())
        .map_err(|e| ApiError::TooLarge(e.to_string()))?;
    let plan = plan
        .with_batch_size(batch)
        .map_err(|e| ApiError::bad("bad_params", e.to_string()))?;
    let pixels = u64::from(w) * u64::from(h);
    let megabytes = MemoryBudget::estimate(pixels, batch as u64)
        .div_ceil(MB)
        .max(1);
    Ok((plan, megabytes))
}

/// The request's share of the proxy's memory, waited for at most the body timeout (503).
async fn memory_permit(
    state: &ProxyState,
    megabytes: u64,
) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    // Never more than the whole pool (rounding up could ask one megabyte too many, and a
    // request would then wait for ever).
    let permits = u32::try_from(megabytes)
        .unwrap_or(u32::MAX)
        .min(state.memory_mb);
    tokio::time::timeout(state.body_timeout(), state.memory.acquire_many(permits))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::Busy(format!(
                "the proxy's memory for requests is taken ({megabytes} MB asked); try again"
            ))
        })
}

/// Whether the client of a request is still there, and the request's vendor allowance,
/// which is closed when it is not: in-flight vendor requests finish and are charged, no
/// new draw is sent.
#[derive(Default)]
struct ClientWatch {
    inner: std::sync::Mutex<WatchState>,
}

#[derive(Default)]
struct WatchState {
    gone: bool,
    allowance: Option<Arc<Ledger>>,
}

/// Why a request's allowance is closed when its client hangs up.
const CLIENT_GONE: &str = "the client closed the connection: no new draws are sent (what the \
                           vendor billed is charged)";

impl ClientWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's allowance, closed at once if the client is already gone.
    fn watch(&self, allowance: Arc<Ledger>) {
        let mut s = self.lock();
        if s.gone {
            allowance.close(CLIENT_GONE);
        }
        s.allowance = Some(allowance);
    }

    fn client_gone(&self) {
        let mut s = self.lock();
        s.gone = true;
        if let Some(a) = &s.allowance {
            a.close(CLIENT_GONE);
        }
    }

    fn gone(&self) -> bool {
        self.lock().gone
    }
}

/// Tells the watch that the client went away when the response future is dropped before
/// it finished (hyper drops it when the connection closes).
struct OnHangUp(Option<Arc<ClientWatch>>);

impl Drop for OnHangUp {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.client_gone();
        }
    }
}

/// Runs a request in its own task, so that what it spends is settled and logged whether
/// or not its client waits for the answer.
async fn run(
    state: Arc<ProxyState>,
    route: &'static str,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
    request: Request,
) -> Response {
    let watch = Arc::new(ClientWatch::default());
    let mut guard = OnHangUp(Some(watch.clone()));
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (response, client) = match handle(&state, route, &headers, query, request, &watch).await
        {
            // The certificate document, its fields in the order the CLI writes them.
            Ok((record, client)) => (Json(record).into_response(), Some(client)),
            Err(e) => (e.into_response(), None),
        };
        let seconds = started.elapsed().as_secs_f64();
        let gone = watch.gone();
        state.count(route, response.status(), seconds);
        // The access log: one line a request (the client's name, never its key); 499 for
        // a client that hung up (nginx's code), with the status it would have had.
        tracing::info!(
            route,
            status = if gone {
                499
            } else {
                response.status().as_u16()
            },
            answer = response.status().as_u16(),
            client = client.as_deref().unwrap_or("-"),
            client_gone = gone,
            ms = (seconds * 1e3).round() as u64,
            "request"
        );
        response
    });
    let response = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("a request's task ended abnormally: {e}");
            ApiError::ProviderFailed("the request failed inside the proxy".into()).into_response()
        }
    };
    guard.0 = None;
    response
}

pub(crate) async fn certify(
    State(state): State<Arc<ProxyState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    run(state, "certify", headers, query, request).await
}

pub(crate) async fn predict(
    State(state): State<Arc<ProxyState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    run(state, "predict", headers, query, request).await
}

/// The providers and their denoisers, for any client (or the operator).
pub(crate) async fn providers(
    State(state): State<Arc<ProxyState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if state.client(&headers).is_err() {
        state
            .operator(&headers)
            .map_err(|_| ApiError::Unauthorized)?;
    }
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
    Ok(Json(Value::Array(list)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(n0: Option<u64>, n: Option<u64>, max_draws: Option<u64>, mode: &str) -> Params {
        Params {
            sigma: Some(0.25),
            n0,
            n,
            max_draws,
            mode: Some(mode.into()),
            target_radius: (mode == "sequential").then_some(0.1),
            ..Params::default()
        }
    }

    /// Any u64, with the edges and the sums that wrap drawn often.
    fn count() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..2000,
            Just(u64::MAX),
            Just(u64::MAX - 299),
            Just(robustify_smoothing::MAX_DRAWS),
            (0u64..64).prop_map(|k| 1u64 << k),
            any::<u64>(),
        ]
    }

    #[test]
    fn the_overflow_that_billed_300_draws_as_1_is_refused() {
        let p = params(Some(300), Some(18446744073709551317), None, "fixed");
        let err = plan(&p, "certify", 10_000).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No accepted request sends more draws than it declared, than `max_n`, or than
        /// the exact (unwrapped) sum of what it asked; so no accepted request can make the
        /// vendor bill more than the wallet held for it.
        #[test]
        fn accepted_jobs_never_exceed_what_was_held(
            n0 in proptest::option::of(count()),
            n in proptest::option::of(count()),
            max_draws in proptest::option::of(count()),
            mode in prop_oneof![Just("fixed"), Just("sequential")],
            route in prop_oneof![Just("certify"), Just("predict")],
            max_n in 1u64..100_000,
        ) {
            let p = params(n0, n, max_draws, mode);
            if let Ok(job) = plan(&p, route, max_n) {
                let asked: u128 = match &job {
                    Plan::Fixed(c) => u128::from(c.n0()) + u128::from(c.n()),
                    Plan::Sequential(c) => u128::from(c.n0()) + u128::from(c.max_draws()),
                    Plan::Predict(c) => u128::from(c.n()),
                };
                prop_assert_eq!(u128::from(job.max_draws()), asked);
                prop_assert!(job.max_draws() <= max_n);
                prop_assert!(job.max_draws() >= 1);
            }
        }

        /// Run for real against a counting classifier: the draws sent never exceed what
        /// the job declared (and so what the wallet held for it).
        #[test]
        fn certifications_send_at_most_the_declared_draws(
            n0 in 1u64..40,
            n in 1u64..300,
            mode in prop_oneof![Just("fixed"), Just("sequential")],
            route in prop_oneof![Just("certify"), Just("predict")],
            batch in 1usize..50,
            agree in 0u64..4,
        ) {
            let p = params(Some(n0), Some(n), None, mode);
            let job = match plan(&p, route, 10_000) {
                Ok(job) => job.with_batch_size(batch).unwrap(),
                // Too few draws to ever reach the target radius: refused, nothing sent.
                Err(e) => {
                    let text = format!("{e:?}");
                    prop_assert!(mode == "sequential" && text.contains("cannot be reached"), "{}", text);
                    return Ok(());
                }
            };
            let sent = counted_draws(&job, agree);
            prop_assert!(sent <= job.max_draws(), "{} sent, {} declared", sent, job.max_draws());
        }
    }

    /// A classifier that says "cat" except on every `agree`-th draw, counting images.
    struct Counting {
        sent: std::sync::atomic::AtomicU64,
        every: u64,
    }

    impl robustify_smoothing::BaseClassifier for Counting {
        type Error = std::io::Error;
        async fn classify(
            &self,
            draws: std::ops::Range<u64>,
            batch: &[Image],
        ) -> Result<Vec<String>, std::io::Error> {
            self.sent
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(draws
                .map(|d| {
                    if self.every > 0 && d % (self.every + 1) == 0 {
                        "dog".to_string()
                    } else {
                        "cat".to_string()
                    }
                })
                .collect())
        }
    }

    fn counted_draws(job: &Plan, every: u64) -> u64 {
        let c = Counting {
            sent: Default::default(),
            every,
        };
        let image = Image::filled(2, 2, 0.5).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(job.run(&c, &image, 0)).unwrap();
        c.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}
