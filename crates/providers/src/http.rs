//! [`HttpProvider`]: a vendor's wire format behind the traffic gate, the budget and the
//! retry policy.
//!
//! For each request: reserve its worst-case cost in the [`Ledger`], wait for the
//! [`Traffic`] gate (concurrency slot, throttling pause, rate limit), send with a timeout,
//! settle the cost of what was answered, and retry what is worth retrying (throttles and
//! transient failures, with jittered exponential backoff or the vendor's own wait) while the
//! retry budget lasts. Client errors (bad key, bad image) are never retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use robustify_smoothing::Image;

use crate::adapters::{Failure, Wire, wire_for};
use crate::budget::{BudgetLimits, Ledger};
use crate::credentials::Credentials;
use crate::definition::{Limits, MAX_LABEL_CHARS, ProviderDef};
use crate::provider::{Answer, BoxFuture, Delivered, Provider, Receipt};
use crate::redact::{Redactor, vendor_text};
use crate::traffic::Traffic;
use crate::{Error, Result};

/// Encodes an image as the vendor receives it: clipped to [0, 1], 8-bit PNG, never resized.
/// An image over the vendor's pixel or byte limit is refused before anything is sent.
pub fn encode(provider: &str, limits: &Limits, image: &Image) -> Result<Vec<u8>> {
    let reject = |message: String| Error::ImageRejected {
        provider: provider.to_owned(),
        message,
    };
    let pixels = u64::from(image.width()) * u64::from(image.height());
    if let Some(max) = limits.max_pixels
        && pixels > max
    {
        return Err(reject(format!(
            "{}×{} = {pixels} pixels, over the vendor's limit of {max} (robustify never resizes \
             silently: resize the image yourself)",
            image.width(),
            image.height()
        )));
    }
    let png = image.to_png().map_err(|e| reject(e.to_string()))?;
    if png.len() as u64 > limits.max_image_bytes {
        return Err(reject(format!(
            "the PNG is {} bytes, over the vendor's limit of {} bytes",
            png.len(),
            limits.max_image_bytes
        )));
    }
    Ok(png)
}

