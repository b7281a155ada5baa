//! The answer store: a paid answer is paid once — reused by the next run that asks for the
//! same draw, kept through `kill -9`.

use crate::util::{Standin, certify_args, command, fixture, run, temp_dir};

const KEY: &str = "store-test-key";

fn certify(
    standin: &Standin,
    store: &std::path::Path,
    n: &str,
    extra: &[&str],
) -> std::process::Command {
    let image = fixture("cifar10/ship/0000.jpg").display().to_string();
    let mut cmd = command(certify_args(&image, "google", &standin.url, "4", n));
    cmd.arg("--json")
        .args(extra)
        .env("GOOGLE_API_KEY", KEY)
        .env("ROBUSTIFY_STORE", store);
    cmd
}

fn images_served(standin: &Standin) -> u64 {
    standin.stats()["images"].as_u64().unwrap()
}

#[test]
fn the_same_draws_are_paid_once() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let store = temp_dir("store-reuse").join("answers.sqlite");
    let first = run(certify(&standin, &store, "28", &["--seed", "5"]));
    let a: serde_json::Value = serde_json::from_str(first.ok().trim()).unwrap();
    assert_eq!(
        (a["queries"].as_u64(), a["reused"].as_u64()),
        (Some(32), Some(0))
    );
    assert_eq!(images_served(&standin), 32);
    assert!(
        first.stderr().contains("0 answers reused"),
        "{}",
        first.stderr()
    );

    // Run again: every draw is in the store; nothing sent, nothing paid, same certificate.
    let second = run(certify(&standin, &store, "28", &["--seed", "5"]));
    let b: serde_json::Value = serde_json::from_str(second.ok().trim()).unwrap();
    assert_eq!(images_served(&standin), 32, "the second run sent nothing");
    assert_eq!(b["reused"], 32);
    assert_eq!(b["cost_usd"], 0.0);
    for field in ["label", "candidate", "radius", "counts", "image_sha256"] {
        assert_eq!(a[field], b[field], "{field}");
    }
    let err = second.stderr();
    assert!(
        err.contains("32 answers reused (not paid again), 0 new"),
        "{err}"
    );
    assert!(err.contains("$0.0000 spent"), "{err}");

    // New draws come from a new seed; --fresh pays again for the same ones.
    let third = run(certify(&standin, &store, "28", &["--seed", "6"]));
    assert_eq!(third.json()["reused"], 0);
    let third = third.json();
    assert_eq!(images_served(&standin), 64);
    let fresh = run(certify(&standin, &store, "28", &["--seed", "5", "--fresh"]));
    let f = fresh.json();
    assert_eq!(f["reused"], 0);
    assert!(f["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(images_served(&standin), 96);

    // The store exports as a query log, which replay reads: the same certificate.
    let log = store.with_file_name("export.jsonl");
    let mut export = command(["answers", "--export", log.to_str().unwrap()]);
    export.env("ROBUSTIFY_STORE", &store);
    run(export).ok();
    let replayed = crate::util::robustify([
        "replay",
        log.to_str().unwrap(),
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "28",
        "--seed",
        "6",
        "--json",
    ])
    .json();
    assert_eq!(
        replayed["images"].as_array().unwrap().len(),
        1,
        "{replayed}"
    );
    assert_eq!(replayed["images"][0]["radius"], third["radius"]);
    let mut summary = command(["answers"]);
    summary.env("ROBUSTIFY_STORE", &store);
    let text = run(summary).ok();
    // 64 draws (seeds 5 and 6; --fresh replaced seed 5's), 96 paid for.
    assert!(text.contains(": 64 paid answers"), "{text}");
    assert!(text.contains("google: $0.1440 spent"), "{text}");
}

#[test]
fn kill_9_loses_no_stored_answer_and_the_rerun_pays_only_the_rest() {
    // A slow vendor (200 ms a request, one request of 16 images in flight at a time), so
    // the kill lands mid-run.
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY, "--latency-ms", "200"]);
    let store = temp_dir("store-kill").join("answers.sqlite");
    // 4 + 300 draws: 20 requests at 200 ms.
    let mut cmd = certify(
        &standin,
        &store,
        "300",
        &["--seed", "9", "--concurrency", "1"],
    );
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some answers are stored, then kill -9.
    let started = std::time::Instant::now();
    while images_served(&standin) < 64 {
        assert!(started.elapsed().as_secs() < 60, "the run never got going");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let served = images_served(&standin);
    assert!(
        served < 304,
        "killed too late to test anything ({served} served)"
    );

    // The store opens cleanly and holds every answer but those of the one request in
    // flight at the kill (16 images at most); the rerun pays for exactly the rest.
    let rerun = run(certify(&standin, &store, "300", &["--seed", "9"]));
    let v: serde_json::Value = serde_json::from_str(rerun.ok().trim()).unwrap();
    let reused = v["reused"].as_u64().unwrap();
    assert!(
        reused + 16 >= served && reused <= served,
        "{reused} reused of {served} served before the kill"
    );
    assert_eq!(v["queries"], 304);
    assert_eq!(images_served(&standin), served + (304 - reused));
}

#[test]
fn answers_from_one_endpoint_are_never_reused_for_another() {
    // Two vendors at two addresses: the same provider name, the same draws.
    let a = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let b = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let store = temp_dir("store-endpoints").join("answers.sqlite");
    let first = run(certify(&a, &store, "12", &["--seed", "2"])).json();
    assert_eq!(first["reused"], 0);
    assert_eq!(images_served(&a), 16);
    // B is asked and paid for every draw: A's answers say nothing about B.
    let other = run(certify(&b, &store, "12", &["--seed", "2"])).json();
    assert_eq!(other["reused"], 0, "{other}");
    assert!(other["cost_usd"].as_f64().unwrap() > 0.0, "{other}");
    assert_eq!(images_served(&b), 16);
    // A again: its own answers, free.
    let again = run(certify(&a, &store, "12", &["--seed", "2"])).json();
    assert_eq!(again["reused"], 16, "{again}");
    assert_eq!(images_served(&a), 16);
}

#[test]
fn a_run_answered_from_the_store_logs_every_answer_it_used() {
    let standin = Standin::start(&["--model", "cifar10", "--key", KEY]);
    let dir = temp_dir("store-log-reused");
    let store = dir.join("answers.sqlite");
    let first = run(certify(&standin, &store, "12", &["--seed", "4"])).json();
    assert_eq!(images_served(&standin), 16);
    // Everything from the store: nothing paid, and still a log that replay can read.
    let log = dir.join("again.jsonl");
    let again = run(certify(
        &standin,
        &store,
        "12",
        &["--seed", "4", "--log", log.to_str().unwrap()],
    ))
    .json();
    assert_eq!(again["reused"], 16);
    assert_eq!(images_served(&standin), 16);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 16, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["reused"] == true && l["cost_usd"] == 0.0)
    );
    let replayed = crate::util::robustify([
        "replay",
        log.to_str().unwrap(),
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "12",
        "--seed",
        "4",
        "--json",
    ])
    .json();
    let image = &replayed["images"][0];
    assert_eq!(image["radius"], first["radius"], "{replayed}");
    assert_eq!(image["label"], first["label"], "{replayed}");
}
