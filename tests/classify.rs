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
