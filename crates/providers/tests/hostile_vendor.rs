//! A vendor that misbehaves, on 127.0.0.1: redirects, error bodies that echo the request's
//! credentials, endless or huge bodies, answers with thousands of labels, and 200s that
//! cannot be parsed. Each test is a promise to whoever holds the vendor key and pays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use robustify_providers::{
    BudgetLimits, Credentials, Error, HttpProvider, Ledger, Provider, ProviderDef, Traffic,
};
use robustify_smoothing::Image;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GOOGLE_KEY: &str = "AIzaSy-test-google-key-0001";
const AWS_TOKEN: &str = "FwoGZXIvYXdzEJr-session-token-0002";

/// What the scripted vendor sends back.
#[derive(Clone)]
enum Reply {
    /// These bytes (a whole HTTP response).
    Raw(Vec<u8>),
    /// A chunked 200 that never ends (until the client hangs up or 512 MB went out).
    Endless,
}

/// A status line, JSON body and extra headers as one response.
fn response(status: &str, extra: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// A vendor on 127.0.0.1 answering every request with `reply(request head and body)`;
/// `heads` keeps what each request's head said (headers included).
struct Vendor {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn vendor(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Vendor {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                // The head, then as much body as it declares.
                let head_end = loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock().unwrap().push(head.clone());
                match reply(&head) {
                    Reply::Raw(bytes) => {
                        let _ = conn.write_all(&bytes).await;
                    }
                    Reply::Endless => {
                        let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                     transfer-encoding: chunked\r\n\r\n";
                        if conn.write_all(start.as_bytes()).await.is_err() {
                            return;
                        }
                        let piece = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
                        for _ in 0..(512 << 20) / 0x10000 {
                            if conn.write_all(piece.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    Vendor { url, heads }
}

fn provider(def: &ProviderDef, endpoint: &str) -> HttpProvider {
    let creds = Credentials::from_lookup(def, |var| match var {
        "AWS_ACCESS_KEY_ID" => Some("AKIDTESTHOSTILE".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("aws-secret-test-0003".into()),
        "AWS_SESSION_TOKEN" => Some(AWS_TOKEN.into()),
        _ => Some(GOOGLE_KEY.into()),
    })
    .unwrap();
    HttpProvider::new(
        def,
        Some(endpoint),
        creds,
        Arc::new(Traffic::from_limits(&def.limits)),
        Arc::new(Ledger::new(def.pricing.clone(), BudgetLimits::default())),
    )
    .unwrap()
}

/// Google, with one retry and a short timeout (the tests are about what each try costs).
fn google() -> ProviderDef {
    let mut def = ProviderDef::load("google").unwrap();
    def.limits.max_retries = 1;
    def.limits.timeout_s = 20.0;
    def
}

fn image() -> Image {
    Image::new(8, 8, vec![0.5; 3 * 8 * 8]).unwrap()
}

async fn classify_one(
    p: &HttpProvider,
) -> robustify_providers::Result<robustify_providers::Answer> {
    let out = tokio::time::timeout(Duration::from_secs(60), p.classify(&[image()]))
        .await
        .expect("the provider hung on a hostile vendor");
    out.into_iter().next().unwrap().map(|d| d.answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_to_another_host() {
    let elsewhere = vendor(|_| response("200 OK", "", r#"{"responses":[{}]}"#)).await;
    for status in [
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let target = format!("{}/v1/images:annotate?from=redirect", elsewhere.url);
        let redirecting =
            vendor(move |_| response(status, &format!("location: {target}\r\n"), "{}")).await;
        let p = provider(&google(), &redirecting.url);
        let err = classify_one(&p).await.unwrap_err().to_string();
        assert!(
            err.contains("redirected") && err.contains(&elsewhere.url.replace("http://", "")),
            "{status}: {err}"
        );
        assert!(!err.contains("from=redirect"), "{err}");
        // Asked once, refused once: not retried, nothing billed.
        assert_eq!(redirecting.heads.lock().unwrap().len(), 1, "{status}");
        assert_eq!(p.ledger().spent_units(), 0, "{status}");
    }
    assert!(
        elsewhere.heads.lock().unwrap().is_empty(),
        "the redirect target received {:?}",
        elsewhere.heads.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_errors_that_echo_the_request_never_show_its_credentials() {
    // Google: a 400 quoting every header it received, control characters and all.
    let echo = vendor(|head| {
        let quoted =
            serde_json::to_string(&format!("\u{1b}]0;owned\u{7}bad request: {head}")).unwrap();
        response(
            "400 Bad Request",
            "",
            &format!(r#"{{"error":{{"code":400,"message":{quoted}}}}}"#),
        )
    })
    .await;
    let p = provider(&google(), &echo.url);
    let err = classify_one(&p).await.unwrap_err().to_string();
    assert!(echo.heads.lock().unwrap()[0].contains(GOOGLE_KEY));
    assert!(!err.contains(GOOGLE_KEY), "{err}");
    assert!(err.contains("x-goog-api-key"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\n'), "{err:?}");
    // Cut short: the vendor's words are at most a few hundred characters.
    assert!(
        err.chars().count() < 600,
        "{} chars: {err}",
        err.chars().count()
    );

    // AWS: InvalidSignatureException quotes the canonical request, session token included.
    let aws_echo = vendor(|head| {
        let canonical = head
            .lines()
            .map(|l| l.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let message = serde_json::to_string(&format!(
            "The request signature we calculated does not match. The Canonical String for \
             this request should have been 'POST\n/\n\n{canonical}'"
        ))
        .unwrap();
        response(
            "403 Forbidden",
            "",
            &format!(r#"{{"__type":"InvalidSignatureException","message":{message}}}"#),
        )
    })
    .await;
    let mut aws = ProviderDef::load("aws").unwrap();
    aws.limits.max_retries = 1;
    let p = provider(&aws, &aws_echo.url);
    let err = classify_one(&p).await.unwrap_err().to_string();
    let head = aws_echo.heads.lock().unwrap()[0].clone();
    assert!(head.contains(AWS_TOKEN), "{head}");
    assert!(!err.contains(AWS_TOKEN), "{err}");
    assert!(
        !err.to_ascii_lowercase()
            .contains(&AWS_TOKEN.to_ascii_lowercase()),
        "{err}"
    );
    assert!(err.contains("InvalidSignatureException"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_cap_and_counted_as_billed() {
    let endless = vendor(|_| Reply::Endless).await;
    let mut def = google();
    def.limits.max_response_bytes = 1 << 20;
    let p = provider(&def, &endless.url);
    let err = classify_one(&p).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("longer than the 1048576-byte limit"),
        "{text}"
    );
    // Two tries, each a 200 the vendor billed.
    assert_eq!(endless.heads.lock().unwrap().len(), 2);
    assert_eq!(p.ledger().spent_units(), 2);
    assert!(matches!(err, Error::BilledWithoutAnswer { .. }), "{err:?}");
    assert!(
        (err.billed_usd() - 2.0 * 0.0015).abs() < 1e-12,
        "{}",
        err.billed_usd()
    );

    // A declared 2 GB body is not read at all.
    let declared = vendor(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000000000\r\n\r\n{"
                .to_vec(),
        )
    })
    .await;
    let p = provider(&google(), &declared.url);
    let text = classify_one(&p).await.unwrap_err().to_string();
    assert!(text.contains("declares 2000000000 bytes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_keeps_a_bounded_number_of_bounded_labels() {
    let many = vendor(|_| {
        let mut labels: Vec<String> = (0..20_000)
            .map(|i| format!(r#"{{"description":"label {i}","score":0.5}}"#))
            .collect();
        labels[0] = format!(r#"{{"description":"{}","score":0.9}}"#, "x".repeat(5000));
        response(
            "200 OK",
            "",
            &format!(
                r#"{{"responses":[{{"labelAnnotations":[{}]}}]}}"#,
                labels.join(",")
            ),
        )
    })
    .await;
    let p = provider(&google(), &many.url);
    let answer = classify_one(&p).await.unwrap();
    assert_eq!(answer.labels.len(), 100);
    assert_eq!(answer.labels[0].label.chars().count(), 200);
    assert_eq!(answer.labels[99].label, "label 99");
    assert_eq!(p.ledger().spent_units(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_cannot_be_parsed_is_billed() {
    let garbled = vendor(|_| response("200 OK", "", r#"{"responses": [{"labelAnnot"#)).await;
    let p = provider(&google(), &garbled.url);
    let err = classify_one(&p).await.unwrap_err();
    assert!(err.to_string().contains("malformed response body"), "{err}");
    // Both tries were 200s: the vendor billed both, and so does the ledger.
    assert_eq!(garbled.heads.lock().unwrap().len(), 2);
    assert_eq!(p.ledger().spent_units(), 2);
    assert!(err.billed_usd() > 0.0, "{err:?}");
    // A 503 with the same body bills nothing.
    let failing = vendor(|_| response("503 Service Unavailable", "", "{oops")).await;
    let p = provider(&google(), &failing.url);
    let err = classify_one(&p).await.unwrap_err();
    assert_eq!(p.ledger().spent_units(), 0, "{err}");
}
