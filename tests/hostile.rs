//! The command line against bad input, bad logs and unlucky networks: each test is a way
//! a money or safety promise once broke (issue 17).

use std::time::{Duration, Instant};

use crate::util::{Standin, certify_args, command, fixture, robustify, run, temp_dir};

const KEY: &str = "SECRET-KEY-42-do-not-print";
const AWS_ID: &str = "AKIDSECRETID987654";
const AWS_SECRET: &str = "aws/SECRET+value-0193";
const AWS_TOKEN: &str = "SESSION-TOKEN-SECRET-55";

fn cifar_image() -> String {
    fixture("cifar10/ship/0000.jpg").display().to_string()
}

#[test]
fn no_secret_reaches_the_log_at_trace_level_for_any_vendor() {
    let standin = Standin::start(&[
        "--model",
        "cifar10",
        "--key",
        KEY,
        "--aws-key-id",
        AWS_ID,
        "--aws-secret",
        AWS_SECRET,
    ]);
    let image = cifar_image();
    for (vendor, path) in [
        ("google", ""),
        ("azure", ""),
        // A bare endpoint, as for the others: the model path comes from the definition.
        ("huggingface", ""),
        ("clarifai", ""),
        ("aws", ""),
    ] {
        let mut cmd = command(["classify", "--provider", vendor, "--json"]);
        cmd.args(["--endpoint", &format!("{}{path}", standin.url), &image]);
        for var in [
            "GOOGLE_API_KEY",
            "AZURE_VISION_KEY",
            "HF_TOKEN",
            "CLARIFAI_PAT",
        ] {
            cmd.env(var, KEY);
        }
        cmd.env("AWS_ACCESS_KEY_ID", AWS_ID)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env("AWS_SESSION_TOKEN", AWS_TOKEN)
            .env("RUST_LOG", "trace");
        let out = run(cmd);
        out.ok();
        // Trace was really on: the HTTP client's own lines are there.
        assert!(out.stderr().contains("TRACE"), "{vendor}: no trace output");
        for secret in [KEY, AWS_ID, AWS_SECRET, AWS_TOKEN] {
            assert!(
                !out.stderr().contains(secret) && !out.stdout().contains(secret),
                "{vendor}: {secret} leaked"
            );
        }
    }
}

fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(path: &std::path::Path, lines: &[serde_json::Value], extra: &[&str]) {
    let mut text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    text.extend(extra.iter().map(|s| s.to_string()));
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

#[test]
fn resume_reads_the_log_as_evidence() {
    let standin = Standin::start(&["--model", "cifar10"]);
    let endpoint = format!("{}/models/standin", standin.url);
    let dir = temp_dir("hostile-resume");
    let log = dir.join("q.jsonl");
    let certify = |sigma: &str, resume: bool| {
        let mut cmd = command([
            "certify",
            "--no-denoiser",
            &cifar_image(),
            "--provider",
            "standin",
            "--endpoint",
            &endpoint,
            "--sigma",
            sigma,
            "--n0",
            "2",
            "--n",
            "6",
            "--seed",
            "5",
            "--json",
            "--log",
            log.to_str().unwrap(),
        ]);
        if resume {
            cmd.args(["--resume", log.to_str().unwrap()]);
        }
        run(cmd)
    };
    let first: serde_json::Value =
        serde_json::from_str(certify("0.25", false).ok().trim()).unwrap();
    let good = log_lines(&log);
    assert_eq!(good.len(), 8);

    // Answers rewritten to errors are no votes: all 8 draws are asked again.
    let failed: Vec<serde_json::Value> = good
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l["status"] = 500.into();
            l["labels"] = serde_json::json!([]);
            l
        })
        .collect();
    write_lines(&log, &failed, &[]);
    let out = certify("0.25", true);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(v["reused"], 0, "{v}");
    assert_ne!(v["label"], "(none)", "{v}");
    assert_eq!(v["label"], first["label"], "{v}");
    assert!(
        out.stderr()
            .contains("8 error answers, never counted as votes"),
        "{}",
        out.stderr()
    );

    // Garbage lines are skipped, counted and named; the good answers are reused.
    write_lines(&log, &good, &["garbage", "{\"draw\": \"x\"}"]);
    let out = certify("0.25", true);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(v["reused"], 8, "{v}");
    assert!(
        out.stderr()
            .contains("2 lines skipped: 2 unreadable (line 9, 10)"),
        "{}",
        out.stderr()
    );

    // Another σ: the message says none were reused, and why.
    write_lines(&log, &good, &[]);
    let out = certify("0.5", true);
    out.ok();
    assert!(
        out.stderr()
            .contains("0 of 8 logged answers reused (8 not: 8 for another σ)"),
        "{}",
        out.stderr()
    );

    // Two different answers for one draw: an error naming both lines.
    let mut conflict = good.clone();
    let mut other = good[3].clone();
    other["labels"] = serde_json::json!([{"label": "not-what-it-said", "score": 1.0}]);
    conflict.push(other);
    write_lines(&log, &conflict, &[]);
    let err = certify("0.25", true).fails();
    assert!(
        err.contains(":9:") && err.contains("line 4") && err.contains("not-what-it-said"),
        "{err}"
    );
}

