//! Training the CIFAR-10 stand-in on the committed fixture (200 test images): steps lower
//! the loss, and a run stopped and resumed ends bit-identical to an uninterrupted one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use robustify_standin::cifar::Config;
use robustify_standin::cifar_train::{Hooks, TrainConfig, train};
use robustify_train::checkpoint::Progress;
use robustify_train::dataset::ImageFolder;

fn fixture() -> ImageFolder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cifar10");
    ImageFolder::load(&dir, |_, _| {}).unwrap()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 10,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        seed: 3,
        arch: Config::resnet20(),
    }
}

fn run(
    data: &ImageFolder,
    out: &Path,
    resume: bool,
    stop_at: Option<u64>,
    losses: &mut Vec<f32>,
) -> Progress {
    train(
        data,
        None,
        &cfg(),
        out,
        resume,
        Duration::from_secs(3600),
        Hooks {
            on_batch: &mut |r| losses.push(r.loss),
            on_epoch: &mut |_| {},
            should_stop: &mut |p| stop_at.is_some_and(|s| p.step >= s),
        },
    )
    .unwrap()
}

#[test]
fn loss_falls_and_resume_continues_identically() {
    let all = fixture();
    assert_eq!((all.len(), all.classes.len(), all.height), (200, 10, 32));
    // 40 images (4 per class) keep the test short: 2 epochs of 4 batches of 10.
    let data = all.subset(&(0..200).step_by(5).collect::<Vec<_>>());
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (a, b) = (tmp.join("train-a"), tmp.join("train-b"));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);

    let mut losses = Vec::new();
    let full = run(&data, &a, false, None, &mut losses);
    assert_eq!((full.epoch, full.step), (2, 8));
    // The first epoch's mean loss is above the second's (ln 10 = 2.30 at the start).
    let (first, second) = (
        losses[..4].iter().sum::<f32>(),
        losses[4..].iter().sum::<f32>(),
    );
    assert!(second < first, "{losses:?}");

    let mut resumed_losses = Vec::new();
    let stopped = run(&data, &b, false, Some(3), &mut resumed_losses);
    assert_eq!((stopped.epoch, stopped.batch, stopped.step), (0, 3, 3));
    // Without --resume an existing checkpoint is refused.
    assert!(
        train(
            &data,
            None,
            &cfg(),
            &b,
            false,
            Duration::from_secs(1),
            Hooks {
                on_batch: &mut |_| {},
                on_epoch: &mut |_| {},
                should_stop: &mut |_| true,
            }
        )
        .is_err()
    );
    run(&data, &b, true, None, &mut resumed_losses);
    assert_eq!(resumed_losses, losses);
    let wa = std::fs::read(a.join("model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(wa == wb, "resumed weights differ");
}
