//! Top-1 accuracy of a shipped ImageNet model (default: the stand-in's Lite0) on an image
//! folder named `<wnid>_<name>.JPEG`.
//!
//! cargo run --release -p robustify-standin --example imagenet_accuracy -- ../shared/data/imagenet-samples [LIMIT] [efficientnet-lite1]

use std::time::Instant;

use robustify_smoothing::{DecodeLimits, Image};
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::Classifier;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: imagenet_accuracy DIR [LIMIT] [MODEL]")?;
    let limit: usize = args
        .next()
        .filter(|s| s != "all")
        .map_or(Ok(usize::MAX), |s| s.parse())?;
    let model = match args.next() {
        Some(name) => ImageNetClassifier::load_named(&name)?,
        None => ImageNetClassifier::load_default()?,
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    files.sort();
    files.truncate(limit);
    let (mut correct, mut top5, start) = (0, 0, Instant::now());
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let wnid = &name[..9];
        let truth = model
            .classes()
            .iter()
            .position(|c| c.wnid == wnid)
            .ok_or("unknown wnid")?;
        let image = Image::decode(&std::fs::read(path)?, &DecodeLimits::default())?;
        let out = &model.classify(&[image], 5)?[0];
        correct += usize::from(out[0].index == truth);
        top5 += usize::from(out.iter().any(|s| s.index == truth));
    }
    let n = files.len();
    println!(
        "{}: {n} images: top-1 {:.1}% top-5 {:.1}% ({:.1} images/s)",
        model.name(),
        100.0 * correct as f64 / n as f64,
        100.0 * top5 as f64 / n as f64,
        n as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
