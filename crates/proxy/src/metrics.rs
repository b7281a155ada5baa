//! `GET /metrics`: Prometheus text format, for the operator's key only (it names every
//! client and its spend).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::state::{LATENCY_BUCKETS, MB, ProxyState, Served};

/// The process's peak resident memory in bytes (Linux: `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub(crate) async fn metrics(
    State(state): State<Arc<ProxyState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.operator(&headers)?;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            if labels.is_empty() {
                out.push_str(&format!("{name} {v}\n"));
            } else {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
    };
    let per_provider = |f: &dyn Fn(&Served) -> f64| -> Vec<(String, f64)> {
        state
            .providers
            .iter()
            .map(|s| (format!("provider=\"{}\"", label_value(&s.def.name)), f(s)))
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
        .map(|c| {
            (
                format!("client=\"{}\"", label_value(&c.name)),
                c.wallet.spent_usd(),
            )
        })
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
    let limit_mb = (state.limits.max_memory_bytes / MB).max(1);
    let free_mb = state.memory.available_permits() as u64;
    family(
        "robustify_request_memory_bytes",
        "Bytes of image memory held by requests in flight (estimated, reserved before work).",
        "gauge",
        vec![(
            String::new(),
            (limit_mb.saturating_sub(free_mb) * MB) as f64,
        )],
    );
    if let Some(peak) = peak_rss_bytes() {
        family(
            "robustify_process_peak_resident_bytes",
            "The process's peak resident memory.",
            "gauge",
            vec![(String::new(), peak as f64)],
        );
    }
    // The latency histogram, written out by hand: `family` takes one value a row.
    {
        let l = state.latency.lock().unwrap_or_else(|e| e.into_inner());
        let name = "robustify_request_duration_seconds";
        out.push_str(&format!(
            "# HELP {name} Time from a request's arrival to its answer.\n# TYPE {name} histogram\n"
        ));
        for (route, h) in l.iter() {
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
                out.push_str(&format!(
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}\n"
                ));
            }
            out.push_str(&format!(
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!(
                "{name}_sum{{route=\"{route}\"}} {}\n",
                h.sum_seconds
            ));
            out.push_str(&format!("{name}_count{{route=\"{route}\"}} {}\n", h.count));
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// A Prometheus label value: backslash, double quote and newline escaped as the text
/// format asks (the config already refuses such names; this keeps /metrics parseable
/// whatever a name holds).
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod label_tests {
    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(super::label_value("team-a"), "team-a");
        assert_eq!(
            super::label_value("a\"} 1\nfake{x=\"\\"),
            "a\\\"} 1\\nfake{x=\\\"\\\\"
        );
    }
}