#[test]
fn bad_input_is_refused_before_any_paid_call() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let dir = temp_dir("hostile-input");
    let photo = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images/orange.jpg"),
    )
    .unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &photo[..700]).unwrap();
    let certify = |image: &str, sigma: &str, n0: &str, n: &str| {
        let mut cmd = command([
            "certify",
            "--no-denoiser",
            image,
            "--provider",
            "google",
            "--endpoint",
            &standin.url,
            "--sigma",
            sigma,
            "--n0",
            n0,
            "--n",
            n,
        ]);
        cmd.args(["--log", dir.join("q.jsonl").to_str().unwrap()])
            .env("GOOGLE_API_KEY", KEY);
        run(cmd)
    };
    let err = certify(cut.to_str().unwrap(), "0.25", "2", "6").fails();
    assert!(err.contains("truncated"), "{err}");
    // σ outside (0, 1], and draw counts that would wrap.
    let err = certify(&cifar_image(), "1e300", "2", "6").fails();
    assert!(err.contains("sigma") && err.contains("(0, 1]"), "{err}");
    let err = certify(&cifar_image(), "0.25", "300", "18446744073709551317").fails();
    assert!(err.contains("at most"), "{err}");
    // A 36-megapixel grayscale PNG (a few hundred KB) does not fit the memory ceiling.
    let bomb = dir.join("bomb.png");
    image::DynamicImage::ImageLuma8(image::GrayImage::new(6000, 6000))
        .save(&bomb)
        .unwrap();
    let err = certify(bomb.to_str().unwrap(), "0.25", "2", "6").fails();
    assert!(err.contains("memory limit"), "{err}");
    assert_eq!(standin.stats()["images"], 0);
}

#[test]
fn bad_endpoints_fail_at_once() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (endpoint, says) in [
        ("file:///etc/passwd", "only http:// and https://"),
        ("not a url", "is not a URL"),
        (&*format!("http://{closed}"), "connection refused"),
    ] {
        let started = Instant::now();
        let mut cmd = command([
            "classify",
            "--provider",
            "google",
            "--endpoint",
            endpoint,
            &cifar_image(),
        ]);
        cmd.env("GOOGLE_API_KEY", KEY);
        let err = run(cmd).fails();
        assert!(err.contains(says), "{endpoint}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{endpoint}: {:?}",
            started.elapsed()
        );
        if says == "connection refused" {
            assert!(err.contains(&closed.to_string()), "{err}");
        }
    }
    // The help's σ range is the checked one.
    let help = robustify(["certify", "--help"]).ok();
    assert!(help.contains("(0, 1]"), "{help}");
}

#[test]
fn estimates_refuse_counts_that_would_wrap() {
    // 2^44 images × 2^20 draws wraps u64 to 0 queries: $0.00.
    let err = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "17592186044416",
        "--n0",
        "48576",
        "--n",
        "1000000",
    ])
    .fails();
    assert!(err.contains("more than can be counted"), "{err}");
    let err = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "18446744073709551615",
    ])
    .fails();
    assert!(err.contains("at most"), "{err}");
}

