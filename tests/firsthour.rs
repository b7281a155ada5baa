//! What a new user meets in the first hour (issue 20): the table explains itself, errors
//! look like clap's, names forgive case, and mismatched denoisers are pointed out.

use crate::util::{command, fixture, robustify, run, temp_dir};

#[test]
fn the_certify_table_shows_the_clean_label_and_a_legend_and_fits() {
    let dir = temp_dir("firsthour-table");
    let long = dir.join("a-very-long-folder-name-that-would-push-the-columns/ship-0000.jpg");
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    std::fs::copy(fixture("cifar10/ship/0000.jpg"), &long).unwrap();
    let out = robustify([
        "certify",
        long.to_str().unwrap(),
        "--provider",
        "standin-cifar10-local",
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "24",
    ])
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("image")).unwrap();
    assert!(lines[header].contains("clean label"), "{out}");
    assert!(lines[header].contains("certified label"), "{out}");
    let row = lines[header + 1];
    // The file name survives the elision, and the row is as wide as the header.
    assert!(
        row.starts_with('…') && row.contains("ship-0000.jpg"),
        "{out}"
    );
    assert_eq!(row.chars().count(), lines[header].chars().count(), "{out}");
    assert!(
        out.contains("clean label: the provider's answer without noise"),
        "{out}"
    );
    assert!(
        out.contains("radius: no ℓ2 perturbation smaller than this"),
        "{out}"
    );
    // JSON carries the clean label too.
    let v: serde_json::Value = serde_json::from_str(
        robustify([
            "certify",
            "tests/fixtures/cifar10/ship/0000.jpg",
            "--provider",
            "standin-cifar10-local",
            "--sigma",
            "0.25",
            "--n0",
            "4",
            "--n",
            "24",
            "--json",
        ])
        .ok()
        .trim(),
    )
    .unwrap();
    assert!(v["clean_label"].is_string(), "{v}");
}

