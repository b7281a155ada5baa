//! Counters per route, served at `GET /stats` so tests can count a client's paid calls.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The vendor routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Azure Image Analysis 4.0.
    Azure,
    /// Azure Computer Vision v3.2.
    AzureV32,
    /// Google Cloud Vision.
    Google,
    /// AWS Rekognition.
    Aws,
    /// Clarifai.
    Clarifai,
    /// Hugging Face.
    Huggingface,
}

impl Route {
    const ALL: [Route; 6] = [
        Route::Azure,
        Route::AzureV32,
        Route::Google,
        Route::Aws,
        Route::Clarifai,
        Route::Huggingface,
    ];

    /// Name in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Route::Azure => "azure",
            Route::AzureV32 => "azure-v3.2",
            Route::Google => "google",
            Route::Aws => "aws",
            Route::Clarifai => "clarifai",
            Route::Huggingface => "huggingface",
        }
    }
}

/// Counters of one route.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    images: AtomicU64,
    throttled: AtomicU64,
    faults: AtomicU64,
    rejected: AtomicU64,
}

/// A snapshot of one route's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RouteSnapshot {
    /// Requests received.
    pub requests: u64,
    /// Images classified (answered with labels).
    pub images: u64,
    /// Requests answered with the throttling response.
    pub throttled: u64,
    /// Requests given an injected fault (5xx, timeout, garbage).
    pub faults: u64,
    /// Requests refused for bad credentials or bad input.
    pub rejected: u64,
}

/// All counters.
#[derive(Default)]
pub struct Stats {
    routes: [Counters; 6],
    /// SHA-256 of every image classified, to count repeats (the same noisy draw paid twice).
    seen: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    repeated: AtomicU64,
    /// When requests arrived: ms after the first, the first [`ARRIVALS_KEPT`] (to measure
    /// a client's rate in windows, as the vendor sees it).
    arrivals: std::sync::Mutex<Vec<u64>>,
    first_arrival: std::sync::OnceLock<std::time::Instant>,
}

/// Arrival times kept (8 bytes each): the rest are counted, not timed.
pub const ARRIVALS_KEPT: usize = 1 << 20;

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A request arrived.
    Request,
    /// Images were classified.
    Images(u64),
    /// A throttling answer.
    Throttled,
    /// An injected fault.
    Fault,
    /// Refused (auth or input).
    Rejected,
}

impl Stats {
    /// Records `event` on `route`.
    pub fn record(&self, route: Route, event: Event) {
        let c = &self.routes[Route::ALL.iter().position(|r| *r == route).unwrap_or(0)];
        let (counter, n) = match event {
            Event::Request => (&c.requests, 1),
            Event::Images(n) => (&c.images, n),
            Event::Throttled => (&c.throttled, 1),
            Event::Fault => (&c.faults, 1),
            Event::Rejected => (&c.rejected, 1),
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if matches!(event, Event::Request) {
            let first = self.first_arrival.get_or_init(std::time::Instant::now);
            let ms = first.elapsed().as_millis() as u64;
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            if arrivals.len() < ARRIVALS_KEPT {
                arrivals.push(ms);
            }
        }
    }

    /// When requests arrived, ms after the first (in arrival order; at most
    /// [`ARRIVALS_KEPT`]).
    pub fn arrivals_ms(&self) -> Vec<u64> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remembers the pixels of classified images; an image seen before counts as repeated.
    pub fn record_pixels(&self, images: &[robustify_smoothing::Image]) {
        use sha2::{Digest, Sha256};
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for image in images {
            let mut h = Sha256::new();
            h.update(image.width().to_le_bytes());
            h.update(image.height().to_le_bytes());
            for v in image.data() {
                h.update(v.to_le_bytes());
            }
            if !seen.insert(h.finalize().into()) {
                self.repeated.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Totals and per-route counters, as served at `/stats`.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut total = RouteSnapshot::default();
        let mut routes = serde_json::Map::new();
        for (route, c) in Route::ALL.iter().zip(&self.routes) {
            let s = RouteSnapshot {
                requests: c.requests.load(Ordering::Relaxed),
                images: c.images.load(Ordering::Relaxed),
                throttled: c.throttled.load(Ordering::Relaxed),
                faults: c.faults.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
            };
            total.requests += s.requests;
            total.images += s.images;
            total.throttled += s.throttled;
            total.faults += s.faults;
            total.rejected += s.rejected;
            routes.insert(
                route.name().into(),
                serde_json::to_value(s).unwrap_or_default(),
            );
        }
        let mut out = serde_json::to_value(total).unwrap_or_default();
        if let Some(obj) = out.as_object_mut() {
            obj.insert("routes".into(), serde_json::Value::Object(routes));
            let distinct = self.seen.lock().map_or(0, |s| s.len());
            obj.insert("distinct_images".into(), distinct.into());
            obj.insert(
                "repeated_images".into(),
                self.repeated.load(Ordering::Relaxed).into(),
            );
        }
        out
    }
}
