//! `robustify envelope`: the paper's table from eval runs at several σ.

use std::path::Path;

use crate::util::{robustify, temp_dir};

/// An eval output folder at `sigma` whose images `0..radii.len()` were certified at these
/// radii (`None`: wrong or abstained).
fn fake_run(dir: &Path, sigma: f64, radii: &[Option<f64>]) {
    std::fs::create_dir_all(dir).unwrap();
    let summary = serde_json::json!({
        "label": format!("stand-in · σ={sigma}"), "provider": "standin", "denoiser": "none",
        "sigma": sigma, "n0": 10, "n": 100, "alpha": 0.001, "skip": 1, "truth": "folder",
        "seed": 0, "images": radii.len(), "clean_accuracy": 1.0, "abstained": 0.0,
        "failed": 0, "mean_queries": 111.0, "mean_seconds": 1.0, "cost_usd": 0.0, "table": []
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    let mut tsv = String::from("idx\tpath\ttruth\tprediction\tradius\tcorrect\tqueries\tseconds\n");
    for (i, r) in radii.iter().enumerate() {
        let (radius, correct) = r.map_or((0.0, 0), |r| (r, 1));
        tsv += &format!("{i}\timg{i}.png\tcat\tcat\t{radius:.4}\t{correct}\t111\t1.0\n");
    }
    std::fs::write(dir.join("certify.tsv"), tsv).unwrap();
}

#[test]
fn the_envelope_takes_the_best_sigma_at_each_radius() {
    let root = temp_dir("envelope");
    // σ = 0.25: 3 of 4 right, radii up to 0.6. σ = 1.0: 2 of 4 right, radii 1.2 and 1.6.
    fake_run(
        &root.join("s025"),
        0.25,
        &[Some(0.3), Some(0.6), Some(0.1), None],
    );
    fake_run(&root.join("s100"), 1.0, &[Some(1.2), None, Some(1.6), None]);
    let out = root.join("env");
    let v = robustify([
        "envelope",
        root.join("s025").to_str().unwrap(),
        root.join("s100").to_str().unwrap(),
        "--radii",
        "0,0.25,0.5,1,1.5,2",
        "--title",
        "test row",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ])
    .json();
    let best: Vec<f64> = v["envelope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["certified_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(best, [0.75, 0.5, 0.5, 0.5, 0.25, 0.0]);
    let sigma: Vec<Option<f64>> = v["envelope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["sigma"].as_f64())
        .collect();
    // At r = 0.25 both give 50%: the smaller σ is named.
    assert_eq!(
        sigma,
        [
            Some(0.25),
            Some(0.25),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            None
        ]
    );
    for f in ["envelope.json", "envelope.tsv", "envelope.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let tsv = std::fs::read_to_string(out.join("envelope.tsv")).unwrap();
    assert!(
        tsv.contains("envelope\t0.7500\t0.5000\t0.5000\t0.5000\t0.2500\t0.0000"),
        "{tsv}"
    );

    // Runs over different images are refused.
    fake_run(&root.join("other"), 0.5, &[Some(0.3), Some(0.6)]);
    let err = robustify([
        "envelope",
        root.join("s025").to_str().unwrap(),
        root.join("other").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .fails();
    assert!(err.contains("not over the same images"), "{err}");
}

#[test]
fn eval_over_several_sigmas_writes_each_run_and_their_envelope() {
    let out = temp_dir("eval-several-sigma");
    let v = robustify([
        "eval",
        "tests/fixtures/cifar10",
        "--provider",
        "standin-cifar10-local",
        "--sigma",
        "0.25,0.5",
        "--n0",
        "4",
        "--n",
        "20",
        "--skip",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = v.ok();
    assert!(
        text.contains("(envelope)") && text.contains("from σ ="),
        "{text}"
    );
    for sigma in ["0.25", "0.5"] {
        let s = read_json(&out.join(format!("sigma-{sigma}/summary.json")));
        assert_eq!(s["images"], 4, "{s}");
        // Each σ got its own denoiser by the default rule.
        assert!(s["denoiser"].as_str().unwrap().ends_with(sigma), "{s}");
    }
    let env = read_json(&out.join("envelope.json"));
    assert_eq!(env["radii"][1], 0.25);
    assert_eq!(env["runs"].as_array().unwrap().len(), 2);
    for (j, best) in env["envelope"].as_array().unwrap().iter().enumerate() {
        let top = env["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["certified_accuracy"][j].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(best["certified_accuracy"].as_f64().unwrap(), top);
    }
    // One denoiser for two σ is refused before anything runs.
    let err = robustify([
        "eval",
        "tests/fixtures/cifar10",
        "--provider",
        "standin-cifar10-local",
        "--sigma",
        "0.25,0.5",
        "--denoiser",
        "cifar10-unet-0.25",
        "--out",
        out.to_str().unwrap(),
    ])
    .fails();
    assert!(err.contains("one denoiser per σ"), "{err}");
}

#[test]
fn eval_takes_true_imagenet_labels_from_file_names_and_an_offset() {
    // The held-out photos of `train denoiser --hold-out 5` are indices 4, 9, 14, 19.
    let out = temp_dir("eval-imagenet-truth");
    robustify([
        "eval",
        "tests/fixtures/imagenet",
        "--no-denoiser",
        "--sigma",
        "0.12",
        "--n0",
        "4",
        "--n",
        "8",
        "--skip",
        "5",
        "--offset",
        "4",
        "--truth",
        "imagenet",
        "--out",
        out.to_str().unwrap(),
    ])
    .ok();
    let tsv = std::fs::read_to_string(out.join("certify.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let idx: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(idx, ["4", "9", "14", "19"], "{tsv}");
    let classes = std::fs::read_to_string("providers/standin/imagenet_classes.tsv").unwrap();
    for r in &rows {
        // The truth is the stand-in's name for the class the file name's WordNet id is.
        let wnid = &Path::new(r[1]).file_name().unwrap().to_str().unwrap()[..9];
        let want = classes
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{wnid}\t")))
            .unwrap();
        assert_eq!(r[2], want, "{tsv}");
    }
    let s = read_json(&out.join("summary.json"));
    assert_eq!(
        (s["offset"].as_u64(), s["truth"].as_str()),
        (Some(4), Some("imagenet"))
    );
    // The stand-in knows most of these photos without noise.
    assert!(s["clean_accuracy"].as_f64().unwrap() >= 0.5, "{s}");
}

/// `eval` of every 50th CIFAR-10 fixture image without a denoiser into `out`, plus `extra`.
fn cifar_eval(out: &Path, extra: &[&str]) -> crate::util::Run {
    let mut args = vec![
        "eval",
        "tests/fixtures/cifar10",
        "--provider",
        "standin-cifar10-local",
        "--no-denoiser",
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "12",
        "--skip",
        "50",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    robustify(args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_killed_eval_resumes_where_it_stopped() {
    let out = temp_dir("eval-resume");
    cifar_eval(&out, &["--max-images", "2"]).ok();
    let tsv = out.join("certify.tsv");
    let first = std::fs::read_to_string(&tsv).unwrap();
    assert_eq!(first.lines().count(), 3, "{first}");
    // A kill mid-row leaves half a line: it is cut off and that image certified again.
    std::fs::write(&tsv, format!("{first}100\t../half-a-row")).unwrap();
    let resumed = cifar_eval(&out, &["--continue"]);
    resumed.ok();
    assert!(
        resumed.stderr().contains("2 images done, 2 to go"),
        "{}",
        resumed.stderr()
    );
    let all = std::fs::read_to_string(&tsv).unwrap();
    assert!(all.starts_with(&first), "{all}");
    let idx: Vec<&str> = all
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(idx, ["0", "50", "100", "150"], "{all}");
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["images"], 4, "{s}");
    // The same four images certified in one go give the same table.
    let fresh = temp_dir("eval-resume-fresh");
    cifar_eval(&fresh, &[]).ok();
    let f = read_json(&fresh.join("summary.json"));
    assert_eq!(s["table"], f["table"]);
    assert_eq!(s["clean_accuracy"], f["clean_accuracy"]);
}