/// `robustify ARGS` under a pseudo-terminal (`script`), returning what it printed.
fn in_a_terminal(args: &str, no_color: bool) -> String {
    let exe = env!("CARGO_BIN_EXE_robustify");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{exe} {args}"), "/dev/null"]);
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd.output().expect("script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn errors_are_coloured_like_clap_and_no_color_is_honoured() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: script(1) is not installed");
        return;
    }
    let args = "estimate --provider nonesuch --images 1 --n0 1 --n 1";
    let coloured = in_a_terminal(args, false);
    assert!(coloured.contains("\x1b[1;31merror:\x1b[0m"), "{coloured:?}");
    let plain = in_a_terminal(args, true);
    assert!(plain.contains("error: unknown provider"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn provider_names_forgive_case_and_typos_get_a_suggestion() {
    robustify([
        "estimate",
        "--provider",
        "Google",
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "1",
    ])
    .ok();
    let err = robustify([
        "estimate",
        "--provider",
        "gogle",
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "1",
    ])
    .fails();
    assert!(err.contains("did you mean \"google\""), "{err}");
}

#[test]
fn a_denoiser_for_another_sigma_or_other_images_is_pointed_out() {
    let dir = temp_dir("firsthour-denoise");
    let mut cmd = command([
        "denoise",
        "examples/images/goldfish.jpg",
        "--sigma",
        "0.12",
        "--denoiser",
        "cifar10-unet-0.25",
        "--out",
        dir.to_str().unwrap(),
    ]);
    cmd.env("NO_COLOR", "1");
    let out = run(cmd);
    out.ok();
    let err = out.stderr();
    assert!(err.contains("trained for σ = 0.25, not σ = 0.12"), "{err}");
    assert!(
        err.contains("trained on cifar10 images, these are photo images"),
        "{err}"
    );
}

#[test]
fn an_abstaining_prediction_names_the_two_labels_it_could_not_separate() {
    let args = [
        "predict",
        "tests/fixtures/cifar10/ship/0000.jpg",
        "--provider",
        "standin-cifar10-local",
        "--no-denoiser",
        "--sigma",
        "1.0",
        "--n",
        "30",
        "--alpha",
        "1e-12",
    ];
    let v: serde_json::Value =
        serde_json::from_str(robustify(args.iter().chain(&["--json"])).ok().trim()).unwrap();
    assert_eq!(v["status"], "abstained", "{v}");
    let top = v["top_two"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{v}");
    let table = robustify(args).ok();
    let want = format!(
        "abstain ({} {} vs {} {})",
        top[0][0].as_str().unwrap(),
        top[0][1],
        top[1][0].as_str().unwrap(),
        top[1][1]
    );
    assert!(table.contains(&want), "{table}");
}

#[test]
fn replay_of_a_log_that_mixes_sigmas_takes_the_one_asked_for() {
    let dir = temp_dir("firsthour-replay");
    let log = dir.join("mixed.jsonl");
    for sigma in ["0.25", "0.5"] {
        robustify([
            "certify",
            "tests/fixtures/cifar10/ship/0000.jpg",
            "--provider",
            "standin-cifar10-local",
            "--no-denoiser",
            "--no-clean",
            "--sigma",
            sigma,
            "--n0",
            "2",
            "--n",
            "6",
            "--log",
            log.to_str().unwrap(),
        ])
        .ok();
    }
    let v: serde_json::Value = serde_json::from_str(
        robustify([
            "replay",
            log.to_str().unwrap(),
            "--sigma",
            "0.5",
            "--n0",
            "2",
            "--n",
            "6",
            "--json",
        ])
        .ok()
        .trim(),
    )
    .unwrap();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{v}");
    // Named by its hash and settings, not by an index; no reference label, no verdict.
    let name = images[0]["image"].as_str().unwrap();
    assert!(
        name.contains("sigma=0.5") && name.contains("standin-cifar10-local"),
        "{v}"
    );
    assert!(images[0]["correct"].is_null(), "{v}");
    // A σ the log does not have is a clear error.
    let err = robustify([
        "replay",
        log.to_str().unwrap(),
        "--sigma",
        "0.12",
        "--n0",
        "2",
        "--n",
        "6",
    ])
    .fails();
    assert!(err.contains("no answers in the log match"), "{err}");
}

#[test]
fn estimate_answers_a_buyer_without_n0_and_n() {
    let v: serde_json::Value = serde_json::from_str(
        robustify([
            "estimate",
            "--provider",
            "google",
            "--images",
            "1000",
            "--target-radius",
            "0.25",
            "--p-a",
            "0.8,0.99",
            "--json",
        ])
        .ok()
        .trim(),
    )
    .unwrap();
    let rows = v["rows"].as_array().unwrap();
    // p_A = 0.8 < Φ(1) = 0.841: no n certifies at 0.25.
    assert!(rows[0]["n"].is_null(), "{v}");
    // p_A = 0.99: a recommended n, with cost and time for both ways.
    let n = rows[1]["n"].as_u64().unwrap();
    assert!((40..200).contains(&n), "{v}");
    let fixed = &rows[1]["fixed"];
    let cost = fixed["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - 1000.0 * (10 + n) as f64 * 0.0015).abs() < 1e-6,
        "{v}"
    );
    assert!(fixed["seconds"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        rows[1]["sequential"]["queries_per_image"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // Without a target there is nothing to recommend: a clear error.
    let err = robustify(["estimate", "--provider", "google", "--images", "10"]).fails();
    assert!(err.contains("--target-radius"), "{err}");
}

#[test]
fn a_target_radius_means_sequential_for_every_provider_as_in_the_proxy() {
    // A free in-process provider: it used to stay fixed-n unless --mode said otherwise.
    let v = robustify([
        "certify",
        "tests/fixtures/cifar10/ship/0000.jpg",
        "--provider",
        "standin-cifar10-local",
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "200",
        "--target-radius",
        "0.05",
        "--json",
    ])
    .json();
    assert_eq!(v["mode"], "sequential", "{v}");
}
