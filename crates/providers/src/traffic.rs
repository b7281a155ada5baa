//! Traffic control: a GCRA rate limit (`governor`) at the configured rate, an adaptive pace
//! below it (halved on each throttling answer, raised step by step on success: the client
//! backs off as a whole instead of each request retrying on its own), bounded concurrency,
//! and retries with jittered exponential backoff under a retry budget.
//!
//! All waiting goes through `tokio::time`, and the limiter's clock reads `tokio::time` too
//! ([`TokioClock`]), so tests run on a paused tokio clock: hours of backoff take no time and
//! every delay is exact.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::Rng;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::definition::Limits;

/// A `governor` clock that reads `tokio::time`, so a paused test runtime controls it.
#[derive(Clone, Debug)]
pub struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

/// How requests are retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries of one request (after the first attempt).
    pub max_retries: u32,
    /// Backoff before the first retry; doubled each further retry.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Retries allowed over the whole run: `min_retries + ratio × requests sent`. Throttled
    /// requests count too; a vendor that keeps failing stops the run instead of multiplying
    /// its load.
    pub budget_ratio: f64,
    /// Retries always allowed, however few requests were sent.
    pub min_retries: u64,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Time allowed for one request with all its retries and waits, from its first send:
    /// a vendor that keeps asking to wait (a model "loading" for 20 s at every try) ends
    /// the request instead of holding it without end.
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    /// The policy a definition's limits give.
    pub fn from_limits(limits: &Limits) -> RetryPolicy {
        RetryPolicy {
            max_retries: limits.max_retries,
            timeout: Duration::from_secs_f64(limits.timeout_s),
            // Room for four timed-out attempts, and never less than a minute.
            max_elapsed: Duration::from_secs_f64(
                limits
                    .max_request_s
                    .unwrap_or((4.0 * limits.timeout_s).max(60.0)),
            ),
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based): `base × 2^retry`, capped, times a
    /// uniform jitter in [0.5, 1] ("equal jitter"), or the vendor's `retry_after` plus up to
    /// 20% when it gave one (never less than what the vendor asked).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        match retry_after {
            Some(wait) => wait.mul_f64(1.0 + 0.2 * rng.random::<f64>()),
            None => {
                let exp = self
                    .base_delay
                    .saturating_mul(1u32 << retry.min(20))
                    .min(self.max_delay);
                exp.mul_f64(0.5 + 0.5 * rng.random::<f64>())
            }
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            budget_ratio: 0.5,
            min_retries: 20,
            timeout: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// Counters a run reports (and the proxy exports).
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// HTTP requests sent (attempts, retries included).
    pub requests: AtomicU64,
    /// Retries among them.
    pub retries: AtomicU64,
    /// Answers that were throttling responses.
    pub throttled: AtomicU64,
    /// Transient failures (5xx, timeouts, malformed bodies, broken connections).
    pub transient: AtomicU64,
    /// Images answered.
    pub images: AtomicU64,
    /// Sum of request latencies, in microseconds.
    pub latency_us: AtomicU64,
}

impl TrafficStats {
    /// A snapshot as plain numbers.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            transient: self.transient.load(Ordering::Relaxed),
            images: self.images.load(Ordering::Relaxed),
            latency_seconds: self.latency_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// [`TrafficStats`] read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TrafficSnapshot {
    /// HTTP requests sent.
    pub requests: u64,
    /// Retries among them.
    pub retries: u64,
    /// Throttling answers.
    pub throttled: u64,
    /// Transient failures.
    pub transient: u64,
    /// Images answered.
    pub images: u64,
    /// Sum of request latencies.
    pub latency_seconds: f64,
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Additive-increase, multiplicative-decrease pacing under the configured rate.
#[derive(Debug)]
struct Pace {
    /// Current requests per second (≤ the configured rate).
    rate: f64,
    /// The configured rate.
    max: f64,
    /// When the next request may go.
    next: Option<Instant>,
    /// No second decrease before this (one throttle wave, one halving).
    calm_until: Option<Instant>,
}

impl Pace {
    /// Reserves a send time; returns how long to wait for it.
    fn slot(&mut self, now: Instant) -> Duration {
        if self.rate >= self.max {
            return Duration::ZERO; // the GCRA limiter alone governs
        }
        let at = self.next.map_or(now, |n| n.max(now));
        self.next = Some(at + Duration::from_secs_f64(1.0 / self.rate));
        at - now
    }

    fn throttled(&mut self, now: Instant) {
        if self.calm_until.is_some_and(|c| now < c) {
            return;
        }
        self.rate = (self.rate / 2.0).max(self.max / 64.0).max(0.05);
        self.calm_until = Some(now + Duration::from_secs_f64((2.0 / self.rate).min(5.0)));
    }