#[test]
fn retries_say_why_they_wait() {
    // Every other request fails with the vendor's 5xx: the run retries, and says so.
    let standin = Standin::start(&[
        "--model",
        "cifar10",
        "--key",
        KEY,
        "--fail-rate",
        "0.5",
        "--seed",
        "3",
    ]);
    let dir = temp_dir("hostile-retries");
    let mut cmd = command(certify_args(
        &cifar_image(),
        "google",
        &standin.url,
        "2",
        "30",
    ));
    cmd.args(["--log", dir.join("q.jsonl").to_str().unwrap()])
        .env("GOOGLE_API_KEY", KEY)
        .env("NO_COLOR", "1");
    let out = run(cmd);
    out.ok();
    let err = out.stderr();
    assert!(
        err.contains("google: retry 1 in ") && err.contains(" s: "),
        "{err}"
    );
}

#[test]
fn strict_jpeg_decoding_refuses_no_real_photo() {
    // The strict check (every scan whole) must not cost a user a real photo: every JPEG of
    // the shared ImageNet samples (1,000, one per class, cameras of every kind) decodes.
    let Some(dir) = crate::util::shared_data("imagenet-samples") else {
        return;
    };
    let limits = robustify_smoothing::DecodeLimits::default();
    let mut checked = 0;
    let mut refused = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            continue;
        }
        checked += 1;
        if let Err(e) = robustify_smoothing::Image::decode(&bytes, &limits) {
            refused.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(checked >= 900, "{checked} JPEGs");
    assert!(
        refused.is_empty(),
        "{} refused: {refused:#?}",
        refused.len()
    );
}

/// A vendor on 127.0.0.1 (one thread, bounded): answers each request with `reply(head)`,
/// a whole HTTP response; stops after `max` requests.
fn scripted_vendor(max: usize, reply: fn(&str) -> String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().take(max) {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            let head_end = loop {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
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
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = conn.write_all(reply(&head).as_bytes());
        }
    });
    url
}

fn json_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn labels_cannot_drive_the_terminal_and_echoed_keys_never_print() {
    // Google's format, with a label that clears the screen, retitles the window, returns
    // the cursor and hides text behind a NUL and a bidi override.
    let evil = scripted_vendor(4, |_| {
        json_response(
            "200 OK",
            r#"{"responses":[{"labelAnnotations":[
                {"description":"cat\u001b[2J\u001b]0;owned\u0007\rdog\u0000\u202eevil","score":0.9}]}]}"#,
        )
    });
    let image = cifar_image();
    let mut classify = command([
        "classify",
        &image,
        "--provider",
        "google",
        "--endpoint",
        &evil,
    ]);
    classify.env("GOOGLE_API_KEY", KEY);
    let out = run(classify).ok();
    assert!(out.contains("cat"), "{out}");
    for bad in ['\u{1b}', '\u{7}', '\r', '\0', '\u{202e}'] {
        assert!(!out.contains(bad), "{bad:?} reached the terminal: {out:?}");
    }
    assert!(out.contains("\\u{1b}[2J"), "{out:?}");

    // A vendor error that quotes the request it received, key and all.
    let echo = scripted_vendor(4, |head| {
        let quoted = serde_json::to_string(&format!("bad request: {head}")).unwrap();
        json_response(
            "400 Bad Request",
            &format!(r#"{{"error":{{"code":400,"message":{quoted}}}}}"#),
        )
    });
    let mut classify = command([
        "classify",
        &image,
        "--provider",
        "google",
        "--endpoint",
        &echo,
    ]);
    classify.env("GOOGLE_API_KEY", KEY);
    let failed = run(classify);
    let err = failed.stderr();
    assert!(err.contains("x-goog-api-key"), "{err}");
    assert!(
        !err.contains(KEY) && !failed.stdout().contains(KEY),
        "{err}"
    );
}
