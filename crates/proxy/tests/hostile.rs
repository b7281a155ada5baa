//! The proxy against a hostile client and an unlucky vendor: each test is a way its money
//! or memory promises once broke (issue 17), run over real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::{identity_denoiser, png, proxy, vendor};
use robustify_proxy::hash_key;
use robustify_standin::server::FaultConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(vendor_url: &str, extra_top: &str, extra_provider: &str, extra_tail: &str) -> String {
    format!(
        r#"
operator_key_sha256 = "{op}"
store = "memory"
{extra_top}

[[providers]]
name = "google"
endpoint = "{vendor_url}"
denoisers = ["{den}"]
{extra_provider}

[[clients]]
name = "a"
key_sha256 = "{a}"
budget_usd = 0.375

[[clients]]
name = "b"
key_sha256 = "{b}"
{extra_tail}
"#,
        op = hash_key("key-op"),
        den = identity_denoiser().display(),
        a = hash_key("key-a"),
        b = hash_key("key-b"),
    )
}

async fn post(url: &str, key: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metrics(url: &str) -> String {
    reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth("key-op")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapping_draw_counts_are_refused_before_any_spend() {
    let (vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", "")).await;
    for query in [
        // n0 + n wraps to 1 in u64: this once billed 300 images against a $0.375 budget.
        "n0=300&n=18446744073709551317",
        "n0=18446744073709551615&n=1",
        "n0=1&n=18446744073709551615",
        "n0=2&n=1099511627776&target_radius=0.1",
        // Not a u64 at all.
        "n0=1&n=18446744073709551616",
        "n0=-1&n=5",
        "n0=1&n=5&alpha=NaN",
    ] {
        let (status, v) = post(
            &format!("{url}/v1/certify?sigma=0.25&{query}"),
            "key-a",
            png(),
        )
        .await;
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["error"]["code"], "bad_params", "{query}: {v}");
    }
    // σ outside (0, 1] (the help says so).
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=1e300&n0=1&n=5"),
        "key-a",
        png(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(vendor.stats().snapshot()["images"], 0);
}

/// A 6000×6000 grayscale PNG: 36 MP, about 35 KB.
fn bomb() -> Vec<u8> {
    let gray = image::GrayImage::new(6000, 6000);
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(gray)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_too_large_for_memory_are_refused_and_large_ones_go_in_small_batches() {
    let (vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    // 100 MB a request: a 1-megapixel image fits one draw at a time (24 + 72 MB).
    let limits = "[limits]\nmax_request_memory_bytes = 100_000_000\nmax_memory_bytes = 200_000_000";
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", limits)).await;
    let bomb = bomb();
    assert!(bomb.len() < 250_000, "{} bytes", bomb.len());
    let started = Instant::now();
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=1&n=8"),
        "key-a",
        bomb,
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{v}"
    );
    // Refused from the header: nothing decoded, nothing sent.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(vendor.stats().snapshot()["images"], 0);

    // A 1000×1000 image: certified, one draw per vendor request (Google takes 16).
    let photo = robustify_smoothing::Image::filled(1000, 1000, 0.4)
        .unwrap()
        .to_png()
        .unwrap();
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=2&n=4&denoiser=none"),
        "key-b",
        photo,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let stats = vendor.stats().snapshot();
    assert_eq!(stats["images"], 6, "{stats}");
    assert_eq!(stats["requests"], 6, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_images_are_refused_before_any_spend() {
    let (vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", "")).await;
    let rgb: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 251) as u8).collect();
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(64, 64, rgb).unwrap())
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    let cut = jpeg[..jpeg.len() * 2 / 3].to_vec();
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=1&n=4"),
        "key-b",
        cut,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_image");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
    assert_eq!(vendor.stats().snapshot()["images"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pay_for_timed_out_requests_the_vendor_billed() {
    // Half the vendor's requests are never answered; the proxy waits 0.5 s for each.
    let faults = FaultConfig {
        timeout_rate: 0.5,
        seed: 11,
        ..FaultConfig::default()
    };
    let (_vendor, vendor_url, _v) = vendor(faults).await;
    let (_, url, _p) = proxy(&config(&vendor_url, "", "timeout_s = 0.5", "")).await;
    let mut charged = 0.0;
    for seed in 0..3 {
        let (status, v) = post(
            &format!("{url}/v1/certify?sigma=0.25&n0=4&n=12&seed={seed}"),
            "key-b",
            png(),
        )
        .await;
        if status == 200 {
            charged += v["cost_usd"].as_f64().unwrap();
        }
    }
    let m = metrics(&url).await;
    let provider = metric(
        &m,
        "robustify_provider_spend_usd_total{provider=\"google\"}",
    );
    let client = metric(&m, "robustify_client_spend_usd_total{client=\"b\"}");
    let answered = metric(&m, "robustify_provider_images_total{provider=\"google\"}");
    // Some requests timed out and were billed on top of the answered images…
    assert!(provider > answered * 0.0015 + 1e-9, "{m}");
    // …and the client paid for all of it: what the vendor billed, no more, no less.
    assert!(
        (client - provider).abs() < 1e-9,
        "client {client} vs provider {provider}"
    );
    assert!(charged <= client + 1e-9);
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection stayed open for 10 s"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let (_vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let timeouts = "[timeouts]\nheader_s = 1\nbody_s = 1";
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", timeouts)).await;
    let addr = url.trim_start_matches("http://").to_owned();

    // Idle: connected, nothing sent.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (_, after) = until_closed(&mut idle).await;
    assert!(after < Duration::from_secs(3), "idle for {after:?}");

    // Slow headers: half a request head, then silence.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/certify HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, after) = until_closed(&mut slow).await;
    assert!(after < Duration::from_secs(3), "slow head for {after:?}");

    // Slow body: a whole head promising 1,000 bytes, 10 of them sent: 408.
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    body.write_all(
        b"POST /v1/certify?sigma=0.25&n0=1&n=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-b\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let (answer, after) = until_closed(&mut body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(after < Duration::from_secs(4), "slow body for {after:?}");

    // Keep-alive after an answer: closed once idle for the header timeout.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, after) = until_closed(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(after < Duration::from_secs(3), "kept alive for {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_reused_only_for_the_client_that_paid() {
    let (_vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("robustify-proxy-scope-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let top = format!("log_dir = \"{}\"", dir.display());
    let (_, url, stop) = proxy(&config(&vendor_url, &top, "", "")).await;
    let (_, first) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=4&n=16&seed=3"),
        "key-a",
        png(),
    )
    .await;
    assert_eq!(first["reused"], 0, "{first}");
    let certify = format!("{url}/v1/certify?sigma=0.25&n0=4&n=16&seed=3");
    // The same client again, while the proxy runs: its answers, free.
    let (_, again) = post(&certify, "key-a", png()).await;
    assert_eq!(again["reused"], 20, "{again}");
    assert_eq!(again["cost_usd"], 0.0, "{again}");
    // A restart reads the log back.
    drop(stop);
    let (_, url, _p) = proxy(&config(&vendor_url, &top, "", "")).await;
    let certify = format!("{url}/v1/certify?sigma=0.25&n0=4&n=16&seed=3");
    // Another client, the same image and seed: it learns nothing, and pays.
    let (_, other) = post(&certify, "key-b", png()).await;
    assert_eq!(other["reused"], 0, "{other}");
    assert!(other["cost_usd"].as_f64().unwrap() > 0.0, "{other}");
    // The same client again: its own answers, free.
    let (_, again) = post(&certify, "key-a", png()).await;
    assert_eq!(again["reused"], 20, "{again}");
    assert_eq!(again["cost_usd"], 0.0, "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let (_vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", "")).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = http.get(format!("{url}/v1/certify")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_as_large_as_the_whole_memory_pool_still_runs() {
    // 96 MB for one request and for all: a 1-megapixel image needs exactly 96 MB (24 + 72
    // a draw), which rounds up to one megabyte more than the pool's 91 whole ones.
    let (_vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    let limits = "[limits]\nmax_request_memory_bytes = 96_000_000\nmax_memory_bytes = 96_000_000\n[timeouts]\nbody_s = 2";
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", limits)).await;
    let photo = robustify_smoothing::Image::filled(1000, 1000, 0.4)
        .unwrap()
        .to_png()
        .unwrap();
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=1&n=2&denoiser=none"),
        "key-b",
        photo,
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_is_charged_what_the_vendor_billed_and_no_more_is_sent() {
    // Every vendor answer takes 1.5 s; the client gives up after 0.7 s, while the
    // selection draws (n0 = 4, one request) are with the vendor.
    let (vendor, vendor_url, _v) = vendor(FaultConfig {
        latency_ms: 1500,
        ..FaultConfig::default()
    })
    .await;
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", "")).await;
    let abandoned = reqwest::Client::new()
        .post(format!("{url}/v1/certify?sigma=0.25&n0=4&n=60&seed=9"))
        .bearer_auth("key-a")
        .timeout(Duration::from_millis(700))
        .body(png())
        .send()
        .await;
    assert!(abandoned.is_err(), "the request was meant to time out");
    // The vendor answers the request in flight, and is asked nothing after it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let billed = vendor.stats().snapshot()["images"].as_u64().unwrap();
    assert_eq!(billed, 4, "draws sent after the client left");
    // The client pays exactly that ($0.0015 an image).
    let charged = common::spend(&url, "key-a").await["spent_usd"]
        .as_f64()
        .unwrap();
    assert!((charged - 4.0 * 0.0015).abs() < 1e-9, "charged ${charged}");
    let m = metrics(&url).await;
    assert!(
        (metric(&m, "robustify_client_spend_usd_total{client=\"a\"}") - 0.006).abs() < 1e-9,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_come_out_of_the_memory_pool_and_one_client_has_few_connections() {
    let (vendor, vendor_url, _v) = vendor(FaultConfig::default()).await;
    // About 28 MB for everything in flight; client b may have 3 requests at once.
    let tail = "max_concurrent_requests = 3\n\n[limits]\nmax_request_memory_bytes = 30_000_000\n\
                max_memory_bytes = 30_000_000\n\n[timeouts]\nbody_s = 2";
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", tail)).await;
    let addr = url.trim_start_matches("http://").to_owned();
    // Three bodies that promise 9.9 MB each and send 1 KB: each holds 10 MB of the pool
    // before it is read; the third does not fit and waits for its share.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(
            format!(
                "POST /v1/certify?sigma=0.25&n0=1&n=1 HTTP/1.1\r\nHost: x\r\nAuthorization: \
                 Bearer key-b\r\nContent-Length: 9900000\r\n\r\n{}",
                "x".repeat(1024)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics(&url).await;
    let pool = metric(&m, "robustify_request_memory_bytes");
    assert!(
        (20.0 * 1048576.0..=30_000_000.0).contains(&pool),
        "{pool} bytes held"
    );
    // A fourth request of the same client is refused at once.
    let started = Instant::now();
    let (status, v) = post(
        &format!("{url}/v1/certify?sigma=0.25&n0=1&n=1"),
        "key-b",
        png(),
    )
    .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "too_many_in_flight", "{v}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The stalled bodies end with 408 (the one that waited for memory: 503 if its wait
    // ran out first, else 408 once it had its share).
    for mut c in held {
        let (answer, _) = until_closed(&mut c).await;
        let status = answer.get(9..12).unwrap_or("");
        assert!(status == "408" || status == "503", "{answer}");
    }
    assert_eq!(vendor.stats().snapshot()["images"], 0);
    // The pool is whole again.
    let m = metrics(&url).await;
    assert_eq!(metric(&m, "robustify_request_memory_bytes"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_error_that_echoes_the_request_never_reaches_the_client_with_the_key() {
    // A "vendor" that answers 400 quoting every header it received (as AWS's signature
    // errors quote the canonical request).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vendor_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_string();
                let head = head.split("\r\n\r\n").next().unwrap_or("").to_owned();
                let body =
                    serde_json::json!({"error": {"code": 400, "message": format!("bad: {head}")}})
                        .to_string();
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    let (_, url, _p) = proxy(&config(&vendor_url, "", "", "")).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{url}/v1/certify?sigma=0.25&n0=1&n=20&denoiser=none"
        ))
        .bearer_auth("key-b")
        .body(png())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("x-goog-api-key"), "{text}");
    assert!(!text.contains(common::VENDOR_KEY), "{text}");
}
