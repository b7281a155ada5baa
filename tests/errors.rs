//! Bad input gets a clear error and a non-zero exit.

use crate::util::{command, fixture, robustify, temp_dir};

fn replay(log: &str, extra: &[&str]) -> String {
    let mut args = vec!["replay", log, "--sigma", "0.25", "--n0", "3", "--n", "20"];
    args.extend_from_slice(extra);
    robustify(&args).fails()
}

#[test]
fn bad_logs_name_the_line() {
    let dir = temp_dir("bad-logs");
    let good = std::fs::read_to_string(fixture("replay_small.jsonl")).unwrap();
    let first = good.lines().next().unwrap();

    let malformed = dir.join("malformed.jsonl");
    std::fs::write(
        &malformed,
        format!("{first}\n{{\"clean\": \"cat\", \"labels\": [\n"),
    )
    .unwrap();
    let err = replay(malformed.to_str().unwrap(), &[]);
    assert!(err.contains("malformed.jsonl:2"), "{err}");

    let missing = dir.join("missing.jsonl");
    std::fs::write(
        &missing,
        format!("{first}\n{first}\n{{\"labels\": [\"a\"]}}\n"),
    )
    .unwrap();
    let err = replay(missing.to_str().unwrap(), &[]);
    assert!(
        err.contains("missing.jsonl:3") && err.contains("clean"),
        "{err}"
    );

    let short = dir.join("short.jsonl");
    std::fs::write(
        &short,
        format!("{first}\n{{\"clean\": \"a\", \"labels\": [\"a\", \"a\"]}}\n"),
    )
    .unwrap();
    let err = replay(short.to_str().unwrap(), &[]);
    assert!(err.contains("short.jsonl:2") && err.contains("23"), "{err}");

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let err = replay(empty.to_str().unwrap(), &[]);
    assert!(err.contains("no records"), "{err}");

    let err = replay(dir.join("absent.jsonl").to_str().unwrap(), &[]);
    assert!(err.contains("absent.jsonl"), "{err}");
}

#[test]
fn invalid_parameters_are_refused() {
    let log = fixture("replay_small.jsonl");
    let log = log.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["replay", log];
        all.extend_from_slice(args);
        robustify(&all).fails()
    };
    assert!(run(&["--sigma", "0.5", "--n0", "0", "--n", "20"]).contains("n0"));
    assert!(run(&["--sigma", "0", "--n0", "3", "--n", "20"]).contains("sigma"));
    assert!(run(&["--sigma", "-0.5", "--n0", "3", "--n", "20"]).contains("sigma"));
    for alpha in ["0", "1", "1.5", "-0.1"] {
        let err = run(&["--sigma", "0.5", "--n0", "3", "--n", "20", "--alpha", alpha]);
        assert!(err.contains("alpha"), "{alpha}: {err}");
    }
    assert!(
        run(&[
            "--sigma", "0.5", "--n0", "3", "--n", "20", "--radii", "0,-1"
        ])
        .contains("radius")
    );
    let err = robustify([
        "estimate",
        "--provider",
        "nonesuch",
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "1",
    ])
    .fails();
    assert!(err.contains("nonesuch") && err.contains("google"), "{err}");
    let err = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "1",
        "--n0",
        "0",
        "--n",
        "1",
    ])
    .fails();
    assert!(err.contains("n0"), "{err}");
}

#[test]
fn a_bad_provider_file_is_named() {
    let dir = temp_dir("bad-provider");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nadapter = \"azure\"\n").unwrap();
    let err = robustify([
        "estimate",
        "--provider",
        bad.to_str().unwrap(),
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "1",
    ])
    .fails();
    assert!(
        err.contains("bad.toml") && err.contains("missing field"),
        "{err}"
    );
}

#[test]
fn bad_images_are_refused() {
    let dir = temp_dir("bad-images");
    let text = dir.join("notes.png");
    std::fs::write(&text, "this is not an image").unwrap();
    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.join("truncated.png");
    let png = robustify_smoothing::Image::filled(32, 32, 0.25)
        .unwrap()
        .to_png()
        .unwrap();
    std::fs::write(&truncated, &png[..png.len() - 20]).unwrap();
    let out = dir.join("out");
    for (file, needle) in [
        (&text, "unrecognised format"),
        (&empty, "0 bytes"),
        (&truncated, "truncated.png"),
        (&dir.join("absent.png"), "absent.png"),
    ] {
        let err = robustify([
            "noise",
            file.to_str().unwrap(),
            "--sigma",
            "0.25",
            "--out",
            out.to_str().unwrap(),
        ])
        .fails();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // Nothing was written for a bad input.
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn a_closed_output_ends_the_command_quietly() {
    // `robustify … | head` where the reader is already gone: every write to stdout fails
    // with EPIPE. `println!` would panic (exit 101, a panic message on stderr).
    let tiered = fixture("tiered.toml");
    for args in [
        vec!["providers"],
        vec!["providers", "--json"],
        vec![
            "estimate",
            "--provider",
            tiered.to_str().unwrap(),
            "--images",
            "5",
            "--n0",
            "10",
            "--n",
            "100",
        ],
        vec![
            "replay",
            "tests/fixtures/replay_small.jsonl",
            "--sigma",
            "0.25",
            "--n0",
            "3",
            "--n",
            "20",
        ],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = command(&args);
        cmd.stdout(writer);
        let run = crate::util::run(cmd);
        let err = run.stderr();
        assert_eq!(run.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A device that cannot be had is an error before any work, never a silent CPU run.
#[test]
fn a_device_this_build_or_machine_lacks_is_refused() {
    let err = robustify(["--device", "tpu", "denoisers", "list"]).fails();
    assert!(err.contains("unknown device \"tpu\""), "{err}");
    if !cfg!(feature = "cuda") {
        let err = robustify(["--device", "cuda", "denoisers", "list"]).fails();
        assert!(
            err.contains("no CUDA support") && err.contains("--features cuda"),
            "{err}"
        );
    }
    robustify(["--device", "cpu", "denoisers", "list"]).ok();
}

#[test]
fn a_sigma_out_of_range_is_named_before_any_denoiser_is_looked_for() {
    // It once answered "no shipped photo denoiser for σ = 25", listing CIFAR ones.
    for (sigma, want) in [("25", "(0, 1]"), ("0.001", "half an 8-bit step")] {
        let err = robustify([
            "certify",
            "examples/images/goldfish.jpg",
            "--sigma",
            sigma,
            "--n0",
            "2",
            "--n",
            "5",
        ])
        .fails();
        assert!(
            err.contains(want) && !err.contains("denoiser"),
            "{sigma}: {err}"
        );
    }
}
