//! `certify` against vendor formats over real HTTP: a `robustify standin serve` child on
//! loopback plays the vendor (the CIFAR-10 model, so that draws are cheap).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{self, Standin, command, fixture, run, temp_dir};

const KEY: &str = "SECRET-KEY-42-do-not-print";

fn image() -> String {
    fixture("cifar10/ship/0000.jpg").display().to_string()
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// [`util::certify_args`] of the ship image, seed 5, as JSON.
fn certify_args(provider: &str, endpoint: &str, n0: &str, n: &str) -> Vec<String> {
    let mut args = util::certify_args(&image(), provider, endpoint, n0, n);
    args.extend(["--seed", "5", "--json"].map(String::from));
    args
}

#[test]
fn google_format_end_to_end_logs_every_answer_and_never_prints_the_key() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let dir = temp_dir("providers-google");
    let log = dir.join("queries.jsonl");
    let mut cmd = command(certify_args("google", &standin.url, "4", "28"));
    cmd.args(["--log", log.to_str().unwrap()])
        .env("GOOGLE_API_KEY", KEY)
        .env("RUST_LOG", "trace");
    let out = run(cmd);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(v["queries"], 32);
    assert!(
        (v["cost_usd"].as_f64().unwrap() - 32.0 * 0.0015).abs() < 1e-9,
        "{v}"
    );
    let counted: u64 = v["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 28);
    // Every answer logged under its draw; Google batches 16 images a request.
    let entries = lines(&log);
    assert_eq!(entries.len(), 32);
    let mut draws: Vec<u64> = entries
        .iter()
        .map(|e| e["draw"].as_u64().unwrap())
        .collect();
    draws.sort_unstable();
    assert_eq!(draws, (0..32).collect::<Vec<_>>());
    // Keyed by the endpoint too: answers of another endpoint are never reused for this one.
    let key = format!("google@{}", standin.url);
    assert!(entries.iter().all(|e| e["provider"] == key.as_str()
        && e["sigma"] == 0.25
        && e["seed"] == 5
        && e["image"].as_str().unwrap().len() == 64));
    let stats = standin.stats();
    assert_eq!(stats["routes"]["google"]["images"], 32);
    assert_eq!(stats["routes"]["google"]["requests"], 3, "{stats}");
    // The key is nowhere: not in stdout, stderr or the log.
    let log_text = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [
        ("stdout", out.stdout()),
        ("stderr", out.stderr()),
        ("log", log_text),
    ] {
        assert!(!text.contains(KEY), "the key leaked into {what}");
    }
}

#[test]
fn aws_signature_from_environment_credentials() {
    let standin = Standin::start(&[
        "--model",
        "cifar10",
        "--aws-key-id",
        "AKIDTEST",
        "--aws-secret",
        "aws/secret+KEY",
    ]);
    let dir = temp_dir("providers-aws");
    let log = dir.join("queries.jsonl");
    let mut cmd = command(certify_args("aws", &standin.url, "2", "6"));
    cmd.args(["--log", log.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "aws/secret+KEY")
        .env("AWS_SESSION_TOKEN", "session-token");
    let v: serde_json::Value = serde_json::from_str(run(cmd).ok().trim()).unwrap();
    assert_eq!(v["queries"], 8);
    assert_eq!(lines(&log).len(), 8);
    assert_eq!(standin.stats()["routes"]["aws"]["images"], 8);
    // A wrong secret is refused by the verifier, once, and reported.
    let mut cmd = command(certify_args("aws", &standin.url, "2", "6"));
    cmd.args(["--log", log.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "wrong");
    let out = run(cmd);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr().contains("InvalidSignatureException"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("wrong\n"));
}

#[test]
fn a_missing_key_fails_before_any_call() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let out = run(command(certify_args("azure", &standin.url, "2", "6")));
    let err = out.fails();
    assert!(err.contains("AZURE_VISION_KEY"), "{err}");
    assert_eq!(standin.stats()["requests"], 0);
}

#[test]
fn the_budget_stops_the_run_cleanly_and_keeps_what_was_paid() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let dir = temp_dir("providers-budget");
    let log = dir.join("queries.jsonl");
    let mut args = certify_args("google", &standin.url, "4", "28");
    args.insert(2, fixture("cifar10/cat/0000.jpg").display().to_string());
    let mut cmd = command(args);
    // $0.03 buys 20 images at $1.50 per 1,000; the first image needs 32.
    cmd.args(["--budget-usd", "0.03", "--log", log.to_str().unwrap()])
        .env("GOOGLE_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(3), "{}", out.stderr());
    let results: Vec<serde_json::Value> = out
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["status"] == "budget_exhausted"));
    let served = standin.stats()["images"].as_u64().unwrap();
    assert!((4..=20).contains(&served), "{served}");
    // Every paid answer is in the log.
    assert_eq!(lines(&log).len() as u64, served);
    // One figure for the spend: the closing line and the traffic summary agree, and
    // match what was served.
    let err = out.stderr();
    let spent = format!("${:.4}", served as f64 * 0.0015);
    assert!(
        err.contains(&format!("{spent} spent in all")) && err.contains(&format!("{spent} spent,")),
        "{err}"
    );
}

#[test]
fn resume_after_kill_9_repeats_no_draw_and_gives_the_same_certificate() {
    let standin = Standin::start(&["--model", "cifar10"]);
    let endpoint = format!("{}/models/standin", standin.url);
    let dir = temp_dir("providers-resume");
    let log = dir.join("queries.jsonl");
    let args = |log: &std::path::Path| {
        let mut a = certify_args("standin", &endpoint, "10", "290");
        a.extend(
            [
                // The clean query is sent again by the resumed run; this test is about
                // the draws.
                "--no-clean",
                "--rate",
                "50",
                "--concurrency",
                "2",
                "--log",
                log.to_str().unwrap(),
            ]
            .map(String::from),
        );
        a
    };
    let mut child = command(args(&log))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines(&log).len() < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run never got going"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let logged = lines(&log).len();
    assert!(logged < 300, "{logged}");
    let mut resume = command(args(&log));
    resume.args(["--resume", log.to_str().unwrap()]);
    let resumed: serde_json::Value = serde_json::from_str(run(resume).ok().trim()).unwrap();
    assert!(resumed["reused"].as_u64().unwrap() >= 100, "{resumed}");
    let stats = standin.stats();
    // Only draws in flight at the kill (at most the 2 concurrent requests) went twice.
    assert!(stats["repeated_images"].as_u64().unwrap() <= 2, "{stats}");
    assert_eq!(lines(&log).len(), 300);
    // The same certificate as a run never interrupted.
    let fresh: serde_json::Value =
        serde_json::from_str(run(command(args(&dir.join("fresh.jsonl")))).ok().trim()).unwrap();
    for field in ["label", "radius", "p_lower", "counts", "queries"] {
        assert_eq!(resumed[field], fresh[field], "{field}");
    }
}