    fn succeeded(&mut self) {
        // About +max/20 per 20 answers near full speed: back to full rate in a few seconds.
        self.rate = (self.rate + self.max / 400.0 + 0.05).min(self.max);
    }
}

/// A rate limit shared with other processes (the replicas of a proxy), asked after the
/// local gate: `Duration::ZERO` when a turn was taken, else how long to wait before asking
/// again; an error (the shared store unreachable) is waited out, never ignored, so a
/// replica never sends past the shared limit.
pub trait SharedGate: Send + Sync {
    /// Takes a turn if one is free.
    fn try_acquire(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<Duration, String>> + Send + '_>,
    >;
}

/// The admission gate every request of one provider passes: shared by all images, commands
/// and proxy clients using that provider, so the vendor sees one client.
pub struct Traffic {
    limiter: Limiter,
    shared: Option<std::sync::Arc<dyn SharedGate>>,
    clock: TokioClock,
    slots: Semaphore,
    pace: Mutex<Pace>,
    policy: RetryPolicy,
    stats: TrafficStats,
}

impl Traffic {
    /// A gate at `rate` requests per second with `burst`, at most `concurrency` requests in
    /// flight.
    pub fn new(rate: f64, burst: u32, concurrency: u32, policy: RetryPolicy) -> Traffic {
        let period = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let clock = TokioClock::default();
        Traffic {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            shared: None,
            clock,
            slots: Semaphore::new(concurrency.max(1) as usize),
            pace: Mutex::new(Pace {
                rate: rate.max(1e-6),
                max: rate.max(1e-6),
                next: None,
                calm_until: None,
            }),
            policy,
            stats: TrafficStats::default(),
        }
    }

    /// The gate a definition's limits describe.
    pub fn from_limits(limits: &Limits) -> Traffic {
        Traffic::new(
            limits.requests_per_second,
            limits.burst,
            limits.max_concurrency,
            RetryPolicy::from_limits(limits),
        )
    }

    /// Also waits for `gate` (the limit shared by every replica) before each request.
    pub fn with_shared_gate(mut self, gate: std::sync::Arc<dyn SharedGate>) -> Traffic {
        self.shared = Some(gate);
        self
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The counters.
    pub fn stats(&self) -> &TrafficStats {
        &self.stats
    }

    /// Waits for a concurrency slot, the adaptive pace and the rate limit; the request may
    /// go while the permit is held.
    pub async fn admit(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring can only wait.
        let permit = loop {
            if let Ok(p) = self.slots.acquire().await {
                break p;
            }
        };
        let wait = self.with_pace(|p| p.slot(Instant::now()));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
        if let Some(gate) = &self.shared {
            loop {
                match gate.try_acquire().await {
                    Ok(wait) if wait.is_zero() => break,
                    Ok(wait) => tokio::time::sleep(wait).await,
                    Err(e) => {
                        tracing::warn!("shared rate limit unreachable, waiting: {e}");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        permit
    }

    fn with_pace<T>(&self, f: impl FnOnce(&mut Pace) -> T) -> T {
        f(&mut self.pace.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A throttling answer: halves the pace (once per wave of throttles).
    pub fn throttled(&self) {
        self.with_pace(|p| p.throttled(Instant::now()));
    }

    /// An answer: the pace climbs back toward the configured rate.
    pub fn succeeded(&self) {
        self.with_pace(Pace::succeeded);
    }

    /// The current pace, requests per second.
    pub fn current_rate(&self) -> f64 {
        self.with_pace(|p| p.rate)
    }

    /// Takes one retry from the run's retry budget; `false` when it is spent.
    pub fn take_retry(&self) -> bool {
        let requests = self.stats.requests.load(Ordering::Relaxed);
        let allowed = self.policy.min_retries + (self.policy.budget_ratio * requests as f64) as u64;
        let prev = self.stats.retries.fetch_add(1, Ordering::Relaxed);
        if prev >= allowed {
            self.stats.retries.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_requests_on_a_fake_clock() {
        let traffic = Traffic::new(50.0, 1, 64, RetryPolicy::default());
        let start = Instant::now();
        for _ in 0..101 {
            drop(traffic.admit().await);
        }
        // 100 gaps of 20 ms: exactly 2 s of (virtual) time.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1999) && elapsed <= Duration::from_millis(2010),
            "{elapsed:?}"
        );
        assert_eq!(traffic.stats().snapshot().requests, 101);
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_halve_the_pace_and_successes_restore_it() {
        let traffic = Traffic::new(40.0, 1, 8, RetryPolicy::default());
        traffic.throttled();
        traffic.throttled(); // same wave: one halving
        assert_eq!(traffic.current_rate(), 20.0);
        let start = Instant::now();
        for _ in 0..21 {
            drop(traffic.admit().await);
        }
        // 20 gaps at 20/s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(999) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        traffic.throttled();
        assert_eq!(traffic.current_rate(), 10.0);
        for _ in 0..1000 {
            traffic.succeeded();
        }
        assert_eq!(traffic.current_rate(), 40.0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let traffic = Traffic::new(1e6, 1000, 2, RetryPolicy::default());
        let a = traffic.admit().await;
        let _b = traffic.admit().await;
        let third = tokio::time::timeout(Duration::from_secs(60), traffic.admit()).await;
        assert!(third.is_err(), "a third request went out with two slots");
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), traffic.admit())
                .await
                .is_ok()
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for retry in 0..12 {
            let d = policy.delay(retry, None, &mut rng);
            let cap = (policy.base_delay * (1 << retry)).min(policy.max_delay);
            assert!(d >= cap / 2 && d <= cap, "retry {retry}: {d:?} vs {cap:?}");
        }
        for _ in 0..100 {
            let d = policy.delay(0, Some(Duration::from_secs(5)), &mut rng);
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(6));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_budget_caps_retries() {
        let policy = RetryPolicy {
            min_retries: 3,
            budget_ratio: 0.5,
            ..RetryPolicy::default()
        };
        let traffic = Traffic::new(1e6, 1000, 8, policy);
        assert!((0..3).all(|_| traffic.take_retry()));
        assert!(!traffic.take_retry());
        for _ in 0..4 {
            drop(traffic.admit().await);
        }
        // 4 requests → 2 more retries.
        assert!(traffic.take_retry() && traffic.take_retry());
        assert!(!traffic.take_retry());
    }
}