/// Checks that `endpoint` is an `http://` or `https://` URL with a host, before anything is
/// sent (a typo would otherwise be retried for a minute as a network failure).
pub fn check_endpoint(provider: &str, endpoint: &str) -> Result<()> {
    let refuse = |why: String| Error::Definition {
        path: format!("endpoint of {provider}").into(),
        message: format!("{endpoint:?} {why}"),
    };
    let url = reqwest::Url::parse(endpoint).map_err(|e| refuse(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(format!(
            "has scheme {:?}; only http:// and https:// are supported",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("has no host".into()));
    }
    Ok(())
}

/// Whether a failed send never reached a listening server: the connection was refused.
fn refused(e: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Bytes one image adds to a JSON request: its base64 text and the object around it.
fn request_bytes(png: &[u8]) -> u64 {
    (png.len() as u64).div_ceil(3) * 4 + 256
}

/// Adds image `i` to the last request of `chunks`, or starts a new one, so that no request
/// carries more than `images_per_request` images or (where the vendor limits it) more than
/// `max_request_bytes`; an image that cannot fit a request even alone is refused.
fn pack(
    limits: &Limits,
    chunks: &mut Vec<Vec<(usize, Vec<u8>)>>,
    i: usize,
    png: Vec<u8>,
) -> std::result::Result<(), String> {
    let per_request = limits.images_per_request.max(1) as usize;
    let cap = limits.max_request_bytes.unwrap_or(u64::MAX);
    let size = request_bytes(&png);
    if size.saturating_add(256) > cap {
        return Err(format!(
            "the image makes a request of about {size} bytes, over the vendor's limit of {cap}"
        ));
    }
    let fits = chunks.last().is_some_and(|c| {
        c.len() < per_request
            && c.iter()
                .map(|(_, p)| request_bytes(p))
                .sum::<u64>()
                .saturating_add(size)
                .saturating_add(256)
                <= cap
    });
    if fits {
        if let Some(last) = chunks.last_mut() {
            last.push((i, png));
        }
    } else {
        chunks.push(vec![(i, png)]);
    }
    Ok(())
}

/// A provider reached over HTTP.
pub struct HttpProvider {
    name: String,
    limits: Limits,
    wire: Box<dyn Wire>,
    client: reqwest::Client,
    traffic: Arc<Traffic>,
    ledger: Arc<Ledger>,
    /// This provider's credential values, scrubbed from every message it makes.
    redactor: Redactor,
    /// Where the credentials may go: the endpoint's scheme, host and port.
    origin: String,
}

/// Characters of a vendor's own words kept in an error message.
const VENDOR_TEXT_CHARS: usize = 300;

/// Why a response body was not read whole.
enum BodyError {
    /// Longer than the cap (declared or streamed).
    TooLong(String),
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// Reads `resp`'s body, refusing a declared or streamed length above `cap` bytes (an
/// endless body costs at most `cap` bytes of memory).
async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
) -> std::result::Result<Vec<u8>, BodyError> {
    if let Some(declared) = resp.content_length()
        && declared > cap
    {
        return Err(BodyError::TooLong(format!(
            "the response declares {declared} bytes, over the {cap}-byte limit \
             (limits.max_response_bytes); not read"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(BodyError::TooLong(format!(
                "the response is longer than the {cap}-byte limit \
                 (limits.max_response_bytes); cut off"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `scheme://host:port` of a URL, for comparing where a request goes.
fn origin_of(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// What a request's attempt came to, before retry decisions.
enum Attempt {
    /// The vendor answered; per image an answer or a failure.
    Answered(Vec<crate::adapters::ImageResult>),
    /// No usable answer for the whole request.
    Failed(Failure),
}

impl HttpProvider {
    /// A provider for `def` at `endpoint` (the definition's unless overridden), reading
    /// credentials from the environment, with its own traffic gate and a ledger under
    /// `budget`.
    pub fn from_env(
        def: &ProviderDef,
        endpoint: Option<&str>,
        budget: BudgetLimits,
    ) -> Result<HttpProvider> {
        let creds = Credentials::from_env(def)?;
        let traffic = Arc::new(Traffic::from_limits(&def.limits));
        let ledger = Arc::new(Ledger::new(def.pricing.clone(), budget));
        HttpProvider::new(def, endpoint, creds, traffic, ledger)
    }

    /// A provider sharing `traffic` and `ledger` (the proxy shares one gate per provider).
    pub fn new(
        def: &ProviderDef,
        endpoint: Option<&str>,
        creds: Credentials,
        traffic: Arc<Traffic>,
        ledger: Arc<Ledger>,
    ) -> Result<HttpProvider> {
        let endpoint = endpoint.unwrap_or(&def.endpoint);
        check_endpoint(&def.name, endpoint)?;
        let origin = reqwest::Url::parse(endpoint)
            .map(|u| origin_of(&u))
            .unwrap_or_default();
        let redactor = Redactor::new(creds.all().map(|s| s.expose().to_owned()));
        let wire = wire_for(def, endpoint, creds)?;
        // One process-wide TLS provider (ring); installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("robustify/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect would carry the credential headers (and on 307/308 the images) to
            // a host nobody configured: a 3xx is answered as an error naming the target.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Provider {
                provider: def.name.clone(),
                message: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        Ok(HttpProvider {
            name: def.name.clone(),
            limits: def.limits.clone(),
            wire,
            client,
            traffic,
            ledger,
            redactor,
            origin,
        })
    }

    /// The traffic gate (for its counters).
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// The ledger (for the spend).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn error(&self, message: String) -> Error {
        Error::Provider {
            provider: self.name.clone(),
            message: self.redactor.scrub(&message),
        }
    }

    /// A failure's message as it may be shown: the vendor's words cut short, escaped and
    /// scrubbed of every credential.
    fn sanitise(&self, failure: Failure) -> Failure {
        let clean = |m: String| vendor_text(&self.redactor.scrub(&m), VENDOR_TEXT_CHARS);
        match failure {
            Failure::Throttled {
                retry_after,
                message,
            } => Failure::Throttled {
                retry_after,
                message: clean(message),
            },
            Failure::Transient {
                retry_after,
                message,
            } => Failure::Transient {
                retry_after,
                message: clean(message),
            },
            Failure::Fatal { status, message } => Failure::Fatal {
                status,
                message: clean(message),
            },
        }
    }

    /// An answer within the bounds: at most `max_answer_labels` labels of at most
    /// [`MAX_LABEL_CHARS`] characters each (a warning says what was cut).
    fn bounded(&self, mut answer: Answer) -> Answer {
        let keep = self.limits.max_answer_labels as usize;
        let mut cut = 0;
        if answer.labels.len() > keep {
            cut = answer.labels.len() - keep;
            answer.labels.truncate(keep);
        }
        let mut shortened = 0;
        for l in &mut answer.labels {
            if l.label.chars().count() > MAX_LABEL_CHARS {
                l.label = l.label.chars().take(MAX_LABEL_CHARS).collect();
                shortened += 1;
            }
        }
        if cut > 0 || shortened > 0 {
            tracing::warn!(
                "{}: an answer had {cut} labels over the {keep} kept (limits.max_answer_labels) \
                 and {shortened} labels longer than {MAX_LABEL_CHARS} characters: cut",
                self.name
            );
        }
        answer
    }

    /// The failure for a 3xx answer: robustify never follows one.
    fn redirected(&self, status: u16, headers: &reqwest::header::HeaderMap) -> Failure {
        let target = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|loc| match reqwest::Url::parse(loc) {
                Ok(u) => format!("{}{}", origin_of(&u), u.path()),
                Err(_) => loc.split(['?', '#']).next().unwrap_or("").to_owned(),
            })
            .unwrap_or_else(|| "(no Location)".into());
        Failure::Fatal {
            status: Some(status),
            message: format!(
                "the vendor redirected the request ({status}) to {target}; robustify does not \
                 follow redirects, so that the credentials go only to {} (if the new address is \
                 the vendor's, give it as the endpoint)",
                self.origin
            ),
        }
    }

    /// One attempt: the request for `pngs`, its answer read within the timeout.
    async fn attempt(&self, pngs: &[Vec<u8>]) -> Result<(Attempt, u16, Duration, bool)> {
        let _permit = self.traffic.admit().await;
        // Built after admission: a signature (AWS) is only valid for minutes.
        let req = self.wire.request(pngs)?;
        let req_url = req.url.clone();
        let mut builder = self.client.post(&req.url).body(req.body);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let start = Instant::now();
        let timeout = self.traffic.policy().timeout;
        let cap = self.limits.max_response_bytes;
        let sent = tokio::time::timeout(timeout, async {
            let resp = builder.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            Ok::<_, reqwest::Error>((status, headers, read_capped(resp, cap).await))
        })
        .await;
        let latency = start.elapsed();
        // URL, status and timing only: credentials travel in headers, never logged.
        tracing::debug!(
            provider = %self.name,
            url = %req_url,
            images = pngs.len(),
            status = ?sent.as_ref().ok().and_then(|r| r.as_ref().ok()).map(|(s, _, _)| *s),
            latency_ms = latency.as_secs_f64() * 1e3,
            "request answered"
        );
        self.traffic
            .stats()
            .latency_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        let (attempt, status, billed) = match sent {
            // No answer in time: the vendor may have done (and billed) the work.
            Err(_) => (
                Attempt::Failed(Failure::Transient {
                    retry_after: None,
                    message: format!("no answer within {:.1} s", timeout.as_secs_f64()),
                }),
                0,
                true,
            ),
            // Nothing listens there: retrying for a minute would not help.
            Ok(Err(e)) if refused(&e) => (
                Attempt::Failed(Failure::Fatal {
                    status: None,
                    message: format!(
                        "connection refused by {} (is the endpoint right, and is the server up?)",
                        e.url()
                            .and_then(|u| u
                                .host_str()
                                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0))))
                            .unwrap_or_else(|| "the endpoint".into())
                    ),
                }),
                0,
                false,
            ),
            Ok(Err(e)) => (
                Attempt::Failed(Failure::Transient {
                    retry_after: None,
                    message: format!("request failed: {}", e.without_url()),
                }),
                0,
                false,
            ),
            Ok(Ok((status, headers, _))) if (300..400).contains(&status) => (
                Attempt::Failed(self.redirected(status, &headers)),
                status,
                false,
            ),
            // A success whose body could not be read whole: the vendor did (and billed)
            // the work; another status bills nothing.
            Ok(Ok((status, _, Err(e)))) => {
                let message = match e {
                    BodyError::TooLong(m) => m,
                    BodyError::Read(e) => {
                        format!("the response broke off: {}", e.without_url())
                    }
                };
                (
                    Attempt::Failed(Failure::Transient {
                        retry_after: None,
                        message: format!("HTTP {status}: {message}"),
                    }),
                    status,
                    (200..300).contains(&status),
                )
            }
            Ok(Ok((status, headers, Ok(body)))) => {
                let success = (200..300).contains(&status);
                match self.wire.parse(pngs.len(), status, &headers, &body) {
                    Ok(per_image) if per_image.len() == pngs.len() => (
                        Attempt::Answered(
                            per_image
                                .into_iter()
                                .map(|r| r.map(|a| self.bounded(a)))
                                .collect(),
                        ),
                        status,
                        false,
                    ),
                    // A 200 the adapter cannot read was still billed by the vendor.
                    Ok(per_image) => (
                        Attempt::Failed(Failure::Transient {
                            retry_after: None,
                            message: format!(
                                "{} answers for {} images",
                                per_image.len(),
                                pngs.len()
                            ),
                        }),
                        status,
                        success,
                    ),
                    Err(f) => (Attempt::Failed(f), status, success),
                }
            }
        };
        let attempt = match attempt {
            Attempt::Failed(f) => Attempt::Failed(self.sanitise(f)),
            Attempt::Answered(per_image) => Attempt::Answered(
                per_image
                    .into_iter()
                    .map(|r| r.map_err(|f| self.sanitise(f)))
                    .collect(),
            ),
        };
        Ok((attempt, status, latency, billed))
    }

    /// Sends one request's images, retrying what is worth it; one result per image.
    ///
    /// A request that timed out may have been done and billed by the vendor: its images are
    /// counted as billed in the ledger, and that cost stays with each image, in its receipt
    /// when a retry answers it, or in [`Error::BilledWithoutAnswer`] when none does, so that
    /// whoever pays for the request (a proxy client) is charged what the vendor bills.
    async fn send(
        &self,
        items: Vec<(usize, Vec<u8>)>,
        allowance: Option<&Ledger>,
    ) -> Vec<(usize, Result<Delivered>)> {
        let mut done = Vec::with_capacity(items.len());
        // (index, PNG, dollars already billed for it without an answer)
        let mut pending: Vec<(usize, Vec<u8>, f64)> =
            items.into_iter().map(|(i, png)| (i, png, 0.0)).collect();
        let unanswered = |err: Error, billed: f64| {
            if billed > 0.0 {
                Error::BilledWithoutAnswer {
                    source: Box::new(err),
                    billed_usd: billed,
                }
            } else {
                err
            }
        };
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut retries = 0u32;
        let started = tokio::time::Instant::now();
        loop {
            let reserved = self.ledger.reserve(pending.len() as u64).and_then(|r| {
                let allowed = allowance
                    .map(|a| a.reserve(pending.len() as u64))
                    .transpose()?;
                Ok((r, allowed))
            });
            let (reservation, allowed) = match reserved {
                Ok(r) => r,
                Err(err) => {
                    done.extend(pending.drain(..).map(|(i, _, billed)| {
                        (
                            i,
                            Err(unanswered(
                                Error::BudgetExhausted {
                                    message: err.budget_message().to_owned(),
                                },
                                billed,
                            )),
                        )
                    }));
                    break;
                }
            };
            let pngs: Vec<Vec<u8>> = pending.iter().map(|(_, p, _)| p.clone()).collect();
            let (attempt, status, latency, billed_anyway) = match self.attempt(&pngs).await {
                Ok(a) => a,
                Err(err) => {
                    let message = err.to_string();
                    done.extend(pending.drain(..).map(|(i, _, billed)| {
                        (i, Err(unanswered(self.error(message.clone()), billed)))
                    }));
                    break;
                }
            };
            let failure = match attempt {
                Attempt::Answered(per_image) => {
                    let answered = per_image.iter().filter(|r| r.is_ok()).count();
                    if answered > 0 {
                        self.traffic.succeeded();
                    }
                    let cost = reservation.settle(answered as u64);
                    if let Some(a) = allowed {
                        a.settle(answered as u64);
                    }
                    let each = if answered > 0 {
                        cost / answered as f64
                    } else {
                        0.0
                    };
                    self.traffic
                        .stats()
                        .images
                        .fetch_add(answered as u64, Ordering::Relaxed);
                    let mut again = Vec::new();
                    let mut last = None;
                    for ((i, png, billed), result) in pending.drain(..).zip(per_image) {
                        match result {
                            Ok(answer) => done.push((
                                i,
                                Ok(Delivered {
                                    answer,
                                    receipt: Receipt {
                                        status,
                                        latency_ms: latency.as_secs_f64() * 1e3,
                                        cost_usd: each + billed,
                                        attempts: retries + 1,
                                    },
                                }),
                            )),
                            Err(Failure::Fatal { status, message }) => done.push((
                                i,
                                Err(unanswered(
                                    Error::Refused {
                                        provider: self.name.clone(),
                                        status,
                                        message,
                                    },
                                    billed,
                                )),
                            )),
                            Err(f) => {
                                again.push((i, png, billed));
                                last = Some(f);
                            }
                        }
                    }
                    pending = again;
                    match last {
                        Some(f) => f,
                        None => break,
                    }
                }
                Attempt::Failed(f) => {
                    if billed_anyway {
                        let cost = reservation.settle(pending.len() as u64);
                        if let Some(a) = allowed {
                            a.settle(pending.len() as u64);
                        }
                        let each = cost / pending.len().max(1) as f64;
                        for item in &mut pending {
                            item.2 += each;
                        }
                    } else {
                        drop(reservation);
                    }
                    f
                }
            };
            let (retry_after, message, throttled) = match failure {
                Failure::Fatal { status, message } => {
                    done.extend(pending.drain(..).map(|(i, _, billed)| {
                        (
                            i,
                            Err(unanswered(
                                Error::Refused {
                                    provider: self.name.clone(),
                                    status,
                                    message: message.clone(),
                                },
                                billed,
                            )),
                        )
                    }));
                    break;
                }
                Failure::Throttled {
                    retry_after,
                    message,
                } => {
                    self.traffic
                        .stats()
                        .throttled
                        .fetch_add(1, Ordering::Relaxed);
                    (retry_after, message, true)
                }
                Failure::Transient {
                    retry_after,
                    message,
                } => {
                    self.traffic
                        .stats()
                        .transient
                        .fetch_add(1, Ordering::Relaxed);
                    (retry_after, message, false)
                }
            };
            let policy = self.traffic.policy();
            let delay = policy.delay(retries, retry_after, &mut rng);
            let elapsed = started.elapsed();
            let out_of_time = elapsed + delay > policy.max_elapsed;
            if retries >= policy.max_retries || out_of_time || !self.traffic.take_retry() {
                let why = if retries >= policy.max_retries {
                    format!("gave up after {} attempts", retries + 1)
                } else if out_of_time {
                    format!(
                        "gave up after {} attempts in {:.0} s (the next wait, {:.1} s, would pass \
                         the {:.0} s allowed for one request)",
                        retries + 1,
                        elapsed.as_secs_f64(),
                        delay.as_secs_f64(),
                        policy.max_elapsed.as_secs_f64()
                    )
                } else {
                    "retry budget of the run spent".to_string()
                };
                done.extend(pending.drain(..).map(|(i, _, billed)| {
                    (
                        i,
                        Err(unanswered(
                            self.error(format!("{why}; last failure: {message}")),
                            billed,
                        )),
                    )
                }));
                break;
            }
            if throttled {
                self.traffic.throttled();
            }
            // Shown by default (warn): a run that waits says why.
            tracing::warn!(
                "{}: retry {} in {:.1} s: {message}",
                self.name,
                retries + 1,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
            retries += 1;
        }
        done
    }
}

impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn preferred_batch(&self) -> usize {
        (self.limits.images_per_request as usize) * (self.limits.max_concurrency as usize)
    }

    fn images_per_request(&self) -> usize {
        self.limits.images_per_request as usize
    }

    fn classify_within<'a>(
        &'a self,
        images: &'a [Image],
        allowance: Option<&'a Ledger>,
    ) -> BoxFuture<'a, Vec<Result<Delivered>>> {
        Box::pin(async move {
            let n = images.len();
            let mut results: Vec<Option<Result<Delivered>>> = (0..n).map(|_| None).collect();
            let mut encoded = Vec::with_capacity(n);
            for (i, image) in images.iter().enumerate() {
                match encode(&self.name, &self.limits, image) {
                    Ok(png) => encoded.push((i, png)),
                    Err(err) => results[i] = Some(Err(err)),
                }
            }
            let mut chunks = Vec::new();
            for (i, png) in encoded {
                match pack(&self.limits, &mut chunks, i, png) {
                    Ok(()) => {}
                    Err(message) => {
                        results[i] = Some(Err(Error::ImageRejected {
                            provider: self.name.clone(),
                            message,
                        }))
                    }
                }
            }
            let sent =
                futures_util::future::join_all(chunks.into_iter().map(|c| self.send(c, allowance)))
                    .await;
            for (i, result) in sent.into_iter().flatten() {
                results[i] = Some(result);
            }
            results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(self.error("image lost in batching".into()))))
                .collect()
        })
    }
}
