//! `robustify classify` with the in-process ImageNet stand-in.

use crate::util::{fixture, robustify, shared_data, temp_dir};

#[test]
fn imagenet_fixture_accuracy() {
    // tests/fixtures/imagenet: every 50th class of ../shared/data/imagenet-samples, shorter
    // side 256. EfficientNet-Lite0 gets 88.7% top-1 on all 1,000 samples and 18 of these 20;
    // the floor of 15 allows for small numerical differences across machines.
    let dir = fixture("imagenet");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 20);
    let mut args = vec!["classify".to_string(), "--json".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let v = robustify(&args).json();
    let classes = std::fs::read_to_string("providers/standin/imagenet_classes.tsv").unwrap();
    let name_of = |wnid: &str| {
        classes
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{wnid}\t")).map(str::to_owned))
            .unwrap()
    };
    let mut correct = 0;
    for (file, out) in files.iter().zip(v.as_array().unwrap()) {
        let wnid = &file.file_name().unwrap().to_str().unwrap()[..9];
        let labels = out["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 5);
        let scores: Vec<f64> = labels
            .iter()
            .map(|l| l["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0);
        if labels[0]["label"] == name_of(wnid).as_str() {
            correct += 1;
        }
    }
    assert!(correct >= 15, "{correct} of 20 correct");
}

#[test]
fn full_sample_accuracy_is_reported_by_the_example() {
    // The whole 1,000-image check runs as an example (release build, ~90 s):
    // cargo run --release -p robustify-standin --example imagenet_accuracy -- ../shared/data/imagenet-samples
    if shared_data("imagenet-samples").is_none() {
        return;
    }
    // Here: the first 3 files only, to check the folder reads and names map to classes.
    let v = robustify([
        "classify",
        "--json",
        "--top",
        "1",
        "../shared/data/imagenet-samples/n01440764_tench.JPEG",
    ])
    .json();
    assert_eq!(v[0]["labels"][0]["label"], "tench");
}

#[test]
fn a_bad_image_is_reported_and_the_rest_classified() {
    let dir = temp_dir("classify-bad");
    let bad = dir.join("bad.jpg");
    std::fs::write(&bad, "not a jpeg").unwrap();
    let good = fixture("imagenet/n07747607_orange.jpg");
    let run = robustify(["classify", bad.to_str().unwrap(), good.to_str().unwrap()]);
    let err = run.fails();
    assert!(err.contains("bad.jpg"), "{err}");
    assert!(run.stdout().contains("orange"), "{}", run.stdout());
}

#[test]
fn cifar10_fixture_accuracy_matches_the_card() {
    // tests/fixtures/cifar10: 20 test images of each class. The shipped stand-in's accuracy
    // on them must agree with its card's (all 10,000 test images) to within 0.1, about
    // three standard errors at n = 200: a model loaded or preprocessed wrongly misses by far
    // more, a swapped-in checkpoint needs no change here.
    let dir = fixture("cifar10");
    let mut files = Vec::new();
    for class in std::fs::read_dir(&dir).unwrap() {
        for file in std::fs::read_dir(class.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 200);
    let mut args: Vec<String> = ["classify", "--provider", "standin-cifar10-local"]
        .map(String::from)
        .to_vec();
    args.extend(["--json".into(), "--top".into(), "1".into()]);
    args.extend(files.iter().map(|f| f.display().to_string()));
    let v = robustify(&args).json();
    let answers = v.as_array().unwrap();
    assert_eq!(answers.len(), 200);
    let correct = files
        .iter()
        .zip(answers)
        .filter(|(file, out)| {
            let class = file
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            out["labels"][0]["label"] == class
        })
        .count();
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read("providers/standin/cifar10/card.json").unwrap())
            .unwrap();
    let want = card["test_accuracy"].as_f64().unwrap();
    let got = correct as f64 / 200.0;
    assert!((got - want).abs() < 0.1, "fixture {got}, card {want}");
}

#[test]
fn classify_through_each_vendor_format_gives_the_in_process_answer() {
    const KEY: &str = "classify-test-key";
    let standin = crate::util::Standin::start(&[
        "--model",
        "cifar10",
        "--key",
        KEY,
        "--aws-key-id",
        "AKIDCLASSIFYTEST",
        "--aws-secret",
        KEY,
    ]);
    let image = fixture("cifar10/ship/0000.jpg").display().to_string();
    let local = robustify([
        "classify",
        "--provider",
        "standin-cifar10-local",
        "--json",
        &image,
    ])
    .json();
    let want = &local[0]["labels"][0]["label"];
    let local_score = local[0]["labels"][0]["score"].as_f64().unwrap();
    assert!(want.is_string(), "{local}");
    // (Hugging Face's endpoint is the model's own URL.)
    let vendors = [
        ("google", "GOOGLE_API_KEY", ""),
        ("azure", "AZURE_VISION_KEY", ""),
        (
            "huggingface",
            "HF_TOKEN",
            "/models/google/vit-base-patch16-224",
        ),
        ("clarifai", "CLARIFAI_PAT", ""),
        ("aws", "AWS_SECRET_ACCESS_KEY", ""),
    ];
    for (vendor, env, path) in vendors {
        let mut cmd = crate::util::command(["classify", "--provider", vendor, "--json"]);
        let endpoint = format!("{}{path}", standin.url);
        cmd.args(["--endpoint", &endpoint, &image])
            .env(env, KEY)
            .env("AWS_ACCESS_KEY_ID", "AKIDCLASSIFYTEST")
            .env("AWS_SECRET_ACCESS_KEY", KEY);
        let out = crate::util::run(cmd);
        let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
        let labels = v[0]["labels"].as_array().unwrap();
        // Rekognition leaves out labels below its MinConfidence (55%).
        let dropped = vendor == "aws" && labels.is_empty() && local_score < 0.55;
        assert!(dropped || &labels[0]["label"] == want, "{vendor}: {v}");
        assert!(
            v[0]["labels"].as_array().unwrap().len() <= 5,
            "{vendor}: {v}"
        );
        assert!(out.stderr().contains("spent"), "{vendor}: {}", out.stderr());
        assert!(!out.stderr().contains(KEY) && !out.stdout().contains(KEY));
    }
    // One paid query per image and vendor, and nothing more.
    assert_eq!(standin.stats()["images"], vendors.len());
    // A wrong key: the vendor's refusal, a clear error, a non-zero exit.
    let mut cmd = crate::util::command(["classify", "--provider", "google"]);
    cmd.args(["--endpoint", &standin.url, &image])
        .env("GOOGLE_API_KEY", "wrong");
    let err = crate::util::run(cmd).fails();
    assert!(err.contains("ship/0000.jpg"), "{err}");
}
